"""RESP3 clients (HELLO 3, redis-py 8's default): byte-exact RESP3 replies through the proxy.

A client that says HELLO 3 is served over RESP3 backend connections, so what it receives
for a single-shard command is exactly what a Redis would send it after HELLO 3 — while RESP2
clients on the same proxy keep getting RESP2.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import redis

from pyproxy.protocol import resp
from tests.keys import keys_for_shard
from tests.servers import free_port, pool_config, two_shards


class Raw:
    """A raw socket client: one call, one complete reply (found with resp.reply_end)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def call(self, *args: str | bytes) -> bytes:
        self.sock.sendall(resp.encode_command([a if isinstance(a, bytes) else a.encode()
                                               for a in args]))
        while (end := resp.reply_end(self.buf, 0) if self.buf else -1) < 0:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        reply, self.buf = self.buf[:end], self.buf[end:]
        return reply

    def close(self) -> None:
        self.sock.close()


def key_on(shard: int, prefix: str) -> str:
    return keys_for_shard(shard, 1, prefix)[0]


@pytest.fixture
def setup(redis_factory: Any, proxy_factory: Any) -> tuple[int, Any, Any, Any]:
    a, b, reference = redis_factory(), redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b), timeout=2000))
    return port, a, b, reference


def test_hello_3_switches_the_connection_to_resp3(setup: Any) -> None:
    port, *_ = setup
    conn = Raw(port)
    try:
        hello = conn.call("HELLO", "3")
        assert hello.startswith(b"%7\r\n$6\r\nserver\r\n")
        assert b"$5\r\nproto\r\n:3\r\n" in hello
        assert conn.call("CLIENT", "GETNAME") == b"_\r\n"
        assert conn.call("CONFIG", "GET", "save") == b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"
        assert conn.call("HELLO", "2").startswith(b"*14\r\n")  # and back
        assert conn.call("CLIENT", "GETNAME") == b"$-1\r\n"
    finally:
        conn.close()


def test_single_shard_replies_are_byte_exact_resp3(setup: Any) -> None:
    port, _, _, reference = setup
    proxy, direct = Raw(port), Raw(reference.port)
    commands: list[tuple[str, ...]] = []
    for shard in (0, 1):
        h, z, s, k = (key_on(shard, f"r3{t}") for t in "hzsk")
        commands += [
            ("HSET", h, "f1", "v1", "f2", "v2"), ("HGETALL", h), ("HGET", h, "nope"),
            ("ZADD", z, "1.5", "a", "2", "b"), ("ZRANGE", z, "0", "-1", "WITHSCORES"),
            ("ZSCORE", z, "a"), ("SADD", s, "x", "y"), ("SMISMEMBER", s, "x", "q"),
            ("SISMEMBER", s, "x"), ("GET", k), ("SET", k, "v"), ("GET", k),
            ("INCRBYFLOAT", k + "f", "1.5"), ("LPUSH", h, "x"), ("TTL", k),
        ]
    try:
        assert proxy.call("HELLO", "3").startswith(b"%")
        assert direct.call("HELLO", "3").startswith(b"%")
        for command in commands:
            assert proxy.call(*command) == direct.call(*command), command
        m0, m1 = key_on(0, "r3m"), key_on(1, "r3m")
        proxy.call("SET", m0, "0")
        assert proxy.call("MGET", m0, m1) == b"*2\r\n$1\r\n0\r\n_\r\n"  # RESP3 null inside
        assert proxy.call("DEL", m0, m1, "r3-none") == b":1\r\n"
    finally:
        proxy.close()
        direct.close()


def test_resp2_and_resp3_clients_side_by_side(setup: Any) -> None:
    port, *_ = setup
    two, three = Raw(port), Raw(port)
    h = key_on(0, "side")
    try:
        three.call("HELLO", "3")
        assert two.call("HSET", h, "f", "v") == b":1\r\n"
        for _ in range(3):  # interleaved on the same backend address, different encodings
            assert two.call("HGETALL", h) == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
            assert three.call("HGETALL", h) == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    finally:
        two.close()
        three.close()


def test_redis_py_resp3(setup: Any) -> None:
    port, a, b, _ = setup
    r = redis.Redis("127.0.0.1", port, protocol=3, socket_timeout=5)
    try:
        keys = [key_on(i % 2, f"py3:{i}:") for i in range(10)]
        assert r.mset({k: k for k in keys}) is True
        assert r.mget([*keys, "py3:none"]) == [k.encode() for k in keys] + [None]
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.hset(f"{k}:h", mapping={"a": 1, "b": 2}).hgetall(f"{k}:h")
            pipe.zadd(f"{k}:z", {"m": 1.5}).zscore(f"{k}:z", "m")
        results = pipe.execute()
        assert results[1] == {b"a": b"1", b"b": b"2"} and results[3] == 1.5
        assert r.delete(*keys) == 10
        assert a.client().dbsize() > 0 and b.client().dbsize() > 0  # both shards were used
    finally:
        r.close()
