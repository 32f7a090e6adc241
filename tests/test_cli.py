"""``pyproxy`` as an operator meets it: flags checked before anything starts (``-t`` too),
``--example-config``, and what the log says (worker names, idle closes, shard counts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from pyproxy import config
from tests.servers import REPO_ROOT, free_port, pool_config, two_shards, wait_until


def pyproxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyproxy", *args], capture_output=True,
                          text=True, timeout=30, cwd=str(REPO_ROOT),
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


@pytest.mark.parametrize("flags, line", [
    (["-s", "70000"], "pyproxy: -s 70000: expected a port 1-65535"),
    (["-s", "0"], "pyproxy: -s 0: expected a port 1-65535 (leave -s out to serve no stats)"),
    (["-s", "22222", "-a", "no..host"], "pyproxy: -a no..host: expected an IPv4 address"),
    (["--metrics", "127.0.0.1:99999"], "pyproxy: --metrics: expected HOST:PORT, got "
                                       "'127.0.0.1:99999'"),
    (["--metrics", "not a host:9121"], "pyproxy: --metrics: expected HOST:PORT"),
    (["--metrics", "65535", "--workers", "2"], "pyproxy: --metrics: port 65535 + 1 for the "
                                               "last of --workers 2 is above 65535"),
    (["--workers", "0"], "pyproxy: --workers 0: expected at least 1"),
    (["-v", "12"], "pyproxy: -v 12: expected a level 0-11"),
])
def test_bad_flags_are_refused_by_t_in_one_line(flags: list[str], line: str) -> None:
    for test in (["-t"], []):  # the same at -t time as at start
        result = pyproxy(*test, *flags, "-c", "conf/example.yml")
        assert result.returncode == 2, result
        assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
        assert result.stdout == ""


def test_every_bad_flag_at_once() -> None:
    result = pyproxy("-t", "-s", "0", "--metrics", "x:0", "--workers", "0", "-c",
                     "conf/example.yml")
    assert result.returncode == 2
    assert [line.split(":")[1] for line in result.stderr.splitlines()] == \
        [" --workers 0", " -s 0", " --metrics"], result.stderr


def test_good_flags_pass_t() -> None:
    result = pyproxy("-t", "-s", "22222", "-a", "127.0.0.1", "--metrics", "9121",
                     "--workers", "4", "-v", "11", "-c", "conf/example.yml")
    assert result.returncode == 0 and "syntax is ok" in result.stdout, result.stderr


def test_example_config_prints_the_documented_files() -> None:
    for args, name in ((["--example-config"], "example.yml"),
                       (["--example-config", "icd.yml"], "icd.yml")):
        result = pyproxy(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == (REPO_ROOT / "conf" / name).read_text()
        assert config.parse(result.stdout).pools  # what it prints loads
    assert "--example-config" in pyproxy("--help").stdout


def test_workers_name_themselves_in_the_log(redis_factory: Any, proxy_factory: Any) -> None:
    r = redis_factory()
    port = free_port()
    proxy = proxy_factory(pool_config(port, [f"{r.address}:0-4095"]),
                          extra_args=("--workers", "2"))
    want = [f"worker {i} pyproxy.server: pool alpha listening on 127.0.0.1:{port} (1 shard)"
            for i in (0, 1)]
    wait_until(lambda: all(w in proxy.log_text() for w in want), 10, "both workers' lines",
               proxy)
    supervisor = [line for line in proxy.log_text().splitlines() if "worker 1 started" in line]
    assert supervisor and " pyproxy.workers: worker 1 started, pid " in supervisor[0]


def _closed_when_idle(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        assert idle.recv(1) == b""  # the proxy closed it (before the 10 s timeout)


def test_idle_closes_are_debug_lines(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    for verbosity, logged in (("5", False), ("6", True)):
        port = free_port()
        proxy = proxy_factory(pool_config(port, two_shards(a, b), client_idle_timeout=200),
                              extra_args=("-v", verbosity))
        _closed_when_idle(port)
        time.sleep(0.1)  # the line is written as the socket closes
        line = "pyproxy.server: closing client 127.0.0.1:"
        assert (line in proxy.log_text()) is logged, proxy.log_text()
        if logged:
            assert f"DEBUG {line}" in proxy.log_text()


def test_two_shards_are_plural(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy = proxy_factory(pool_config(port, two_shards(a, b)))
    assert f"listening on 127.0.0.1:{port} (2 shards)" in proxy.log_text()
