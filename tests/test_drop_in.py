"""A nutcracker deployment swapped for pyproxy: its files, its pool keys, its signals, its
stats names (issue 16). Key placement for every hash and distribution: test_parity_hashes.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyproxy.observe.snapshot import BackendSnapshot, PoolSnapshot, ProxySnapshot
from pyproxy.observe.stats import PoolStats, ServerStats
from pyproxy.observe.statsport import SERVER_STATS, document
from pyproxy.routing import table as routing
from pyproxy.routing.routes import Routes
from pyproxy.server import static_table
from tests.servers import (
    REPO_ROOT,
    free_port,
    pool_config,
    process_state,
    two_shards,
    wait_until,
)
from tests.test_proxy import pyproxy_cli

# twemproxy's conf/nutcracker.yml as released in 0.5.0 (github.com/twitter/twemproxy,
# Copyright (C) 2011 Twitter, Inc., Apache License 2.0), copied unchanged.
TWEMPROXY_CONF = """\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: true
  redis: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:6379:1

beta:
  listen: 127.0.0.1:22122
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  auto_eject_hosts: false
  timeout: 400
  redis: true
  servers:
   - 127.0.0.1:6380:1 server1
   - 127.0.0.1:6381:1 server2
   - 127.0.0.1:6382:1 server3
   - 127.0.0.1:6383:1 server4

gamma:
  listen: 127.0.0.1:22123
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  backlog: 1024
  preconnect: true
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 3
  servers:
   - 127.0.0.1:11212:1
   - 127.0.0.1:11213:1

delta:
  listen: 127.0.0.1:22124
  hash: fnv1a_64
  distribution: ketama
  timeout: 100
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:11214:1
   - 127.0.0.1:11215:1
   - 127.0.0.1:11216:1
   - 127.0.0.1:11217:1
   - 127.0.0.1:11218:1
   - 127.0.0.1:11219:1
   - 127.0.0.1:11220:1
   - 127.0.0.1:11221:1
   - 127.0.0.1:11222:1
   - 127.0.0.1:11223:1

omega:
  listen: /tmp/gamma
  hash: hsieh
  distribution: ketama
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:11214:100000
   - 127.0.0.1:11215:1
