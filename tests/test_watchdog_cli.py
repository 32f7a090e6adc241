"""The watchdog's start and stop, as an operator runs it: quiet normal starts, waiting for its
redis, ``--daemon``/``--pidfile``, SIGHUP after logrotate, ``--example-config``.

Real ZooKeeper and redis-servers on 127.0.0.1, each watchdog a subprocess; the settings of
``tests/test_watchdog.py`` (session 1500 ms, checks every 100 ms). Deadlines are generous.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests import test_watchdog
from tests.servers import REPO_ROOT, RedisServer, free_port, process_alive, wait_until
from tests.test_watchdog import (
    CONF,
    DEADLINE,
    SHARD,
    Watchdog,
    members,
    start_pair,
    try_set,
)

# the fixtures of tests/test_watchdog.py: a client on a fresh chroot with SHARD laid out,
# and a factory of watchdogs stopped at teardown
zk = test_watchdog.zk
watchdog_factory = test_watchdog.watchdog_factory

FENCED_AT_START = "fenced (not a confirmed master: no ZooKeeper view)"


class LoggingWatchdog(Watchdog):
    """A watchdog that is ready once its log shows ``ready_text`` (not a ZooKeeper session:
    these start without one)."""

    def __init__(self, zk_hosts: str, redis: Any, ready_text: str, **conf: Any) -> None:
        super().__init__(zk_hosts, redis, **conf)
        self.ready_text = ready_text

    def _wait_ready(self, timeout: float) -> None:
        wait_until(lambda: self.ready_text in self.log_text(), timeout,
                   f"{self.ready_text!r} in the watchdog's log", self)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT))


def _write_conf(path: Path, zk_hosts: str, **conf: Any) -> Path:
    path.write_text("".join(f"{k} = {v}\n" for k, v in
                            {"zkServersList": zk_hosts, **CONF, **conf}.items()))
    return path


def _watchdog(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyproxy.watchdog", *args], env=_env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _stop(pid: int) -> None:
    """SIGTERM a daemon this test started, SIGKILL if it lingers."""
    if not process_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_a_normal_start_fences_nothing(zk: Any, redis_factory: Any,
                                       watchdog_factory: Any) -> None:
    (master, replica), dogs = start_pair(redis_factory, watchdog_factory, zk)
    for dog in dogs:
        text = dog.log_text()
        assert "fenced" not in text and " WARNING " not in text, text


def test_no_zookeeper_at_start_still_fences_a_master(redis_factory: Any) -> None:
    r = redis_factory()
    dead_zk = f"127.0.0.1:{free_port()}"
    dog = LoggingWatchdog(dead_zk, r, FENCED_AT_START)
    try:
        dog.start(timeout=DEADLINE)
        line = next(li for li in dog.log_text().splitlines() if FENCED_AT_START in li)
        assert " WARNING " in line, line
        assert try_set(r, "k", timeout=0.5) == "timeout"  # writes wait: the fence holds
    finally:
        dog.close()


def test_waits_for_its_redis_then_registers(zk: Any, zk_hosts: str) -> None:
    r = RedisServer()  # its port is chosen; it starts after the watchdog
    dog = LoggingWatchdog(zk_hosts, r, "waiting up to 60 s for it")
    try:
        dog.start(timeout=DEADLINE)
        assert dog.is_running() and members(zk) == []
        r.start()
        wait_until(lambda: len(members(zk)) == 1, DEADLINE, "registered once redis is up", dog)
        assert f"redis {r.address} answers, after" in dog.log_text()
        assert members(zk)[0].startswith(r.address)
    finally:
        dog.close()
        r.close()


def test_the_wait_for_redis_is_bounded(tmp_path: Path, zk: Any, zk_hosts: str) -> None:
    conf = _write_conf(tmp_path / "zoo-watchdog.conf", zk_hosts, redisStartTimeout=1000)
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = _watchdog("-f", str(conf), "-c", address, SHARD, timeout=30)
    took = time.monotonic() - started
    print(f"gave up after {took:.1f} s")
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert "waiting up to 1 s" in lines[0], lines  # the log, on stderr without logFile
    assert lines[-1].startswith(f"pyproxy-watchdog: error: redis {address} does not answer "
                                "after 1 s: "), lines


def test_daemon_detaches_once_ready_writes_pidfile_and_stops(
        tmp_path: Path, zk: Any, zk_hosts: str, redis_factory: Any) -> None:
    r = redis_factory()
    log, pidfile, metrics = tmp_path / "watchdog.log", tmp_path / "w.pid", free_port()
    conf = _write_conf(tmp_path / "zoo-watchdog.conf", zk_hosts, logFile=log)
    result = _watchdog("-f", str(conf), "-dc", r.address, SHARD, "--daemon", "--pidfile",
                       str(pidfile), "--metrics", f"127.0.0.1:{metrics}")
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    try:
        assert result.returncode == 0 and result.stdout == result.stderr == "", result
        # it runs on, although the command returned
        assert pid is not None and process_alive(pid)
        wait_until(lambda: len(members(zk)) == 1, DEADLINE, "the daemon registered")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as page:
            assert b"pyproxy_watchdog_registered 1.0" in page.read()
        assert f"pid {pid}" in log.read_text()
        _stop(pid)
        assert members(zk) == [] and not pidfile.exists()
        assert "deleted node" in log.read_text()
    finally:
        if pid is not None:
            _stop(pid)


def test_daemon_failures_are_reported_before_it_detaches(
        tmp_path: Path, zk_hosts: str, redis_factory: Any) -> None:
    r = redis_factory()
    log, pidfile = tmp_path / "watchdog.log", tmp_path / "w.pid"
    no_log = _write_conf(tmp_path / "no-log.conf", zk_hosts)
    result = _watchdog("-f", str(no_log), "-dc", r.address, SHARD, "--daemon")
    assert result.returncode == 2 and "--daemon needs logFile" in result.stderr, result
    conf = _write_conf(tmp_path / "zoo-watchdog.conf", zk_hosts, logFile=log,
                       redisStartTimeout=0)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        result = _watchdog("-f", str(conf), "-c", r.address, SHARD, "--daemon", "--pidfile",
                           str(pidfile), "--metrics", busy)
    assert result.returncode == 3, result
    assert result.stderr == f"pyproxy-watchdog: error: --metrics {busy}: Address already in " \
                            "use\n", result.stderr
    assert not pidfile.exists()  # the daemon that wrote it has exited and removed it
    assert "cannot start: --metrics" in log.read_text()
    r.kill()
    result = _watchdog("-f", str(conf), "-c", r.address, SHARD, "--daemon", "--pidfile",
                       str(pidfile))
    assert result.returncode == 3, result
    assert result.stderr.startswith(f"pyproxy-watchdog: error: redis {r.address} does not "
                                    "answer: ") and result.stderr.count("\n") == 1, result
    assert not pidfile.exists()


def test_sighup_reopens_the_log_after_logrotate(tmp_path: Path, zk: Any, zk_hosts: str,
                                                redis_factory: Any) -> None:
    r = redis_factory()
    log = tmp_path / "watchdog.log"
    dog = LoggingWatchdog(zk_hosts, r, "registered", logFile=log)
    try:
        dog.start(timeout=DEADLINE)
        wait_until(lambda: log.exists() and "registered" in log.read_text(), DEADLINE,
                   "the log file")
        log.rename(tmp_path / "watchdog.log.1")  # what logrotate does
        assert dog.pid is not None
        os.kill(dog.pid, signal.SIGHUP)
        wait_until(log.exists, DEADLINE, "a new log file after SIGHUP", dog)
        assert dog.is_running()  # SIGHUP no longer kills it
        os.kill(dog.pid, signal.SIGTERM)
        wait_until(lambda: not dog.is_running(), DEADLINE, "the watchdog's exit", dog)
        assert dog.returncode == 0
        assert "deleted node" in log.read_text()  # the new file, not the moved one
        assert "deleted node" not in (tmp_path / "watchdog.log.1").read_text()
    finally:
        dog.close()


def test_example_config_prints_the_shipped_conf() -> None:
    result = _watchdog("--example-config", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO_ROOT / "conf" / "zoo-watchdog.conf").read_text()
