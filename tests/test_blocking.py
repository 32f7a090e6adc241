"""Blocking commands through the proxy against real redis-servers: BLPOP across two proxies,
Redis's timeouts, 200 blocked clients beside live traffic, a blocked client that goes away
losing nothing, the pinned-connection bound, and each blocking command's bytes."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import ProxyProcess, RedisServer, free_port
from tests.test_proxy import (
    Cluster,
    Raw,
    key_on,
    pool_yaml,
    second_proxy,
    two_shard_cluster,
)

DEADLINE = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_shard_cluster(timeout=1000) as running:
        yield running


@pytest.fixture(scope="module")
def second(cluster: Cluster) -> Iterator[ProxyProcess]:
    with second_proxy(cluster) as proxy:
        yield proxy


def blocked_clients(server: RedisServer) -> int:
    return int(server.client().info("clients")["blocked_clients"])


def test_blpop_through_one_proxy_gets_the_push_through_another(cluster: Cluster,
                                                                second: ProxyProcess) -> None:
    q = key_on(0, b"bq")
    with cluster.raw() as worker, Raw("127.0.0.1", second.port) as producer:
        worker.cmd("BLPOP", q, "0")
        deadline = time.monotonic() + DEADLINE
        while blocked_clients(cluster.a) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert producer.call("RPUSH", q, "job-1") == b":1\r\n"
        assert worker.reply() == b"*2\r\n$%d\r\n%s\r\n$5\r\njob-1\r\n" % (len(q), q)
        assert worker.call("PING") == b"+PONG\r\n"  # back to ordinary service


def test_timeouts_are_redis_s(cluster: Cluster) -> None:
    with cluster.raw() as conn:
        started = time.monotonic()
        assert conn.call("BLPOP", "bt:{x}none", "0.2") == b"*-1\r\n"
        took = time.monotonic() - started
        assert 0.15 < took < 2.0, took
        started = time.monotonic()
        assert conn.call("XREAD", "BLOCK", "150", "STREAMS", "bt:{x}s", "$") == b"*-1\r\n"
        assert 0.1 < time.monotonic() - started < 2.0
        assert conn.call("BLPOP", "bt:{x}none", "-1") == (
            b"-ERR timeout is negative\r\n")  # Redis's own check, forwarded


def test_a_client_that_disconnects_while_blocked_loses_nothing(cluster: Cluster) -> None:
    q = key_on(1, b"bgone")
    conn = cluster.raw()
    conn.cmd("BLPOP", q, "0")
    deadline = time.monotonic() + DEADLINE
    while blocked_clients(cluster.b) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    conn.close()
    while blocked_clients(cluster.b) > 0:  # the proxy closed the pinned connection
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with cluster.raw() as producer:
        assert producer.call("RPUSH", q, "kept") == b":1\r\n"
    assert cluster.b.client().lrange(q, 0, -1) == [b"kept"]


def test_commands_pipelined_behind_a_blocked_call_wait_for_it(cluster: Cluster) -> None:
    q = b"bpipe:{p}q"
    with cluster.raw() as conn, cluster.raw() as producer:
        conn.send(b"BLPOP bpipe:{p}q 0\r\nRPUSH bpipe:{p}q mine\r\nLRANGE bpipe:{p}q 0 -1\r\n")
        time.sleep(0.2)
        # as with Redis, the RPUSH behind the BLPOP has not run: the list is still empty
        assert cluster.backend(q).client().llen(q) == 0
        assert producer.call("RPUSH", q, "theirs") == b":1\r\n"
        assert conn.replies(3) == [b"*2\r\n$10\r\nbpipe:{p}q\r\n$6\r\ntheirs\r\n", b":1\r\n",
                                   b"*1\r\n$4\r\nmine\r\n"]


def test_a_cross_shard_blocking_call_names_the_shards_and_runs_nowhere(cluster: Cluster) -> None:
    k0, k1 = key_on(0, b"bx"), key_on(1, b"bx")
    with cluster.raw() as conn:
        reply = conn.call("BLPOP", k0, k1, "0")
        assert reply.startswith(b"-ERR pyproxy: the keys of 'BLPOP' live on different shards ("
                                ) and cluster.a.address.encode() in reply, reply
        assert blocked_clients(cluster.a) == blocked_clients(cluster.b) == 0
        assert conn.call("PING") == b"+PONG\r\n"


def test_each_blocking_command_answers_redis_bytes(cluster: Cluster) -> None:
    script = [
        "RPUSH bc:{b}l a b c", "BLPOP bc:{b}l 1", "BRPOP bc:{b}l 1", "BLMOVE bc:{b}l bc:{b}m "
        "LEFT RIGHT 1", "BRPOPLPUSH bc:{b}m bc:{b}l 1", "BLMPOP 1 2 bc:{b}n bc:{b}l LEFT COUNT 5",
        "ZADD bc:{b}z 1 a 2 b 3 c", "BZPOPMIN bc:{b}z 1", "BZPOPMAX bc:{b}z 1",
        "BZMPOP 1 1 bc:{b}z MIN", "XADD bc:{b}s 1-1 f v", "XREAD BLOCK 100 STREAMS bc:{b}s 0",
        "XGROUP CREATE bc:{b}s g 0", "XREADGROUP GROUP g c BLOCK 100 STREAMS bc:{b}s >",
        "XREAD COUNT 1 STREAMS bc:{b}s 0", "BLPOP bc:{b}l", "BLPOP bc:{b}l x",
        "MULTI", "BLPOP bc:{b}empty 0", "EXEC",  # inside MULTI it does not block
    ]
    with cluster.raw() as proxy, Raw("127.0.0.1", cluster.ref.port) as ref:
        for line in script:
            proxy.cmd(*line.split())
            ref.cmd(*line.split())
            assert proxy.reply() == ref.reply(), line


def test_200_blocked_clients_leave_other_clients_latency_alone(cluster: Cluster) -> None:
    """Each blocked client waits on a pinned connection of its own: the shard counts 200
    blocked clients while GET/SET through the shared connections keep their latency."""
    def latencies(rounds: int = 300) -> list[float]:
        out = []
        with cluster.raw() as conn:
            for i in range(rounds):
                started = time.perf_counter()
                assert conn.call("SET", b"blat:%d" % (i % 7), "v") == b"+OK\r\n"
                assert conn.call("GET", b"blat:%d" % (i % 7)) == b"$1\r\nv\r\n"
                out.append((time.perf_counter() - started) / 2)
        return out

    before = latencies()
    q = key_on(0, b"b200")
    blocked = [cluster.raw() for _ in range(200)]
    try:
        for conn in blocked:
            conn.cmd("BLPOP", q, "0")
        deadline = time.monotonic() + DEADLINE
        while blocked_clients(cluster.a) < 200:
            assert time.monotonic() < deadline, blocked_clients(cluster.a)
            time.sleep(0.02)
        during = latencies()
        with cluster.raw() as producer:
            assert producer.call("RPUSH", q, *[b"e%d" % i for i in range(200)]) == b":200\r\n"
        got = sorted(conn.reply() for conn in blocked)
        assert len(set(got)) == 200  # every element to exactly one blocked client
    finally:
        for conn in blocked:
            conn.close()
    figures = {name: (statistics.median(v) * 1000, sorted(v)[int(len(v) * 0.99)] * 1000)
               for name, v in (("before", before), ("during", during))}
    print("BLOCKING-200 p50/p99 ms", {k: [round(x, 3) for x in v] for k, v in figures.items()})
    assert figures["during"][1] < 100  # generous: blocked clients hold nothing shared


def test_past_the_pinned_bound_a_blocking_call_gets_an_error_at_once(
        redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers, pinned_connections=2))
    q = key_on(0, b"bound")
    held = [Raw("127.0.0.1", proxy.port) for _ in range(2)]
    try:
        for conn in held:
            conn.cmd("BLPOP", q, "0")
        deadline = time.monotonic() + DEADLINE
        while blocked_clients(a) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with Raw("127.0.0.1", proxy.port) as third:
            started = time.monotonic()
            reply = third.call("BLPOP", q, "0")
            assert reply.startswith(b"-ERR pyproxy: shard ") and b"pinned_connections: 2" in reply
            assert time.monotonic() - started < 2.0
            assert third.call("RPUSH", q, "x", "y") == b":2\r\n"  # shared ones unaffected
        assert sorted(c.reply().rsplit(b"\r\n", 2)[1] for c in held) == [b"x", b"y"]
    finally:
        for conn in held:
            conn.close()


def test_a_released_pinned_connection_is_reused(cluster: Cluster) -> None:
    before = int(cluster.a.client().info("stats")["total_connections_received"])
    q = key_on(0, b"reuse")
    with cluster.raw() as conn:
        for _ in range(20):
            assert conn.call("BLPOP", q, "0.01") == b"*-1\r\n"
    after = int(cluster.a.client().info("stats")["total_connections_received"])
    assert after - before <= 2  # one pinned connection (plus the INFO client itself)


def test_blocked_clients_are_each_woken_once_under_concurrency(cluster: Cluster) -> None:
    q = key_on(1, b"bconc")
    results: list[bytes] = []
    lock = threading.Lock()

    def consume() -> None:
        with cluster.raw() as conn:
            for _ in range(10):
                reply = conn.call("BLPOP", q, "5")
                with lock:
                    results.append(reply)

    workers = [threading.Thread(target=consume) for _ in range(10)]
    for w in workers:
        w.start()
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=DEADLINE) as producer:
        for i in range(100):
            producer.sendall(b"RPUSH %s item%d\r\n" % (q, i))
        time.sleep(0.1)
    for w in workers:
        w.join(30)
    values = sorted(r.rsplit(b"\r\n", 2)[1] for r in results)
    assert values == sorted(b"item%d" % i for i in range(100))
