"""Transactions through the proxy against real redis-servers: Redis's bytes, nothing run when a
transaction is refused, WATCH on a pinned connection, atomicity under 100 concurrent clients,
and redis-py's defaults (pipeline(), transaction() with WATCH, Lock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.test_proxy import (
    Cluster,
    Raw,
    key_on,
    slot,
    two_shard_cluster,
)

DEADLINE = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_shard_cluster() as running:
        yield running


def untouched(cluster: Cluster, *keys: bytes) -> bool:
    """None of ``keys`` exists on either backend (checked there directly)."""
    return all(server.client().exists(*keys) == 0 for server in (cluster.a, cluster.b))


def same_bytes(cluster: Cluster, lines: list[str]) -> list[bytes]:
    """Each command through the proxy and to the reference redis: the same reply bytes."""
    got = []
    with cluster.raw() as proxy, Raw("127.0.0.1", cluster.ref.port) as ref:
        for line in lines:
            args = line.split()
            proxy.cmd(*args)
            ref.cmd(*args)
            mine, theirs = proxy.reply(), ref.reply()
            assert mine == theirs, (line, mine, theirs)
            got.append(mine)
    return got


def test_a_transaction_answers_redis_bytes(cluster: Cluster) -> None:
    replies = same_bytes(cluster, [
        "MULTI", "SET tx:{a}1 x", "INCR tx:{a}2", "LPUSH tx:{a}1 y", "GET tx:{a}1", "PING",
        "EXEC", "GET tx:{a}1", "MULTI", "DISCARD", "EXEC", "DISCARD", "MULTI", "MULTI",
        "WATCH tx:{a}1", "GET tx:{a}2", "EXEC", "MULTI", "EXEC",
    ])
    assert replies[1] == b"+QUEUED\r\n"
    assert replies[6] == (b"*5\r\n+OK\r\n:1\r\n-WRONGTYPE Operation against a key holding the "
                          b"wrong kind of value\r\n$1\r\nx\r\n+PONG\r\n")
    assert replies[10] == b"-ERR EXEC without MULTI\r\n"
    assert replies[13] == b"-ERR MULTI calls can not be nested\r\n"
    assert replies[16] == b"*1\r\n$1\r\n1\r\n" and replies[18] == b"*0\r\n"


def test_queue_time_errors_abort_with_nothing_run(cluster: Cluster) -> None:
    same_bytes(cluster, ["MULTI", "SET txq:{a}1 x", "NOSUCH a", "SET txq:{a}2 y", "EXEC",
                         "MULTI", "SET txq:{a}1 x", "GET", "EXEC", "EXISTS txq:{a}1 txq:{a}2"])
    assert untouched(cluster, b"txq:{a}1", b"txq:{a}2")


def test_a_cross_shard_transaction_touches_nothing(cluster: Cluster) -> None:
    k0, k1 = key_on(0, b"txx"), key_on(1, b"txx")
    with cluster.raw() as conn:
        assert conn.call("MULTI") == b"+OK\r\n"
        assert conn.call("SET", k0, "a") == b"+QUEUED\r\n"
        reply = conn.call("SET", k1, "b")
        assert reply.startswith(b"-ERR pyproxy: 'SET' touches a key outside shard "), reply
        assert conn.call("INCR", k0) == b"+QUEUED\r\n"
        assert conn.call("EXEC") == (
            b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        assert untouched(cluster, k0, k1)
        assert conn.call("SET", k0, "after") == b"+OK\r\n"  # the connection goes on
        assert conn.call("GET", k0) == b"$5\r\nafter\r\n"


@pytest.mark.parametrize("refused", ["SHUTDOWN", "SUBSCRIBE ch", "KEYS *", "CLIENT LIST",
                                     "BLPOP txr:{a}q 0 txr:{b}q", "SCRIPT LOAD x"])
def test_a_refused_command_inside_a_transaction_aborts_it(cluster: Cluster, refused: str) -> None:
    with cluster.raw() as conn:
        assert conn.call("MULTI") == b"+OK\r\n"
        assert conn.call("SET", "txr:{a}1", "x") == b"+QUEUED\r\n"
        assert conn.call(*refused.split()).startswith(b"-ERR "), refused
        assert conn.call("EXEC").startswith(b"-EXECABORT ")
        assert untouched(cluster, b"txr:{a}1")
        assert conn.call("PING") == b"+PONG\r\n"


def test_watch_conflict_gives_null_in_either_protocol(cluster: Cluster) -> None:
    for protocol, null in ((2, b"*-1\r\n"), (3, b"_\r\n")):
        with cluster.raw() as conn, cluster.raw() as other:
            if protocol == 3:
                assert conn.call("HELLO", "3").startswith(b"%")
            assert conn.call("WATCH", "txw:{w}k", "txw:{w}j") == b"+OK\r\n"
            assert conn.call("GET", "txw:{w}k") in (b"$-1\r\n", b"_\r\n")
            assert other.call("SET", "txw:{w}k", "changed") == b"+OK\r\n"
            assert conn.call("MULTI") == b"+OK\r\n"
            assert conn.call("SET", "txw:{w}k", "mine") == b"+QUEUED\r\n"
            assert conn.call("EXEC") == null
            assert other.call("GET", "txw:{w}k") == b"$7\r\nchanged\r\n"
            # unwatched after EXEC: the next transaction goes through
            assert conn.call("MULTI") == b"+OK\r\n"
            assert conn.call("SET", "txw:{w}k", "mine") == b"+QUEUED\r\n"
            assert conn.call("EXEC") in (b"*1\r\n+OK\r\n",)
            assert other.call("DEL", "txw:{w}k") == b":1\r\n"


def test_watch_refuses_keys_of_another_shard_with_nothing_sent(cluster: Cluster) -> None:
    k0, k1 = key_on(0, b"tw2"), key_on(1, b"tw2")
    with cluster.raw() as conn:
        assert conn.call("WATCH", k0, k1).startswith(b"-ERR pyproxy: the keys of 'WATCH' live")
        assert conn.call("WATCH", k0) == b"+OK\r\n"
        assert conn.call("WATCH", k1).startswith(b"-ERR pyproxy: this connection already "
                                                 b"watches keys of shard")
        assert conn.call("UNWATCH") == b"+OK\r\n"
        assert conn.call("WATCH", k1) == b"+OK\r\n"  # after UNWATCH, any shard again
        assert conn.call("MULTI") == b"+OK\r\n"
        assert conn.call("SET", k0, "x").startswith(b"-ERR pyproxy: 'SET' touches a key "
                                                    b"outside shard")
        assert conn.call("DISCARD") == b"+OK\r\n"
    assert untouched(cluster, k0, k1)


def test_100_concurrent_transactions_are_atomic_and_never_mix(cluster: Cluster) -> None:
    """Every client's transaction travels on the one shared connection of the shard; each
    EXEC must hold exactly that client's results, and the counter must count each once."""
    clients, rounds = 100, 20
    failures: list[str] = []
    incremented: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def worker(n: int) -> None:
        try:
            with cluster.raw() as conn:
                start.wait(DEADLINE)
                for i in range(rounds):
                    value = f"client{n}-round{i}".encode()
                    conn.send(b"MULTI\r\n" + b"SET tc:{c}%d %s\r\n" % (n, value)
                              + b"GET tc:{c}%d\r\n" % n + b"INCR tc:{c}counter\r\nEXEC\r\n")
                    replies = conn.replies(5)
                    if replies[:4] != [b"+OK\r\n"] + [b"+QUEUED\r\n"] * 3:
                        failures.append(repr(replies))
                        return
                    head = b"*3\r\n+OK\r\n$%d\r\n%s\r\n:" % (len(value), value)
                    if not replies[4].startswith(head):
                        failures.append(f"client {n}: {replies[4]!r}")
                        return
                    with lock:
                        incremented.append(int(replies[4][len(head):-2]))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert sorted(incremented) == list(range(1, clients * rounds + 1))
    server = cluster.backend(b"{c}")
    assert server.client().get("tc:{c}counter") == str(clients * rounds).encode()
    assert all(server.client().get(f"tc:{{c}}{n}") == f"client{n}-round{rounds - 1}".encode()
               for n in range(clients))


