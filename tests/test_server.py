"""Server-level behaviour: idle clients, graceful stop with replies in flight."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from tests.servers import free_port, pool_config, two_shards, wait_until


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (BlockingIOError, TimeoutError):
        return False


def test_idle_clients_are_closed_active_ones_kept(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b), client_idle_timeout=600))
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.settimeout(0.05)
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        busy.sendall(b"PING\r\n")
        assert busy.recv(100) == b"+PONG\r\n"
        if _closed(idle):
            break
    assert time.monotonic() - start < 3.0, "the idle client was not closed"
    busy.sendall(b"PING\r\n")
    assert busy.recv(100) == b"+PONG\r\n"
    idle.close()
    busy.close()


def test_sigterm_delivers_in_flight_replies_and_exits_0(
    redis_factory: Any, proxy_factory: Any
) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy = proxy_factory(pool_config(port, two_shards(a, b), timeout=5000))
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    a.pause()  # shard 0 holds its replies until resumed
    try:
        key = next(k for k in (f"k{i}".encode() for i in range(1000)) if _shard0(k))
        client.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
        time.sleep(0.2)
        os.kill(proxy.pid, signal.SIGTERM)  # do not wait: the reply is still held
        time.sleep(0.3)
    finally:
        a.resume()
    assert client.recv(100) == b"$-1\r\n"  # the reply held by the paused shard still arrives
    wait_until(lambda: not proxy.is_running(), timeout=15, what="proxy exit")
    assert proxy.returncode == 0
    client.close()


def _shard0(key: bytes) -> bool:
    from pyproxy.routing.hashing import slot_of

    return slot_of(key) <= 2047


def test_sighup_reopens_a_rotated_log_file(
    redis_factory: Any, proxy_factory: Any, tmp_path: Any
) -> None:
    a, b = redis_factory(), redis_factory()
    log = tmp_path / "proxy.log"
    port = free_port()
    proxy = proxy_factory(pool_config(port, two_shards(a, b)), extra_args=("-o", str(log)))
    wait_until(lambda: log.exists() and "listening" in log.read_text(), timeout=10,
               what="the first log lines")
    log.rename(tmp_path / "proxy.log.1")  # what logrotate does
    os.kill(proxy.pid, signal.SIGHUP)
    wait_until(log.exists, timeout=5, what="a new log file after SIGHUP")
    os.kill(proxy.pid, signal.SIGTERM)
    wait_until(lambda: not proxy.is_running(), timeout=15, what="proxy exit")
    assert proxy.returncode == 0
    assert "shutting down" in log.read_text()  # written to the new file, not the moved one
    assert "shutting down" not in (tmp_path / "proxy.log.1").read_text()


def test_the_seeds_daemon_command_line(redis_factory: Any, tmp_path: Any) -> None:
    """nutcracker -c icd.yml -o proxy.log -d -p icd_proxy.pid, as the seed starts it."""
    import subprocess
    import sys

    from tests.servers import redis_client

    a, b = redis_factory(), redis_factory()
    port = free_port()
    conf, log, pidfile = tmp_path / "icd.yml", tmp_path / "proxy.log", tmp_path / "icd.pid"
    conf.write_text(pool_config(port, two_shards(a, b)))
    started = subprocess.run(
        [sys.executable, "-m", "pyproxy", "-c", str(conf), "-o", str(log), "-d", "-p",
         str(pidfile)], capture_output=True, text=True, timeout=30)
    assert started.returncode == 0 and started.stderr == ""  # the parent returns at once
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), timeout=10,
               what="the pid file")
    pid = int(pidfile.read_text())
    try:
        wait_until(lambda: "listening" in log.read_text(), timeout=10, what="the listener")
        client = redis_client("127.0.0.1", port)
        assert client.set("daemon", "1") and client.get("daemon") == b"1"
        client.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=15, what="daemon exit")
    assert not pidfile.exists()  # removed on the way out
    assert "stopped" in log.read_text()


def test_daemon_mode_reports_a_failed_start_and_waits_for_the_listener(
        redis_factory: Any, tmp_path: Any) -> None:
    """-d returns only once the proxy listens (the client can connect at once), and a start
    that fails — here the port is taken — exits 3 with the reason, not 0."""
    import subprocess
    import sys

    a, b = redis_factory(), redis_factory()
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    conf, log = tmp_path / "icd.yml", tmp_path / "proxy.log"
    conf.write_text(pool_config(port, two_shards(a, b)))
    command = [sys.executable, "-m", "pyproxy", "-c", str(conf), "-o", str(log), "-d"]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=30)
    taken.close()
    assert failed.returncode == 3, failed
    assert f"cannot listen on 127.0.0.1:{port}" in failed.stderr
    pidfile = tmp_path / "icd.pid"
    started = subprocess.run([*command, "-p", str(pidfile)], capture_output=True, text=True,
                             timeout=30)
    assert started.returncode == 0, started
    pid = int(pidfile.read_text())  # written before the command returned
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(100) == b"+PONG\r\n"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=15, what="daemon exit")
