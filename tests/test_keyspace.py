"""Whole-keyspace commands, INFO and CLIENT through the proxy, against real redis-servers:
every shard answers, the proxy combines (SCAN's cursor, KEYS, DBSIZE, FLUSHDB, WAIT, INFO,
CLIENT LIST/KILL), and redis-cli's --scan/--bigkeys/--stat work."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.servers import free_port, pool_config
from tests.test_proxy import Cluster, Raw, key_on, two_shard_cluster

DEADLINE = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_shard_cluster() as running:
        yield running


@pytest.fixture
def client(cluster: Cluster) -> Iterator[redis.Redis]:
    r = redis.Redis("127.0.0.1", cluster.port, socket_timeout=DEADLINE)
    r.flushdb()
    yield r
    r.close()


def fill(cluster: Cluster, count: int, prefix: str = "ks") -> set[bytes]:
    """``count`` keys, written to the backends directly (where the proxy routes them)."""
    keys = {f"{prefix}:{i}".encode() for i in range(count)}
    pipes = {server: server.client().pipeline(transaction=False)
             for server in (cluster.a, cluster.b)}
    for key in keys:
        pipes[cluster.backend(key)].set(key, b"v")
    for pipe in pipes.values():
        pipe.execute()
    return keys


def test_scan_iter_returns_every_key_of_20000_exactly_as_keys(cluster: Cluster,
                                                              client: redis.Redis) -> None:
    keys = fill(cluster, 20_000)
    assert {cluster.a.client().dbsize(), cluster.b.client().dbsize()} != {0}
    scanned = list(client.scan_iter(count=500))
    assert len(scanned) >= len(keys) and set(scanned) == keys  # at least once each
    assert set(client.keys("*")) == keys and len(client.keys("*")) == 20_000
    assert client.dbsize() == 20_000
    assert set(client.scan_iter(match="ks:1999*", count=1000)) == {
        k for k in keys if k.startswith(b"ks:1999")}
    info = client.info("keyspace")
    assert info["db0"]["keys"] == 20_000


def test_scan_cursor_walks_the_shards_in_turn(cluster: Cluster, client: redis.Redis) -> None:
    fill(cluster, 10, "sc")
    with cluster.raw() as conn:
        assert conn.call("SCAN", "x") == b"-ERR invalid cursor\r\n"
        assert conn.call("SCAN", "-1") == b"-ERR invalid cursor\r\n"
        assert conn.call("SCAN", str(1 << 64)) == b"-ERR invalid cursor\r\n"
        cursor, seen, pages = b"0", [], 0
        while True:
            reply = conn.call("SCAN", cursor, "COUNT", "1000")
            match = re.match(rb"\*2\r\n\$\d+\r\n(\d+)\r\n\*(\d+)\r\n", reply)
            assert match, reply
            cursor = match[1]
            seen += re.findall(rb"\$\d+\r\n(sc:\d+)\r\n", reply)
            pages += 1
            if cursor == b"0":
                break
        assert pages == 2 and sorted(seen) == sorted(f"sc:{i}".encode() for i in range(10))
        assert conn.call("SCAN", "0", "TYPE", "hash") == b"*2\r\n$1\r\n1\r\n*0\r\n"


def test_keyspace_commands_combine_every_shard(cluster: Cluster, client: redis.Redis) -> None:
    assert client.randomkey() is None
    k0, k1 = key_on(0, b"rk"), key_on(1, b"rk")
    client.set(k0, 1)
    assert client.randomkey() == k0
    client.set(k1, 1)
    assert {client.randomkey() for _ in range(40)} == {k0, k1}
    assert client.dbsize() == 2
    assert client.flushdb() is True
    assert cluster.a.client().dbsize() == cluster.b.client().dbsize() == 0
    client.set(k0, 1)
    assert client.flushall(asynchronous=True) is True
    assert client.dbsize() == 0
    seconds, micros = client.time()
    assert abs(seconds - time.time()) < 5 and 0 <= micros < 1_000_000
    lastsave = min(s.client().lastsave() for s in (cluster.a, cluster.b))
    assert client.lastsave() == lastsave


def test_wait_asks_the_shards_the_client_wrote_to(cluster: Cluster) -> None:
    with cluster.raw() as conn:
        assert conn.call("WAIT", "0", "100") == b":0\r\n"  # no replicas anywhere
        assert conn.call("SET", key_on(1, b"wait"), "x") == b"+OK\r\n"
        assert conn.call("WAIT", "1", "50") == b":0\r\n"  # times out: shard 1 has none
        assert conn.call("WAIT", "x", "0").startswith(b"-ERR")


def test_flush_is_refused_where_the_pool_says_so(redis_factory: object,
                                                 proxy_factory: object) -> None:
    a, b = redis_factory(), redis_factory()  # type: ignore[operator]
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    config = lambda: pool_config(free_port(), servers, allow_flush="false")  # noqa: E731
    proxy = proxy_factory(config)  # type: ignore[operator]
    a.client().set("kept", 1)
    with Raw("127.0.0.1", proxy.port) as conn:
        for command in (["FLUSHDB"], ["FLUSHALL", "ASYNC"]):
            assert conn.call(*command) == (f"-ERR pyproxy: '{command[0]}' is not supported: "
                                           "this pool sets allow_flush: false\r\n").encode()
    assert a.client().get("kept") == b"1"


def test_info_sections_like_redis(cluster: Cluster, client: redis.Redis) -> None:
    fill(cluster, 300, "inf")
    info = client.info()
    versions = [s.client().info("server")["redis_version"] for s in (cluster.a, cluster.b)]
    assert info["redis_version"] == min(versions)
    assert info["role"] == "master" and info["loading"] == 0
    assert info["connected_clients"] >= 1 and info["blocked_clients"] == 0
    used = sum(s.client().info("memory")["used_memory"] for s in (cluster.a, cluster.b))
    assert 0.5 * used < info["used_memory"] < 2 * used
    assert info["used_memory_human"].endswith(("K", "M"))
    assert info["db0"]["keys"] == 300
    assert info["total_commands_processed"] > 0
    assert "pool_alpha" in info and "shards_answered" in info
    assert set(client.info("server")) >= {"redis_version", "process_id", "tcp_port"}
    assert "db0" not in client.info("server")
    assert set(client.info("clients", "memory")) >= {"connected_clients", "used_memory"}
    assert client.info("nosuchsection") == {}
    assert client.info("proxy")["pool_alpha"]["shards"] == 2


def test_instantaneous_ops_per_sec_follows_the_traffic(cluster: Cluster,
                                                        client: redis.Redis) -> None:
    deadline = time.monotonic() + 1.5
    pipe = client.pipeline(transaction=False)
    while time.monotonic() < deadline:
        for i in range(200):
            pipe.get(f"ops:{i}")
        pipe.execute()
    assert client.info("stats")["instantaneous_ops_per_sec"] > 100


def redis_cli(port: int, *args: str, timeout: float = 30) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, check=False).stdout


def test_redis_cli_scan_bigkeys_and_stat(cluster: Cluster, client: redis.Redis) -> None:
    fill(cluster, 500, "cli")
    client.rpush(key_on(1, b"cli:list"), *range(50))
    scanned = redis_cli(cluster.port, "--scan").split()
    assert len(scanned) == 501 and len(set(scanned)) == 501
    big = redis_cli(cluster.port, "--bigkeys")
    assert "501 keys" in big or "Sampled 501 keys" in big, big
    assert "Biggest   list found" in big and "50 items" in big, big
    # line-buffered: redis-cli buffers a pipe fully, and it is stopped before it flushes
    proc = subprocess.Popen(["stdbuf", "-oL", "redis-cli", "-p", str(cluster.port), "--stat",
                             "-i", "0.2"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d", line)]
    assert rows, out
    keys, mem, clients = rows[-1][0], rows[-1][1], rows[-1][2]
    assert keys == "501" and mem.endswith(("K", "M")) and int(clients) >= 1, out


def test_client_list_info_and_kill_describe_the_proxys_clients(cluster: Cluster) -> None:
    with cluster.raw() as me, cluster.raw() as victim:
        assert victim.call("CLIENT", "SETNAME", "victim") == b"+OK\r\n"
        victim_id = int(victim.call("CLIENT", "ID")[1:-2])
        listing = me.call("CLIENT", "LIST").decode()
        lines = listing[listing.index("\r\n") + 2:-2].splitlines()
        by_id = {int(re.search(r"id=(\d+)", line)[1]): line for line in lines}  # type: ignore[index]
        line = by_id[victim_id]
        assert " name=victim " in line and " cmd=client|id " not in line  # cmd is "client"
        assert re.search(rf" addr=127\.0\.0\.1:\d+ laddr=127\.0\.0\.1:{cluster.port} ", line)
        assert " flags=N " in line and " resp=2 " in line and " multi=-1 " in line
        assert me.call("MULTI") == b"+OK\r\n"
        assert me.call("CLIENT", "INFO").startswith(b"-ERR pyproxy: 'CLIENT' cannot be queued")
        assert me.call("DISCARD") == b"+OK\r\n"
        mine = me.call("CLIENT", "INFO").decode()
        assert " flags=N " in mine and " cmd=client " in mine
        assert me.call("CLIENT", "KILL", "ID", str(victim_id)) == b":1\r\n"
        assert victim.until_eof() == b""
        assert me.call("CLIENT", "KILL", "1.2.3.4:5") == b"-ERR No such client\r\n"
        assert me.call("CLIENT", "KILL", "TYPE", "pubsub") == b":0\r\n"
        assert me.call("CLIENT", "KILL", "ID", "0") == b":0\r\n"
        assert me.call("PING") == b"+PONG\r\n"