# ---------------------------------------------------------------- redis-py, its defaults


@pytest.fixture
def client(cluster: Cluster) -> Iterator[redis.Redis]:
    r = redis.Redis("127.0.0.1", cluster.port, socket_timeout=DEADLINE)  # every default
    yield r
    r.close()


def test_redis_py_default_pipeline_is_a_transaction(cluster: Cluster,
                                                    client: redis.Redis) -> None:
    assert client.pipeline().set("rp:{p}1", "written").incr("rp:{p}2").get(
        "rp:{p}1").execute() == [True, 1, b"written"]
    with pytest.raises(redis.ResponseError):  # a cross-shard one: refused, nothing written
        client.pipeline().set(key_on(0, b"rp"), 1).set(key_on(1, b"rp"), 2).execute()
    assert untouched(cluster, key_on(0, b"rp"), key_on(1, b"rp"))
    assert client.get("rp:{p}2") == b"1"


def test_redis_py_transaction_retries_on_a_concurrent_change(cluster: Cluster,
                                                             client: redis.Redis) -> None:
    client.set("rp:{w}balance", 100)
    other = redis.Redis("127.0.0.1", cluster.port, socket_timeout=DEADLINE)
    attempts = []

    def debit(pipe: Any) -> None:
        balance = int(pipe.get("rp:{w}balance"))
        attempts.append(balance)
        if len(attempts) == 1:
            other.incrby("rp:{w}balance", 50)  # a concurrent change: the first EXEC fails
        pipe.multi()
        pipe.set("rp:{w}balance", balance - 30)

    try:
        client.transaction(debit, "rp:{w}balance")
    finally:
        other.close()
    assert attempts == [100, 150]
    assert client.get("rp:{w}balance") == b"120"