"""
MEMCACHE = "redis: missing: write 'redis: true' (twemproxy's default, false, means memcache)"


def nutcracker_t(path: Path) -> int:
    return subprocess.run(["nutcracker", "-t", "-c", str(path)], capture_output=True,
                          timeout=30).returncode


def test_twemproxys_own_conf_loads_but_for_its_memcache_pools(tmp_path: Path) -> None:
    path = tmp_path / "nutcracker.yml"
    path.write_text(TWEMPROXY_CONF)
    assert nutcracker_t(path) == 0
    result = pyproxy_cli("-t", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"pyproxy: {path}: pool {pool!r}: {MEMCACHE}" for pool in ("gamma", "delta", "omega")]
    redis_pools = TWEMPROXY_CONF.split("\ngamma:")[0]
    path.write_text(redis_pools)
    result = pyproxy_cli("-t", "-c", str(path))
    assert (result.returncode, result.stdout.strip()) == (
        0, f"pyproxy: configuration file '{path}' syntax is ok")


@pytest.mark.parametrize("pool", [
    # nutcracker's defaults everywhere: fnv1a_64, ketama, no timeout, ...
    "  redis: true\n  servers:\n   - 127.0.0.1:6379:1\n",
    # the values that mean "none" or "at once" to nutcracker, and its keys pyproxy lacked
    "  redis: true\n  timeout: 0\n  backlog: 0\n  client_connections: 0\n  tcpkeepalive: true\n"
    "  server_retry_timeout: 0\n  server_failure_limit: 0\n  redis_db: 15\n"
    "  servers:\n   - 127.0.0.1:6379:1\n",
    # twemproxy's test harness's pool (tests/lib/server_modules.py)
    "  hash: fnv1a_64\n  distribution: modula\n  preconnect: true\n  auto_eject_hosts: false\n"
    "  redis: true\n  backlog: 512\n  timeout: 400\n  client_connections: 0\n"
    "  server_connections: 1\n  server_retry_timeout: 2000\n  server_failure_limit: 2\n"
    "  servers:\n    - 127.0.0.1:2100:1 redis-2100\n    - 127.0.0.1:2101:1 redis-2101\n",
    # named and unnamed servers mixed, huge and tiny weights, a hostname
    "  hash: murmur\n  distribution: random\n  redis: true\n  redis_auth: pass\n"
    "  servers:\n   - localhost:6379:100000\n   - 127.0.0.1:6380:1 b\n",
])
def test_what_nutcrackers_t_accepts_pyproxys_t_accepts(tmp_path: Path, pool: str) -> None:
    path = tmp_path / "n.yml"
    path.write_text("alpha:\n  listen: 127.0.0.1:22121\n" + pool)
    assert nutcracker_t(path) == 0
    result = pyproxy_cli("-t", "-c", str(path))
    assert result.returncode == 0, result.stderr


def test_what_pyproxy_cannot_serve_is_named(tmp_path: Path) -> None:
    path = tmp_path / "n.yml"
    path.write_text("alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n"
                    "   - 127.0.0.1:6379:1\n   - /tmp/redis.sock:1 local\n")
    assert nutcracker_t(path) == 0
    result = pyproxy_cli("-t", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"pyproxy: {path}: pool 'alpha': servers: unix socket servers are not supported by "
        "pyproxy (connect to redis by host:port), got '/tmp/redis.sock:1 local'"]


# ------------------------------------------------------------------ pool keys at work


def test_client_connections_limits_the_pools_clients(redis_factory: Any,
                                                     proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b), client_connections=2))
    first, second = (socket.create_connection(("127.0.0.1", port), timeout=5) for _ in "12")
    for sock in (first, second):
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
        # told at once, without asking (as by redis-server: a request sent first may meet a
        # reset, the proxy closing with it unread)
        assert read_to_eof(third) == b"-ERR max number of clients reached\r\n"
    first.close()

    def admitted() -> bool:  # once the proxy has seen the close, a newcomer is served
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(100) == b"+PONG\r\n"

    wait_until(admitted, timeout=10, what="a free client slot")
    second.sendall(b"PING\r\n")
    assert second.recv(100) == b"+PONG\r\n"
    second.close()


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1000):
        data += chunk
    return data


def keepalive_timer(local_port: int, remote_port: int) -> str:
    """The timer column ("tr") of the TCP socket 127.0.0.1:local -> :remote: 2 = keepalive."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, timer = fields[1], fields[2], fields[5].split(":")[0]
        if local.endswith(f":{local_port:04X}") and remote.endswith(f":{remote_port:04X}"):
            return timer
    raise AssertionError(f"no socket {local_port} -> {remote_port} in /proc/net/tcp")


@pytest.mark.parametrize("keepalive", [True, False])
def test_tcpkeepalive_sets_so_keepalive_on_client_connections(
        redis_factory: Any, proxy_factory: Any, keepalive: bool) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b), tcpkeepalive=str(keepalive).lower()))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"PING\r\n")
        assert client.recv(100) == b"+PONG\r\n"
        # the proxy's end of this connection: local = its port, remote = the client's
        assert keepalive_timer(port, client.getsockname()[1]) == ("02" if keepalive else "00")


@pytest.mark.parametrize("reuseport", [True, False])
def test_reuseport_lets_another_socket_share_the_port(
        redis_factory: Any, proxy_factory: Any, reuseport: bool) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b), reuseport=str(reuseport).lower()))
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if reuseport:
            other.bind(("127.0.0.1", port))
        else:
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", port))


# ------------------------------------------------------------------ signals


