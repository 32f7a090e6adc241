"""pyproxy end to end against real redis-servers: exact bytes, ordering, size, concurrency,
bad input, the commands answered locally, real clients (redis-cli, redis-benchmark,
redis-py) and the command line.

Most tests share one module-wide cluster (two redis-servers behind one proxy, slots
0-2047 / 2048-4095, hash tag "{}"); each test uses its own key prefix. A third, standalone
redis-server is the reference: a command sent to it and through the proxy must get the
same bytes back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from pyproxy.protocol import resp
from pyproxy.protocol.resp import encode_command
from tests.servers import ProxyProcess, RedisServer, free_port, pool_config, redis_client

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 10.0  # generous bound for anything that should take milliseconds


# ---------------------------------------------------------------- helpers shared by
# test_parity.py and test_faults.py


def slot(key: bytes, modulus: int = 4096, tag: bytes | None = b"{}") -> int:
    """system.md §1, written out independently of pyproxy.hashing."""
    if tag is not None:
        start = key.find(tag[:1])
        end = key.find(tag[1:], start + 1) if start >= 0 else -1
        if start >= 0 and end > start + 1:
            key = key[start + 1 : end]
    if not key:
        return 0
    d = hashlib.md5(key).digest()
    return (d[0] | d[1] << 8 | d[2] << 16 | d[3] << 24) % modulus


def key_on(shard: int, prefix: bytes, n: int = 0) -> bytes:
    """The n-th key ``prefix:<i>`` whose slot is in 0-2047 (shard 0) or 2048-4095 (shard 1)."""
    i = found = 0
    while True:
        key = b"%s:%d" % (prefix, i)
        if (slot(key) >= 2048) == bool(shard):
            if found == n:
                return key
            found += 1
        i += 1


def pool_yaml(port: int, servers: list[str], **extra: Any) -> str:
    return pool_config(port, servers, hash_tag='"{}"', **extra)


def two_shard_config(a: RedisServer, b: RedisServer, **extra: Any) -> Any:
    """A config source for ProxyProcess (a callable: a new port on each start attempt)."""
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    return lambda: pool_yaml(free_port(), servers, **extra)


class Raw:
    """A raw socket client: sends bytes, reads whole replies (as raw bytes) or EOF."""

    def __init__(self, host: str, port: int, timeout: float = DEADLINE) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, *args: bytes | str | int) -> None:
        self.send(encode_command([a if isinstance(a, bytes) else str(a).encode() for a in args]))

    def replies(self, count: int) -> list[bytes]:
        out: list[bytes] = []
        pos = 0
        while len(out) < count:
            end = resp.reply_end(self.buf, pos) if pos < len(self.buf) else -1
            if end < 0:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError(f"EOF after {len(out)} of {count} replies")
                self.buf += data
                continue
            out.append(self.buf[pos:end])
            pos = end
        self.buf = self.buf[pos:]
        return out

    def reply(self) -> bytes:
        return self.replies(1)[0]

    def call(self, *args: bytes | str | int) -> bytes:
        self.cmd(*args)
        return self.reply()

    def until_eof(self) -> bytes:
        """Everything up to the server closing the connection (fails on timeout)."""
        chunks = [self.buf]
        self.buf = b""
        while data := self.sock.recv(1 << 20):
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the shared cluster


@dataclass
class Cluster:
    a: RedisServer  # slots 0-2047
    b: RedisServer  # slots 2048-4095
    ref: RedisServer  # standalone reference
    proxy: ProxyProcess

    @property
    def port(self) -> int:
        return self.proxy.port

    def raw(self) -> Raw:
        return Raw("127.0.0.1", self.port)

    def backend(self, key: bytes) -> RedisServer:
        return self.a if slot(key) < 2048 else self.b

    def other(self, key: bytes) -> RedisServer:
        return self.b if slot(key) < 2048 else self.a


@contextlib.contextmanager
def two_shard_cluster(timeout: int = 5000) -> Iterator[Cluster]:
    """Two shards, a reference redis and a proxy over the shards (per-request ``timeout`` ms);
    the proxy must stop on SIGTERM, unforced."""
    with RedisServer() as a, RedisServer() as b, RedisServer() as ref:
        proxy = ProxyProcess(two_shard_config(a, b, timeout=timeout))
        with proxy:
            yield Cluster(a, b, ref, proxy)
        assert not proxy.forced_kill, proxy.log_tail()


@contextlib.contextmanager
def second_proxy(cluster: Cluster, timeout: int = 1000) -> Iterator[ProxyProcess]:
    """A second proxy over the same two shards."""
    with ProxyProcess(two_shard_config(cluster.a, cluster.b, timeout=timeout)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_shard_cluster() as running:
        yield running


@pytest.fixture
def conn(cluster: Cluster) -> Iterator[Raw]:
    with cluster.raw() as c:
        yield c


def same_as_reference(cluster: Cluster, commands: list[list[bytes]]) -> None:
    """Each command gets the same bytes through the proxy as from a standalone redis."""
    with cluster.raw() as proxy, Raw("127.0.0.1", cluster.ref.port) as ref:
        for args in commands:
            proxy.cmd(*args)
            ref.cmd(*args)
            assert proxy.reply() == ref.reply(), args


# ---------------------------------------------------------------- byte-exact replies


def test_basic_replies_are_redis_bytes(conn: Raw) -> None:
    assert conn.call("SET", "exact:k", "bar") == b"+OK\r\n"
    assert conn.call("GET", "exact:k") == b"$3\r\nbar\r\n"
    assert conn.call("GET", "exact:missing") == b"$-1\r\n"
    assert conn.call("LPUSH", "exact:list", "x") == b":1\r\n"
    assert conn.call("GET", "exact:list") == (
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
    assert conn.call("LPOP", "exact:nolist", "2") == b"*-1\r\n"
    assert conn.call("LRANGE", "exact:nolist", "0", "-1") == b"*0\r\n"
    assert conn.call("SET", "exact:k", "v", "NX") == b"$-1\r\n"
    assert conn.call("PING") == b"+PONG\r\n"


def test_single_key_commands_match_a_standalone_redis(cluster: Cluster) -> None:
    script = """
    SET s:str hello|GET s:str|APPEND s:str !|STRLEN s:str|GETRANGE s:str 0 2|SETRANGE s:str 1 E
    INCR s:n|INCRBY s:n 41|INCRBYFLOAT s:n 0.5|DECR s:str|INCRBYFLOAT s:f 1e400|SET s:n x EX -1
    SET s:big 99999999999999999999|INCR s:big|GETSET s:str new|GETDEL s:str|GETDEL s:str
    EXPIRE s:n 100|TTL s:n|PERSIST s:n|TTL s:n|PTTL s:none|TYPE s:n|TYPE s:none|EXPIRETIME s:none
    HSET s:h a 1 b 2|HGETALL s:h|HMGET s:h a z b|HINCRBYFLOAT s:h a 1.25|HKEYS s:h|HLEN s:none
    RPUSH s:l a b c|LRANGE s:l 0 -1|LPOS s:l z|LPOP s:l 2|LPOP s:none 1|LINDEX s:l 9
    SADD s:s a b|SISMEMBER s:s a|SMISMEMBER s:s a z|SCARD s:s|SPOP s:none 2
    ZADD s:z 1 a 2.5 b|ZRANGE s:z 0 -1 WITHSCORES|ZSCORE s:z b|ZSCORE s:z z|ZRANK s:z z
    ZADD s:z INCR 1 a|ZMSCORE s:z a z|ZINCRBY s:z -inf a|ZRANGEBYSCORE s:z -inf +inf LIMIT 0 1
    PFADD s:p a b c|PFCOUNT s:p|SETBIT s:b 7 1|GETBIT s:b 7|BITCOUNT s:b|BITPOS s:b 1
    XADD s:x 1-1 f v|XRANGE s:x - +|XLEN s:x|XADD s:x 1-0 f v|XTRIM s:x MAXLEN 0
    GEOADD s:g 13.361389 38.115556 Palermo|GEOPOS s:g Palermo nowhere|GEODIST s:g Palermo x
    OBJECT ENCODING s:l|OBJECT ENCODING s:none|HSET s:h|ZADD s:z x a|SET|GET s:a s:b
    SORT s:l ALPHA|SORT s:l ALPHA STORE {s:l}dst|DUMP s:none|RESTORE s:r 0 garbage
    """
    commands = [c.split() for line in script.split("\n") for c in line.split("|") if c.strip()]
    same_as_reference(cluster, [[a.encode() for a in c] for c in commands])


def test_multi_key_commands_match_a_standalone_redis(cluster: Cluster) -> None:
    keys = [key_on(i % 2, b"mk", i) for i in range(8)]
    assert {slot(k) < 2048 for k in keys} == {True, False}
    values = [b"v%d" % i for i in range(8)]
    pairs = [x for kv in zip(keys, values, strict=True) for x in kv]
    commands = [
        [b"MSET", *pairs],
        [b"MGET", *keys, b"mk:none", keys[0]],
        [b"EXISTS", *keys, keys[0], b"mk:none"],
        [b"TOUCH", *keys],
        [b"LPUSH", b"mk:list", b"x"],
        [b"MGET", b"mk:list", keys[1]],  # a list: MGET gives nil for it
        [b"DEL", keys[0], keys[1], b"mk:none"],
        [b"UNLINK", *keys[2:5]],
        [b"MGET", *keys],
        [b"EXISTS", *keys],
        [b"MSET", keys[0], b"x", keys[1]],
        [b"MGET"],
        [b"DEL", *keys, b"mk:list"],
    ]
    same_as_reference(cluster, commands)


def test_multi_key_commands_split_per_shard(cluster: Cluster, conn: Raw) -> None:
    keys = [key_on(i % 2, b"split", i) for i in range(6)]
    conn.cmd("MSET", *[x for k in keys for x in (k, b"val-" + k)])
    assert conn.reply() == b"+OK\r\n"
    for k in keys:  # each key on its own shard only
        assert cluster.backend(k).client().get(k) == b"val-" + k
        assert cluster.other(k).client().get(k) is None
    conn.cmd("MGET", *reversed(keys))
    expected = resp.array([resp.bulk(b"val-" + k) for k in reversed(keys)])
    assert conn.reply() == expected
    assert conn.call("DEL", *keys, b"split:none") == b":6\r\n"


def test_multi_key_commands_on_one_shard_get_that_shards_reply(cluster: Cluster,
                                                               conn: Raw) -> None:
    """Keys that share a shard (here by hash tag) travel as one command, unsplit."""
    keys = [b"{tag}:%d" % i for i in range(4)]
    owner, other = cluster.backend(keys[0]), cluster.other(keys[0])
    calls = lambda server: {  # noqa: E731
        name: stat["calls"] for name, stat in server.client().info("commandstats").items()
        if name != "cmdstat_info"}
    before, owner_mgets = calls(other), calls(owner).get("cmdstat_mget", 0)
    assert conn.call("MSET", *[x for k in keys for x in (k, k)]) == b"+OK\r\n"
    assert conn.call("MGET", *keys, b"{tag}:none") == resp.array(
        [*(resp.bulk(k) for k in keys), b"$-1\r\n"])
    assert conn.call("EXISTS", *keys) == b":4\r\n"
    assert calls(owner)["cmdstat_mget"] == owner_mgets + 1
    assert calls(other) == before  # the other shard saw nothing


# ---------------------------------------------------------------- ordering, size, concurrency


def test_3000_deep_pipeline_across_shards_in_order(conn: Raw) -> None:
    requests, expected = [], []
    for i in range(1000):
        key = b"deep:%d" % i
        requests += [encode_command([b"SET", key, b"v%d" % i]), encode_command([b"GET", key])]
        expected += [b"+OK\r\n", resp.bulk(b"v%d" % i)]
        if i % 2:
            requests.append(encode_command([b"MGET", key, b"deep:%d" % (i - 1), b"deep:x"]))
            expected.append(resp.array([resp.bulk(b"v%d" % i), resp.bulk(b"v%d" % (i - 1)),
                                        b"$-1\r\n"]))
        else:
            requests.append(encode_command([b"INCR", b"deep:counter"]))
            expected.append(resp.integer(i // 2 + 1))
    assert len(requests) == 3000
    conn.send(b"".join(requests))  # one write
    assert conn.replies(3000) == expected
    conn.cmd("DEL", *[b"deep:%d" % i for i in range(1000)], b"deep:counter")
    assert conn.reply() == b":1001\r\n"


def test_1mb_values_and_20kb_keys(cluster: Cluster, conn: Raw) -> None:
    value = os.urandom(1 << 20)
    long_keys = [key_on(i % 2, b"k" * 20 * 1024, i) for i in range(4)]  # 20 KB each
    for key in long_keys:
        assert conn.call("SET", key, value) == b"+OK\r\n"
    conn.cmd("MGET", *long_keys)
    assert conn.reply() == resp.array([resp.bulk(value)] * 4)
    for key in long_keys:  # each on the shard system.md predicts
        assert cluster.backend(key).client().strlen(key) == len(value)
        assert cluster.other(key).client().exists(key) == 0
    big = [key_on(i % 2, b"big", i) for i in range(4)]
    conn.cmd("MSET", *[x for k in big for x in (k, value)])
    assert conn.reply() == b"+OK\r\n"
    conn.cmd("MGET", *big)
    assert conn.reply() == resp.array([resp.bulk(value)] * 4)
    huge_key = b"h" * (1 << 20)  # no key limit below Redis's own
    assert conn.call("SET", huge_key, "v") == b"+OK\r\n"
    assert conn.call("GET", huge_key) == b"$1\r\nv\r\n"
    assert conn.call("DEL", *long_keys, *big, huge_key) == b":9\r\n"


def test_100_concurrent_clients_get_their_own_values(cluster: Cluster) -> None:
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            with cluster.raw() as c:
                for round_ in range(5):
                    keys = [b"conc:%d:%d" % (n, i) for i in range(10)]
                    vals = [b"%d-%d-%d" % (n, round_, i) for i in range(10)]
                    batch = [encode_command([b"SET", k, v]) for k, v in zip(keys, vals,
                                                                             strict=True)]
                    batch.append(encode_command([b"MGET", *keys]))
                    batch += [encode_command([b"GET", k]) for k in keys]
                    c.send(b"".join(batch))
                    got = c.replies(len(batch))
                    want = [b"+OK\r\n"] * 10 + [resp.array([resp.bulk(v) for v in vals])]
                    want += [resp.bulk(v) for v in vals]
                    if got != want:
                        errors.append(f"client {n} round {round_}: {got[:3]!r}")
                        return
        except Exception as exc:  # reported below, with the client number
            errors.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * 3)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with cluster.raw() as c:
        assert c.call("EXISTS", *[b"conc:%d:%d" % (n, i) for n in range(100) for i in range(10)]
                      ) == b":1000\r\n"


def test_server_connections_keep_each_clients_order(redis_factory: Any,
                                                    proxy_factory: Any) -> None:
    """With 3 connections per backend, each client's pipeline still runs in its order
    (INCR then GET of the same key: twemproxy can run them swapped, twemproxy#353)."""
    a, b = redis_factory(), redis_factory()
    proxy = proxy_factory(two_shard_config(a, b, server_connections=3, preconnect="true"))
    conns = [Raw("127.0.0.1", proxy.port) for _ in range(4)]
    try:
        expected = []
        for n, conn in enumerate(conns):
            requests, want = [], []
            for i in range(1000):
                key = b"sc:%d:%d" % (n, i % 50)
                requests += [encode_command([b"INCR", key]), encode_command([b"GET", key])]
                want += [resp.integer(i // 50 + 1), resp.bulk(b"%d" % (i // 50 + 1))]
            conn.send(b"".join(requests))
            expected.append(want)
        for conn, want in zip(conns, expected, strict=True):
            assert conn.replies(len(want)) == want
    finally:
        for conn in conns:
            conn.close()
    assert a.client().info("clients")["connected_clients"] >= 3


def test_every_command_in_the_table_gets_exactly_one_reply(cluster: Cluster) -> None:
    """Random arguments for every command the proxy knows: one reply each, in order, and
    the connection stays usable (no exception escapes the proxy). Blocking commands (which
    may wait forever, as in Redis) and subscriptions (one frame per channel) are tested in
    tests/test_blocking.py and tests/test_pubsub.py."""
    import random

    from pyproxy.protocol.commands import BLOCKING, COMMANDS, SUBSCRIBE

    rng = random.Random(7)
    pool = [b"fz:1", b"{fz}2", b"{fz}3", b"0", b"1", b"-1", b"2", b"STORE", b"STREAMS", b"x",
            b"", b"\xff", b"LIMIT", b"COUNT", b"WITHSCORES", b"GET", b"USAGE", b"$"]
    names = sorted(n for n, c in COMMANDS.items()
                   if n not in ("quit", "hello") and c.kind not in (BLOCKING, SUBSCRIBE))
    requests = []
    for name in names:
        for _ in range(4):
            args = [name.encode()] + [rng.choice(pool) for _ in range(rng.randint(0, 6))]
            requests.append(encode_command(args))
    with cluster.raw() as conn:
        # DISCARD ends a transaction the random MULTI may have opened
        conn.send(b"".join(requests) + encode_command([b"DISCARD"]) + encode_command([b"PING"]))
        replies = conn.replies(len(requests) + 2)
        assert replies[-1] == b"+PONG\r\n"
        assert conn.call("ECHO", "alive") == b"$5\r\nalive\r\n"
    assert b"Traceback" not in cluster.proxy.log_text().encode()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "garbage, error",
    [
        (b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*4294967295\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$99999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1\r\n:1\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1\r\n*1\r\n$4\r\nPING\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
        (b"*--5\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n\x00\xff\xfe\r\n", b"-ERR Protocol error: expected '$', got '\x00'\r\n"),
        (b'SET a "b\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"\xff" * 70000, b"-ERR Protocol error: too big inline request\r\n"),
    ],
)
def test_bad_input_closes_only_that_connection(cluster: Cluster, garbage: bytes,
                                               error: bytes) -> None:
    with cluster.raw() as other, cluster.raw() as bad:
        other.send(b"*3\r\n$3\r\nSET\r\n$7\r\nbad:key\r\n$5\r\nva")  # mid-frame
        bad.cmd("SET", "bad:first", "1")  # answered before the error
        # a command after the bad bytes is never answered (with no newline in them, any
        # newline would end the too-long inline line instead)
        bad.send(garbage + (b"*1\r\n$4\r\nPING\r\n" if b"\n" in garbage else b""))
        assert bad.until_eof() == b"+OK\r\n" + error
        other.send(b"lue\r\n")
        assert other.reply() == b"+OK\r\n"
        assert other.call("GET", "bad:key") == b"$5\r\nvalue\r\n"
        assert other.call("GET", "bad:first") == b"$1\r\n1\r\n"


def test_binary_garbage_lines_are_unknown_commands_like_redis(cluster: Cluster) -> None:
    garbage = [b"\x00\x01\x02 \xff\xfe\r\n", b"$99999999999\r\n", b"GETX a b\r\n",
               b"\x80" * 300 + b" " + b"y" * 300 + b"\r\n"]
    with cluster.raw() as proxy, Raw("127.0.0.1", cluster.ref.port) as ref:
        for line in garbage[1:]:  # (redis reads \x00 as the end of the line: not compared)
            proxy.send(line)
            ref.send(line)
            assert proxy.reply() == ref.reply()
        proxy.send(garbage[0])
        assert proxy.reply().startswith(b"-ERR unknown command '\x00\x01\x02'")
        assert proxy.call("PING") == b"+PONG\r\n"


def test_errors_keep_the_connection_open(cluster: Cluster, conn: Raw) -> None:
    refused = [
        "CONFIG SET save x", "CONFIG RESETSTAT", "SHUTDOWN", "DEBUG SLEEP 0", "SWAPDB 0 1",
        "MOVE k 1", "SCRIPT DEBUG YES", "MONITOR", "SAVE", "CLIENT PAUSE 10", "COMMAND FOO",
        "SLAVEOF NO ONE", "MEMORY STATS", "OBJECT HELP", "PUBSUB NOSUCH",
    ]
    for command in refused:
        reply = conn.call(*command.split())
        assert reply.startswith(b"-ERR pyproxy: "), (command, reply)
        assert b"\r\n" not in reply[:-2]
        assert conn.call("PING") == b"+PONG\r\n", command
    assert conn.call("SHUTDOWN").startswith(b"-ERR pyproxy: 'SHUTDOWN' is not supported: ")
    assert conn.call("NOSUCH", "a") == (
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n")
    assert conn.call("GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert conn.call("MSET", "a", "1", "b") == (
        b"-ERR wrong number of arguments for 'mset' command\r\n")
    assert conn.call("PING") == b"+PONG\r\n"


def test_local_errors_match_a_standalone_redis(cluster: Cluster) -> None:
    commands = [
        "NOSUCH", "NOSUCH a b c", "get", "GET a b", "SET k", "MGET", "DEL", "PING a b",
        "ECHO", "ECHO a b", "SELECT x", "SELECT 0", "HELLO 4", "HELLO x",
        "HELLO 2 FOO", "CLIENT SETNAME", "CLIENT SETNAME a\x01b", "CLIENT GETNAME",
        "CLIENT SETNAME n1", "CLIENT GETNAME", "AUTH x", "AUTH a b", "AUTH default b",
        "AUTH a b c", "HELLO 2 AUTH a b",
        "CLIENT GETNAME",
    ]  # (redis 7.0 has no CLIENT SETINFO, and HELLO 3 succeeds there)
    same_as_reference(cluster, [[a.encode() for a in c.split(" ")] for c in commands])


def test_commands_answered_by_the_proxy(cluster: Cluster, conn: Raw) -> None:
    assert conn.call("PING") == b"+PONG\r\n"
    assert conn.call("PING", "hi") == b"$2\r\nhi\r\n"
    assert conn.call("ECHO", b"\x00\r\n") == b"$3\r\n\x00\r\n\r\n"
    assert conn.call("SELECT", "0") == b"+OK\r\n"
    assert conn.call("SELECT", "1").startswith(b"-ERR pyproxy: only database 0 is served")
    assert conn.call("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == b"+OK\r\n"
    assert conn.call("CLIENT", "SETINFO", "LIB-VER", "5.0.0") == b"+OK\r\n"
    assert conn.call("CLIENT", "GETNAME") == b"$-1\r\n"
    assert conn.call("CLIENT", "SETNAME", "worker-1") == b"+OK\r\n"
    assert conn.call("CLIENT", "GETNAME") == b"$8\r\nworker-1\r\n"
    client_id = conn.call("CLIENT", "ID")
    assert client_id.startswith(b":") and int(client_id[1:-2]) > 0
    assert conn.call("HELLO", "4") == b"-NOPROTO unsupported protocol version\r\n"
    hello = conn.call("HELLO", "2", "SETNAME", "w2")
    items = resp.array_items(hello)
    assert len(items) == 14 and items[4:6] == [b"$5\r\nproto\r\n", b":2\r\n"]
    assert conn.call("CLIENT", "GETNAME") == b"$2\r\nw2\r\n"
    assert conn.call("AUTH", "pw") == (
        b"-ERR AUTH <password> called without any password configured for the default user. "
        b"Are you sure your configuration is correct?\r\n")
    count = conn.call("COMMAND", "COUNT")
    assert count.startswith(b":") and int(count[1:-2]) > 150
    info = conn.call("INFO")
    assert b"pyproxy_version:" in info and b"uptime_in_seconds:" in info
    assert b"connected_clients:" in info and b"pool_alpha:" in info
    assert conn.call("CONFIG", "GET", "maxmemory") == b"*0\r\n"
    assert conn.call("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert conn.call("COMMAND", "DOCS") == b"*0\r\n"
    info_get = conn.call("COMMAND", "INFO", "get", "nosuch")
    assert info_get.startswith(b"*2\r\n*6\r\n$3\r\nget\r\n:2\r\n") and info_get.endswith(
        b"*-1\r\n")


def test_inline_commands(conn: Raw) -> None:
    conn.send(b"PING\r\nSET inline:k \"a b\\n\"\r\nGET inline:k\nECHO 'it\\'s'\r\n")
    assert conn.replies(4) == [b"+PONG\r\n", b"+OK\r\n", b"$4\r\na b\n\r\n", b"$4\r\nit's\r\n"]


def test_quit_answers_ok_then_closes(conn: Raw) -> None:
    conn.send(b"SET quit:k 1\r\nQUIT\r\nGET quit:k\r\n")
    assert conn.until_eof() == b"+OK\r\n+OK\r\n"


def test_eval_on_one_shard_and_across_shards(conn: Raw) -> None:
    script = "return {KEYS[1], KEYS[2], ARGV[1]}"
    same = conn.call("EVAL", script, "2", "{ev}a", "{ev}b", "x")
    assert same == b"*3\r\n$5\r\n{ev}a\r\n$5\r\n{ev}b\r\n$1\r\nx\r\n"
    k0, k1 = key_on(0, b"ev"), key_on(1, b"ev")
    assert conn.call("EVAL", script, "2", k0, k1, "x") == (
        b"-ERR pyproxy: the keys of 'EVAL' live on different shards "
        b"(use a hash tag to keep them together)\r\n")
    assert conn.call("EVAL", "return redis.call('set', KEYS[1], 'v')", "1", k1) == b"+OK\r\n"
    assert conn.call("GET", k1) == b"$1\r\nv\r\n"
    sha = hashlib.sha1(b"return 7").hexdigest()
    assert conn.call("EVALSHA", sha, "1", k0).startswith(b"-NOSCRIPT")
    assert conn.call("PING") == b"+PONG\r\n"


def test_same_shard_commands(cluster: Cluster, conn: Raw) -> None:
    k0, k1 = key_on(0, b"ren"), key_on(1, b"ren")
    conn.cmd("SET", k0, "v")
    assert conn.reply() == b"+OK\r\n"
    assert conn.call("RENAME", k0, k1).startswith(
        b"-ERR pyproxy: the keys of 'RENAME' live on different shards")
    assert conn.call("GET", k0) == b"$1\r\nv\r\n"  # nothing moved
    assert conn.call("SET", "{r}old", "v") == b"+OK\r\n"
    assert conn.call("RENAME", "{r}old", "{r}new") == b"+OK\r\n"
    assert conn.call("GET", "{r}new") == b"$1\r\nv\r\n"
    assert cluster.backend(b"r").client().get("{r}new") == b"v"
    assert conn.call("SUNIONSTORE", "{r}dst", "{r}s1", "{r}s2") == b":0\r\n"
    assert conn.call("SUNIONSTORE", k0, k0, k1).startswith(b"-ERR pyproxy: the keys of")


def test_configured_request_limits(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    proxy = proxy_factory(two_shard_config(a, b, max_bulk_length=1000, max_multibulk_length=4))
    with Raw("127.0.0.1", proxy.port) as c:
        assert c.call("ECHO", b"x" * 1000) == resp.bulk(b"x" * 1000)
        assert c.call("MGET", "a", "b", "c") == b"*3\r\n$-1\r\n$-1\r\n$-1\r\n"
        c.send(b"*2\r\n$4\r\nECHO\r\n$1001\r\n")
        assert c.until_eof() == b"-ERR Protocol error: invalid bulk length\r\n"
    with Raw("127.0.0.1", proxy.port) as c:
        c.cmd("MGET", "a", "b", "c", "d")
        assert c.until_eof() == b"-ERR Protocol error: invalid multibulk length\r\n"


# ---------------------------------------------------------------- AUTH


def test_auth_with_redis_auth_configured(redis_factory: Any, proxy_factory: Any) -> None:
    password = "s3cret pass"
    a, b = (redis_factory(extra_args=("--requirepass", password)) for _ in range(2))
    proxy = proxy_factory(two_shard_config(a, b, redis_auth=f'"{password}"', redis_db=2))
    k0, k1 = key_on(0, b"auth"), key_on(1, b"auth")
    with Raw("127.0.0.1", proxy.port) as c:
        assert c.call("GET", k0) == b"-NOAUTH Authentication required.\r\n"
        assert c.call("PING") == b"-NOAUTH Authentication required.\r\n"  # as redis-server
        assert c.call("AUTH", "wrong") == (
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        assert c.call("HELLO", "2", "AUTH", "default", "wrong").startswith(b"-WRONGPASS")
        assert c.call("AUTH", password) == b"+OK\r\n"
        assert c.call("MSET", k0, "0", k1, "1") == b"+OK\r\n"  # the proxy AUTHed to both
        assert c.call("MGET", k0, k1) == b"*2\r\n$1\r\n0\r\n$1\r\n1\r\n"
    with Raw("127.0.0.1", proxy.port) as c:
        assert c.call("HELLO", "2", "AUTH", "default", password).startswith(b"*14\r\n")
        assert c.call("GET", k1) == b"$1\r\n1\r\n"
    assert a.client(password=password, db=2).get(k0) == b"0"  # AUTH, then SELECT redis_db
    assert a.client(password=password).get(k0) is None
    r = redis_client("127.0.0.1", proxy.port, password=password)
    try:
        assert r.get(k1) == b"1"
    finally:
        r.close()


# ---------------------------------------------------------------- real clients


def run(cmd: list[str], input: bytes | None = None, timeout: float = 60) -> str:
    result = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    out = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 0, out
    return out


def test_redis_cli(cluster: Cluster) -> None:
    port = str(cluster.port)
    assert run(["redis-cli", "-p", port, "SET", "cli:k", "hello world"]).strip() == "OK"
    assert run(["redis-cli", "-p", port, "GET", "cli:k"]).strip() == "hello world"
    assert run(["redis-cli", "-p", port, "--no-raw", "GET", "cli:none"]).strip() == "(nil)"
    assert run(["redis-cli", "-p", port, "KEYS", "cli:*"]).split() == ["cli:k"]
    lines = b"".join(b"SET cli:pipe:%d %d\r\n" % (i, i) for i in range(5000))
    out = run(["redis-cli", "-p", port, "--pipe"], input=lines)
    assert "errors: 0, replies: 5000" in out, out
    for server in (cluster.a, cluster.b):  # keys on both shards, each where it belongs
        keys = [k for k in server.client().scan_iter(match="cli:pipe:*", count=1000)]
        assert 2000 < len(keys) < 3000
        assert all((slot(k) < 2048) == (server is cluster.a) for k in keys)
    out = run(["redis-cli", "-p", port], input=b"PING\nMSET cli:a 1 cli:b 2\nMGET cli:a cli:b\n")
    assert out.split() == ["PONG", "OK", "1", "2"]


def test_redis_benchmark(cluster: Cluster) -> None:
    out = run(["redis-benchmark", "-p", str(cluster.port), "-t", "set,get,incr,lpush,mset",
               "-P", "8", "-n", "20000", "-r", "100000", "-q"], timeout=120)
    lines = out.replace("\r", "\n").split("\n")
    reports = [line for line in lines if "requests per second" in line]
    assert len(reports) == 5, out
    lowered = out.lower()
    assert "error" not in lowered and "warning" not in lowered and "err " not in lowered, out
    for server in (cluster.a, cluster.b):
        keys = [k for k in server.client().scan_iter(match="key:*", count=1000)]
        assert len(keys) > 1000
        assert all((slot(k) < 2048) == (server is cluster.a) for k in keys)
    assert cluster.backend(b"mylist").client().llen("mylist") > 0  # LPUSH's one key
    assert cluster.other(b"mylist").client().exists("mylist") == 0


def test_redis_benchmark_inline_and_multibulk_ping(cluster: Cluster) -> None:
    out = run(["redis-benchmark", "-p", str(cluster.port), "-t", "ping", "-P", "8", "-n", "20000",
               "-q"], timeout=120)
    assert "PING_INLINE" in out and "PING_MBULK" in out, out
    assert "error" not in out.lower() and "warning" not in out.lower(), out


def test_redis_py_default_settings(cluster: Cluster) -> None:
    """redis-py's defaults work: RESP2 with CLIENT SETINFO on connect up to 7.x, HELLO 3
    (RESP3) from 8.0 on — tests/test_resp3.py covers RESP3 itself."""
    r = redis.Redis("127.0.0.1", cluster.port, socket_timeout=DEADLINE)
    try:
        assert r.ping() is True
        assert r.set("py:default", "1") and r.get("py:default") == b"1"
        assert r.hset("py:dh", mapping={"f": "v"}) == 1 and r.hgetall("py:dh") == {b"f": b"v"}
    finally:
        r.close()
    r = redis.Redis("127.0.0.1", cluster.port, protocol=2, socket_timeout=DEADLINE)
    try:  # everything else default: CLIENT SETINFO lib-name / lib-ver are sent
        assert r.ping() is True
        assert r.set("py:p2", "x") and r.get("py:p2") == b"x"
        assert r.client_setname("py") and r.client_getname() in (b"py", "py")
    finally:
        r.close()


def test_redis_py_pipelines_and_multi_key(cluster: Cluster) -> None:
    r = redis.Redis("127.0.0.1", cluster.port, protocol=2, socket_timeout=DEADLINE)
    try:
        keys = [key_on(i % 2, b"py", i).decode() for i in range(20)]
        assert r.mset({k: f"v-{k}" for k in keys}) is True
        assert r.mget(keys + ["py:none"]) == [f"v-{k}".encode() for k in keys] + [None]
        pipe = r.pipeline(transaction=False)
        for i, k in enumerate(keys):
            pipe.get(k).incr(f"py:n:{i}").hset(f"py:h:{i}", mapping={"a": i}).lpush(
                f"py:l:{i}", "x")
        pipe.mget(keys[:5]).delete(*keys[:4]).exists(*keys).ping().echo("e")
        results = pipe.execute()
        assert results[:4] == [f"v-{keys[0]}".encode(), 1, 1, 1]
        assert results[-5:] == [[f"v-{k}".encode() for k in keys[:5]], 4, 16, True, b"e"]
        assert r.hgetall("py:h:3") == {b"a": b"3"}
        tx = r.pipeline(transaction=True).set("py:{t}1", 1).incr("py:{t}2").get("py:{t}1")
        assert tx.execute() == [True, 1, b"1"]
        assert r.ping() is True
    finally:
        r.close()


# ---------------------------------------------------------------- the command line


def pyproxy_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pyproxy", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(REPO))


def test_cli_checks_the_seed_config() -> None:
    result = pyproxy_cli("-t", "-c", "conf/icd.yml")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_broken_config_one_line_per_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(
        "alpha:\n  listen: 127.0.0.1:99999\n  hash: fnv1a_65\n  distribution: modula\n"
        "  redis: true\n  timeout: soon\n  servers:\n   - 127.0.0.1:6379:0-2000\n"
        "   - 127.0.0.1:6380:2048-4095\n"
    )
    for flags in (["-t"], []):
        result = pyproxy_cli(*flags, "-c", str(path))
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr and len(lines) >= 4, result.stderr
        assert all("alpha" in line for line in lines), lines
        for word in ("listen", "hash", "timeout", "2001-2047"):
            assert sum(word in line for line in lines) >= 1, (word, lines)


def test_cli_missing_file_is_one_line(tmp_path: Path) -> None:
    for flags in (["-t"], []):
        result = pyproxy_cli(*flags, "-c", str(tmp_path / "nope.yml"))
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "nope.yml" in result.stderr and "Traceback" not in result.stderr


def test_cli_version() -> None:
    result = pyproxy_cli("-V")
    assert result.returncode == 0
    assert result.stdout.startswith("pyproxy ")