def test_redis_py_lock_acquires_extends_and_releases(client: redis.Redis) -> None:
    lock = client.lock("rp:lock", timeout=5, blocking_timeout=2)
    assert lock.acquire()
    assert not client.lock("rp:lock", timeout=5, blocking_timeout=0.1).acquire()
    assert lock.extend(5)
    assert 5000 < client.pttl("rp:lock") <= 10000
    lock.release()
    assert client.exists("rp:lock") == 0
    assert client.lock("rp:lock", timeout=5).acquire()


def test_redis_py_register_script_survives_script_flush_on_the_backends(
        cluster: Cluster, client: redis.Redis) -> None:
    incr_by = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert incr_by(keys=["rp:s1"], args=[2]) == 2
    for server in (cluster.a, cluster.b):
        server.client().script_flush()  # as after a failover to a replica without scripts
    assert incr_by(keys=["rp:s1"], args=[3]) == 5
    assert incr_by(keys=[key_on(0, b"rp:s")], args=[1]) == 1
    assert incr_by(keys=[key_on(1, b"rp:s")], args=[1]) == 1
    assert client.script_exists(incr_by.sha) == [True]


def test_evalsha_is_reloaded_once_by_the_proxy_and_flush_forgets(cluster: Cluster) -> None:
    with cluster.raw() as conn:
        sha = conn.call("SCRIPT", "LOAD", "return 'hi'")
        assert sha == b"$40\r\n" + _sha1(b"return 'hi'") + b"\r\n"
        sha_text = _sha1(b"return 'hi'")
        for server in (cluster.a, cluster.b):
            server.client().script_flush()
        assert conn.call("EVALSHA", sha_text, "0") == b"$2\r\nhi\r\n"  # reloaded by the proxy
        assert conn.call("SCRIPT", "EXISTS", sha_text, "ff" * 20) == b"*2\r\n:0\r\n:0\r\n"
        assert conn.call("EVALSHA", sha_text, "1", key_on(1, b"ev")) == b"$2\r\nhi\r\n"
        assert conn.call("SCRIPT", "FLUSH") == b"+OK\r\n"
        assert conn.call("EVALSHA", sha_text, "0").startswith(b"-NOSCRIPT")
        assert conn.call("EVAL", "return 'hi'", "0") == b"$2\r\nhi\r\n"  # remembered again
        for server in (cluster.a, cluster.b):
            server.client().script_flush()
        assert conn.call("EVALSHA", sha_text, "0") == b"$2\r\nhi\r\n"


def _sha1(body: bytes) -> bytes:
    import hashlib

    return hashlib.sha1(body).hexdigest().encode()


def test_a_watching_client_is_pinned_only_to_its_shard(cluster: Cluster) -> None:
    k = key_on(0, b"pin")
    with cluster.raw() as conn:
        before = cluster.a.client().info("clients")["connected_clients"]
        assert conn.call("WATCH", k) == b"+OK\r\n"
        assert cluster.a.client().info("clients")["connected_clients"] == before + 1
        assert conn.call("SET", key_on(1, b"pin"), "other shard") == b"+OK\r\n"
        assert conn.call("EXEC") == b"-ERR EXEC without MULTI\r\n"
        assert conn.call("UNWATCH") == b"+OK\r\n"
    assert slot(k) < 2048


def test_functions_and_script_kill_reach_every_master(cluster: Cluster) -> None:
    library = "#!lua name=pylib\nredis.register_function('hello', function() return 'hi' end)"
    with cluster.raw() as conn:
        assert conn.call("FUNCTION", "LOAD", library) == b"$5\r\npylib\r\n"
        for server in (cluster.a, cluster.b):  # loaded on both masters
            assert server.client().fcall("hello", 0) == b"hi"
        assert conn.call("FCALL", "hello", "1", key_on(1, b"fn")) == b"$2\r\nhi\r\n"
        assert conn.call("FUNCTION", "LIST").startswith(b"*1\r\n")
        assert conn.call("SCRIPT", "KILL").startswith(b"-NOTBUSY")  # nothing runs anywhere
        assert conn.call("FUNCTION", "KILL").startswith(b"-NOTBUSY")
        assert conn.call("FUNCTION", "DELETE", "pylib") == b"+OK\r\n"
        assert conn.call("FCALL", "hello", "0").startswith(b"-ERR Function not found")
        assert conn.call("FUNCTION", "DUMP").startswith(b"-ERR pyproxy: 'FUNCTION' is not")


def test_script_kill_stops_a_busy_script_on_its_shard(cluster: Cluster) -> None:
    for server in (cluster.a, cluster.b):
        server.client().config_set("busy-reply-threshold", 100)  # BUSY after 100 ms, not 5 s
    key = key_on(0, b"busy")
    with cluster.raw() as looping, cluster.raw() as admin:
        looping.cmd("EVAL", "while true do end", "1", key)
        deadline = time.monotonic() + DEADLINE
        while True:  # once the script is busy, its shard answers BUSY and can be killed
            reply = admin.call("SCRIPT", "KILL")
            if reply == b"+OK\r\n":
                break
            assert reply.startswith((b"-NOTBUSY", b"-BUSY")), reply
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert b"killed by user" in looping.reply()
        assert admin.call("SET", key, "free again") == b"+OK\r\n"
