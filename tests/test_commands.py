"""commands.py against a real redis-server: arity, key positions and coverage of its table.

A wrong arity would answer a valid command with an error (or forward an invalid one); a
wrong key position would route a command to the wrong shard. Both are checked against the
server's own ``COMMAND`` and ``COMMAND GETKEYS``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import hiredis
import pytest

from pyproxy.protocol.commands import (
    BLOCKING,
    COMMANDS,
    EACH,
    EVAL,
    INFO,
    KEY,
    LOCAL,
    REFUSED,
    SAME,
    SCAN,
    SCRIPT,
    SPLIT,
    SUBSCRIBE,
    TRANSACTION,
    lookup,
    stream_options,
)
from pyproxy.protocol.resp import encode_command


class Conn:
    """A minimal RESP2 client on a raw socket (hiredis-decoded replies)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.reader = hiredis.Reader()

    def call(self, *args: bytes | str | int) -> object:
        self.sock.sendall(encode_command([a if isinstance(a, bytes) else str(a).encode()
                                          for a in args]))
        while (reply := self.reader.gets()) is False:
            data = self.sock.recv(1 << 20)
            assert data, "connection closed"
            self.reader.feed(data)
        return reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def redis_conn() -> Iterator[Conn]:
    from tests.servers import RedisServer

    with RedisServer() as server:
        conn = Conn(server.host, server.port)
        yield conn
        conn.close()


@pytest.fixture(scope="module")
def redis_table(redis_conn: Conn) -> dict[str, list]:
    reply = redis_conn.call("COMMAND")
    assert isinstance(reply, list)
    return {entry[0].decode(): entry for entry in reply}


def test_every_redis_command_is_in_the_table(redis_table: dict[str, list]) -> None:
    """Nothing the server knows reaches clients as "unknown command" through the proxy."""
    assert sorted(set(redis_table) - set(COMMANDS)) == []


def test_arity_matches_redis(redis_table: dict[str, list]) -> None:
    wrong = {
        name: (redis_table[name][1], command.arity)
        for name, command in COMMANDS.items()
        if command.kind != REFUSED and name in redis_table
        and redis_table[name][1] != command.arity
    }
    assert wrong == {}


def test_fixed_key_positions_match_redis(redis_table: dict[str, list]) -> None:
    wrong = {}
    for name, command in COMMANDS.items():
        if command.kind not in (KEY, SAME, SPLIT) or command.keys is not None:
            continue
        entry = redis_table[name]
        redis_spec = (entry[3], entry[4], entry[5])
        if redis_spec != (command.first, command.last, command.step):
            wrong[name] = (redis_spec, (command.first, command.last, command.step))
    assert wrong == {}


def test_key_finders_are_for_commands_redis_calls_movable(redis_table: dict[str, list]) -> None:
    """A ``keys`` function is used where Redis itself cannot give fixed positions (movable
    keys), or for container commands whose key depends on the subcommand."""
    for name, command in COMMANDS.items():
        if command.keys is None:
            continue
        flags = {f.decode() for f in redis_table[name][2]}
        container = redis_table[name][3:6] == [0, 0, 0]
        assert "movablekeys" in flags or container, name


def _getkeys(conn: Conn, args: list[bytes]) -> object:
    return conn.call("COMMAND", "GETKEYS", *args)


def test_fixed_key_positions_agree_with_getkeys(redis_conn: Conn) -> None:
    checked = 0
    for name, command in sorted(COMMANDS.items()):
        if command.kind not in (KEY, SAME, SPLIT) or command.keys is not None:
            continue
        count = abs(command.arity) - 1
        if command.step == 2 and count % 2:
            count += 1
        for extra in (0, 2):  # Redis 7.0 refuses e.g. "PFMERGE dst" in GETKEYS
            args = [name.encode()] + [b"a%d" % i for i in range(1, count + extra + 1)]
            redis_keys = _getkeys(redis_conn, args)
            if isinstance(redis_keys, list):
                break
        ours = [args[p] for p in command.key_positions(args)]
        assert redis_keys == ours, (name, args)
        checked += 1
    assert checked > 130


MOVABLE_SAMPLES = [
    "EVAL s 2 k1 k2 a1",
    "EVAL s 0 a1",
    "EVALSHA s 1 k1",
    "EVAL_RO s 1 k1 a1",
    "EVALSHA_RO s 2 k1 k2",
    "FCALL f 1 k1 a1",
    "FCALL_RO f 2 k1 k2",
    "SINTERCARD 2 k1 k2 LIMIT 1",
    "ZDIFF 2 k1 k2 WITHSCORES",
    "ZINTER 2 k1 k2 WEIGHTS 1 2",
    "ZUNION 3 k1 k2 k3",
    "ZINTERCARD 1 k1",
    "LMPOP 2 k1 k2 LEFT COUNT 1",
    "ZMPOP 1 k1 MIN",
    "ZDIFFSTORE k0 2 k1 k2",
    "ZINTERSTORE k0 2 k1 k2 WEIGHTS 1 2",
    "ZUNIONSTORE k0 1 k1",
    "SORT k1",
    "SORT k1 BY w:* GET g:* LIMIT 0 5 STORE k2",
    "SORT_RO k1 BY w:*",
    "GEORADIUS k1 0 0 10 km",
    "GEORADIUS k1 0 0 10 km STORE k2",
    "GEORADIUS k1 0 0 10 km STOREDIST k2",
    "GEORADIUSBYMEMBER k1 m 10 km STORE k2",
    "OBJECT ENCODING k1",
    "XINFO STREAM k1",
    "XGROUP CREATE k1 g $",
    "MEMORY USAGE k1",
    "XREAD COUNT 2 STREAMS k1 k2 0 0",
    "XREADGROUP GROUP g c COUNT 1 STREAMS k1 >",
]


