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
    from pyproxy.hashing import slot_of

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