@contextlib.contextmanager
def proxy_in_own_process_group(tmp_path: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """A pyproxy in a process group of its own within this session: not orphaned, so a stop
    signal it does not handle stops it (as under a supervisor script or twemproxy's harness)."""
    conf = tmp_path / "p.yml"
    conf.write_text(config)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyproxy", "-c", str(conf), "-o", str(tmp_path / "p.log")],
        env=env, process_group=0, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def signal_and_wait(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    """One signal, then its log line (two signals sent at once may arrive as one)."""
    seen = log.read_text().count(sig.name)
    proc.send_signal(sig)
    wait_until(lambda: log.read_text().count(sig.name) == seen + 1, timeout=10,
               what=f"the {sig.name} line", proc=proc)


def protocol_error(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*1\r\n*1\r\n")
        assert read_to_eof(sock).startswith(b"-ERR Protocol error")


def test_ttin_ttou_change_the_log_level_and_hup_reopens_the_log(
        tmp_path: Path, redis_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    log = tmp_path / "p.log"
    with proxy_in_own_process_group(tmp_path, pool_config(port, two_shards(a, b))) as proc:
        wait_until(lambda: "listening" in (log.read_text() if log.exists() else ""),
                   timeout=15, what="pyproxy to listen")
        for sig in (signal.SIGTTOU, signal.SIGTTOU):  # -v 5 (info) -> 3 (errors only)
            signal_and_wait(proc, sig, log)
        assert process_state(proc.pid) != "T"  # not stopped
        protocol_error(port)  # logged at info: not shown now
        for sig in (signal.SIGTTIN, signal.SIGTTIN):
            signal_and_wait(proc, sig, log)
        protocol_error(port)
        wait_until(lambda: "protocol error" in log.read_text(), timeout=10, what="info again")
        text = log.read_text()
        assert text.count("protocol error") == 1
        assert "signal 22 (SIGTTOU) received, log level down to 3" in text
        assert "signal 21 (SIGTTIN) received, log level up to 5" in text
        log.rename(tmp_path / "p.log.1")  # logrotate
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: log.exists() and "SIGHUP" in log.read_text(), timeout=10,
                   what="the reopened log")
        assert "SIGHUP" not in (tmp_path / "p.log.1").read_text()
        assert proc.poll() is None and process_state(proc.pid) != "T"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100) == b"+PONG\r\n"


# ------------------------------------------------------------------ stats names


def _pool_snapshot(table: routing.RoutingTable, masters: dict[str, int]) -> PoolSnapshot:
    """A pool whose backends (by address) have served ``masters[address]`` requests."""
    backends = {}
    for address, requests in masters.items():
        stats = ServerStats()
        stats.requests = requests
        backends[address] = BackendSnapshot(address, 1, 0, 0, 0, stats)
    return PoolSnapshot("alpha", "127.0.0.1:1", table, 1, PoolStats(), backends)


def test_zookeeper_shards_keep_their_stats_key_across_a_failover() -> None:
    def table(master: str | None) -> routing.RoutingTable:
        return routing.build([routing.Shard.of("redis-0000", 0, 2047, master),
                              routing.Shard.of("redis-0001", 2048, 4095, "127.0.0.12:6379")], 4096)

    before = _pool_snapshot(table("127.0.0.11:6379"), {"127.0.0.11:6379": 5, "127.0.0.12:6379": 7})
    during = _pool_snapshot(table(None), {"127.0.0.12:6379": 8})
    after = _pool_snapshot(table("127.0.0.13:6379"), {"127.0.0.13:6379": 1, "127.0.0.12:6379": 9})
    docs = [document(ProxySnapshot(time.time(), (view,)))["alpha"]
            for view in (before, during, after)]
    for doc in docs:
        assert {k for k, v in doc.items() if isinstance(v, dict)} == {"redis-0000", "redis-0001"}
        assert all(set(v) == set(SERVER_STATS) for v in doc.values() if isinstance(v, dict))
    assert [doc["redis-0000"]["requests"] for doc in docs] == [5, 0, 1]  # the master's
    assert [doc["redis-0001"]["requests"] for doc in docs] == [7, 8, 9]


def test_admin_slot_follows_the_pools_distribution() -> None:
    from pyproxy import admin, config

    def pool(distribution: str) -> config.PoolConfig:
        return config.parse(f"a:\n  listen: 127.0.0.1:1\n  redis: true\n  hash: crc32a\n"
                            f"  distribution: {distribution}\n  servers:\n"
                            "   - 127.0.0.1:7001:3 one\n   - 127.0.0.1:7002:1\n").pools[0]

    ketama = pool("ketama")
    routes = Routes(static_table(ketama), ketama.servers, None)
    for key in (b"a", b"user:42", b""):
        answer = admin.slot(ketama, key)
        assert (answer["slot"], answer["shard"], answer["master"]) == (
            None, routes.locate(key).name, routes.locate(key).address)
    assert admin.slot(pool("random"), b"a")["master"] == "any"
    modula = admin.slot(pool("modula"), b"user:42")
    assert modula["slot"] == zlib.crc32(b"user:42") % 4
    assert modula["shard"] == ("one" if modula["slot"] < 3 else "127.0.0.1:7002")
