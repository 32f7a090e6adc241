"""`make demo`, non-interactively: ``demo/run.py --check`` brings the seed's cluster up on
127.0.0.1-3 (ZooKeeper, four redis, four watchdogs, two proxies), does SET/GET through both
proxies, tears it all down, and must leave no process behind.

It needs the demo's fixed ports (2181, 6379/6380 and 22121 on 127.0.0.2/.3, ...): when one of
them is taken (a dev machine running redis or a demo), the test is skipped and says which.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import process_alive

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "demo" / "run.py"
TIMEOUT = 90


@functools.cache
def _demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("demo_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_run"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


STOPPED = re.compile(r"^  \S.{17} pid (\d+) +(stopped|killed|had ended|already gone)")


def _stopped_pids(lines: list[str]) -> list[int]:
    """The pids in demo/run.py's stop report (``  redis A:6379       pid 1234    stopped``)."""
    start = lines.index("stopping, in reverse order:")
    return [int(m.group(1)) for line in lines[start + 1:] if (m := STOPPED.match(line))]


def test_demo_check_brings_the_cluster_up_and_leaves_nothing(tmp_path: Path) -> None:
    demo = _demo_module()
    busy = demo.busy_ports()
    if busy:
        pytest.skip("the demo's fixed ports are taken here: " + "; ".join(busy))
    run_dir = tmp_path / "demo-run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    try:
        r = subprocess.run([sys.executable, str(RUN), "--check", "--run-dir", str(run_dir)],
                           cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        err = (exc.stderr or b"").decode(errors="replace")
        pytest.fail(f"demo/run.py --check did not finish in {TIMEOUT}s\n{out}\n{err}")
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    report = f"exit {r.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    assert r.returncode == 0, report
    lines = out.splitlines()
    assert "OK" in lines, report

    # everything it started is in its stop report, and gone; the report is the last thing
    assert lines[-1].startswith("nothing left running (11 processes)"), report
    pids = _stopped_pids(lines)
    assert len(pids) == 11, report  # zookeeper, 4 redis, 4 watchdogs, 2 proxies
    assert [p for p in pids if process_alive(p)] == [], report
    assert not (run_dir / "pids").exists(), report
    # the seed's topology was what ran: both proxies registered, masters first
    assert "redis A:6379" in out and "watchdog B:6380" in out and "proxy B" in out, report
    for name in ("zookeeper/zookeeper.log", "a/redis-6379/redis.log",
                 "b/redis-6380/zoo-watchdog.log", "a/proxy.log", "b/proxy.log"):
        assert (run_dir / name).is_file(), f"{name} missing\n{report}"
    # the demo's ports are free again
    assert demo.busy_ports() == [], report


def test_demo_refuses_taken_ports_and_starts_nothing(tmp_path: Path) -> None:
    demo = _demo_module()
    if demo.busy_ports():
        pytest.skip("the demo's fixed ports are taken here: " + "; ".join(demo.busy_ports()))
    import socket

    host, port, what = demo.PORTS[-1]  # proxy B's
    # the same port on another address, held by another process: not to be named
    with subprocess.Popen(
            [sys.executable, "-c", "import socket, sys\n"
             f"s = socket.create_server(('127.0.0.5', {port}))\nprint('ready', flush=True)\n"
             "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as other:
        try:
            assert other.stdout is not None and other.stdout.readline() == b"ready\n"
            with socket.socket() as holder:
                holder.bind((host, port))
                holder.listen()
                r = subprocess.run([sys.executable, str(RUN), "--check", "--run-dir",
                                    str(tmp_path / "run")],
                                   cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=30)
        finally:
            other.kill()
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert f"{host}:{port} ({what})" in err and f"pid {os.getpid()}" in err, err
    assert f"pid {other.pid}" not in err, err  # matched by address and port, not port only
    assert "nothing was started" in err, err
    assert not (tmp_path / "run").exists()
    assert r.stdout == b"", r.stdout