@pytest.mark.parametrize("sample", MOVABLE_SAMPLES)
def test_key_finders_agree_with_getkeys(redis_conn: Conn, sample: str) -> None:
    args = [a.encode() for a in sample.split()]
    command = lookup(args[0])
    assert command is not None and command.keys is not None
    redis_keys = _getkeys(redis_conn, args)
    if not isinstance(redis_keys, list):  # Redis 7.0: "The command has no key arguments"
        redis_keys = []
    assert [args[p] for p in command.key_positions(args)] == redis_keys


@pytest.mark.parametrize(
    "sample, why",
    [
        ("EVAL s x k1", "numkeys is not an integer"),
        ("EVAL s 3 k1", "numkeys is out of range"),
        ("EVAL s -1 k1", "numkeys is out of range"),
        ("XREAD COUNT 1 k1 0", "syntax error"),
        ("XREAD COUNT 1 BLOCK 5", "STREAMS is missing"),
        ("XREAD STREAMS k1 k2 0", "unbalanced"),
        ("OBJECT HELP", "takes no key"),
        ("MEMORY STATS", "only MEMORY USAGE"),
    ],
)
def test_key_finders_refuse_what_cannot_be_routed(sample: str, why: str) -> None:
    args = [a.encode() for a in sample.split()]
    command = lookup(args[0])
    assert command is not None
    with pytest.raises(KeyError, match=why):
        command.key_positions(args)


def test_stream_keys_are_read_option_by_option() -> None:
    """A stream may be named like an option: only what follows STREAMS is a key."""
    command = lookup(b"XREADGROUP")
    assert command is not None
    args = b"XREADGROUP GROUP g c COUNT 2 BLOCK 0 NOACK STREAMS BLOCK COUNT 0 0".split()
    assert command.key_positions(args) == [10, 11]
    assert stream_options(args) == (7, 10)
    assert stream_options(b"XREAD STREAMS BLOCK 0".split()) == (None, 2)


def test_lookup_is_case_insensitive_and_exact_for_unknown() -> None:
    assert lookup(b"GET") is lookup(b"get") is lookup(b"GeT") is COMMANDS["get"]
    assert lookup(b"NOPE") is None
    assert lookup(b"") is None


def test_kinds_of_the_issue_contract() -> None:
    """The split set, the local set, the whole-keyspace set and what is still refused."""
    assert {n for n, c in COMMANDS.items() if c.kind == SPLIT} == {
        "mget", "mset", "del", "unlink", "exists", "touch"}
    assert {n for n, c in COMMANDS.items() if c.kind == LOCAL} >= {
        "ping", "echo", "quit", "select", "auth", "client", "hello", "command", "config"}
    assert {n for n, c in COMMANDS.items() if c.kind == EACH} == {
        "dbsize", "keys", "flushdb", "flushall", "randomkey", "lastsave"}
    assert {n for n, c in COMMANDS.items() if c.kind == TRANSACTION} == {
        "multi", "exec", "discard", "watch", "unwatch"}
    for name in ("shutdown", "debug", "swapdb", "move", "migrate", "monitor", "reset"):
        assert COMMANDS[name].kind == REFUSED and COMMANDS[name].reason, name
    assert {n for n, c in COMMANDS.items() if c.kind == BLOCKING} == {
        "blpop", "brpop", "blmove", "brpoplpush", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
        "xread", "xreadgroup"}
    assert {n for n, c in COMMANDS.items() if c.kind == SUBSCRIBE} == {
        "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"}
    assert COMMANDS["eval"].kind == COMMANDS["evalsha"].kind == EVAL
    assert COMMANDS["eval"].keyless and COMMANDS["fcall"].keyless
    assert not COMMANDS["rename"].keyless and COMMANDS["rename"].kind == SAME
    assert (COMMANDS["scan"].kind, COMMANDS["info"].kind, COMMANDS["script"].kind) == (
        SCAN, INFO, SCRIPT)


def test_readonly_flags_match_redis(redis_table: dict[str, list]) -> None:
    """Only commands Redis itself calls readonly are ever run twice (a failover retry), and
    every command that may write is noted for WAIT."""
    containers = {"object", "memory", "xinfo"}  # read-only whatever the subcommand
    wrong = {
        name for name, command in COMMANDS.items()
        if name in redis_table and name not in containers
        and command.readonly != ("readonly" in {f.decode() for f in redis_table[name][2]})
        and command.kind != REFUSED
    }
    assert wrong == set()
    assert all(COMMANDS[name].readonly for name in containers)


def test_arity_ok() -> None:
    assert COMMANDS["get"].arity_ok(2) and not COMMANDS["get"].arity_ok(3)
    assert COMMANDS["mget"].arity_ok(2) and COMMANDS["mget"].arity_ok(50)
    assert not COMMANDS["mget"].arity_ok(1)
