"""The command table, as data: what each Redis command is to a sharding proxy.

Every command the proxy knows has one ``Command`` entry. Its ``kind`` says how it is served
(the executor maps each kind to a strategy in ``proxy/``):

* ``KEY``      one key at argument 1: forwarded as-is to the shard that owns it.
* ``SAME``     several keys (``first``/``last``/``step`` as in ``COMMAND INFO``, or a
               ``numkeys`` argument, or a keyword such as ``STORE``) that must all live on
               one shard; forwarded there, refused with an error when they span shards.
               ``keyless`` ones (functions) may name no key: then any shard serves them.
* ``EVAL``     scripts: like ``SAME`` (and keyless allowed); the proxy remembers script
               bodies so a shard that lost them (a failover, a restart) gets them again.
* ``SPLIT``    multi-key commands split per shard and merged (``merge``: ``array`` for MGET,
               ``ok`` for MSET, ``sum`` for DEL/UNLINK/EXISTS/TOUCH).
* ``EACH``     whole-keyspace commands sent to every shard's master and combined (``merge``:
               ``sum`` DBSIZE, ``concat`` KEYS, ``ok`` FLUSHDB/FLUSHALL, ``random`` RANDOMKEY,
               ``min`` LASTSAVE).
* ``ANY``      no key and the same answer from any master (TIME): the first shard's.
* ``SCAN``, ``INFO``, ``SCRIPT``, ``FUNCTION``, ``WAIT``: one strategy each (a cursor over
               every shard; the shards' INFO combined with the proxy's own; SCRIPT and FUNCTION
               on every master; WAIT on the shards the client wrote to).
* ``TRANSACTION``  MULTI, EXEC, DISCARD, WATCH, UNWATCH.
* ``BLOCKING`` BLPOP, BRPOP, BLMOVE, ... and XREAD/XREADGROUP: their keys on one shard; a
               blocking call waits on a pinned connection of its own (XREAD without BLOCK is
               served like ``SAME``).
* ``SUBSCRIBE``  (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE, multiplexed by the proxy's pub/sub hub;
               ``PUBLISH`` and ``SPUBLISH`` (the channel routed like a key);
               ``PUBSUB`` introspection combined over every shard.
* ``LOCAL``    answered by the proxy itself (PING, ECHO, SELECT 0, HELLO, CLIENT, SLOWLOG,
               ...).
* ``REFUSED``  cannot be served correctly through a sharding proxy; ``reason`` says why.

``readonly`` is Redis's own flag (COMMAND INFO): such a command changes nothing, so running it
once more is harmless; every other routed command may write.

Arity follows Redis (``N`` exactly N arguments including the name, ``-N`` at least N);
tests/test_commands.py checks every arity and key position against a real redis-server.
Names are matched case-insensitively; ``lookup`` tries the exact bytes first (clients send
upper case) so the hot path does not allocate.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

(KEY, SAME, SPLIT, LOCAL, REFUSED, EVAL, EACH, ANY, SCAN, INFO, SCRIPT, WAIT, TRANSACTION,
 BLOCKING, SUBSCRIBE, PUBLISH, PUBSUB, FUNCTION) = range(18)


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # lower case, as Redis reports it
    arity: int
    kind: int
    first: int = 1
    last: int = 1
    step: int = 1
    keys: Callable[[list[bytes]], list[int]] | None = None  # key positions when not fixed
    merge: str = ""  # SPLIT and EACH
    reason: str = ""  # REFUSED only
    readonly: bool = False  # Redis's "readonly" flag
    keyless: bool = False  # SAME/EVAL that may name no key (then any shard serves it)
    index: int = 0  # position in COMMANDS: per-command counters are lists, not dicts

    def arity_ok(self, argc: int) -> bool:
        arity = self.arity
        return argc == arity if arity > 0 else argc >= -arity

    def key_positions(self, args: list[bytes]) -> list[int]:
        """Argument indexes holding keys (for SAME and SPLIT commands)."""
        if self.keys is not None:
            return self.keys(args)
        last = self.last if self.last >= 0 else len(args) + self.last
        return list(range(self.first, last + 1, self.step))


# ---------------------------------------------------------------- key finders


def _numkeys(at: int, fixed: tuple[int, ...] = ()) -> Callable[[list[bytes]], list[int]]:
    """Keys counted by a ``numkeys`` argument at ``at`` (EVAL, ZUNIONSTORE, LMPOP, ...)."""

    def find(args: list[bytes]) -> list[int]:
        try:
            count = int(args[at])
        except ValueError:
            raise KeyError("numkeys is not an integer") from None
        if count < 0 or at + count >= len(args):
            raise KeyError("numkeys is out of range")
        return [*fixed, *range(at + 1, at + 1 + count)]

    return find


def _with_keyword(*words: bytes) -> Callable[[list[bytes]], list[int]]:
    """Key 1 plus the argument after any of ``words`` (SORT ... STORE dst, GEORADIUS ...)."""

    def find(args: list[bytes]) -> list[int]:
        positions = [1]
        for i in range(2, len(args) - 1):
            if args[i].upper() in words:
                positions.append(i + 1)
        return positions

    return find


def _subcommand_key(args: list[bytes]) -> list[int]:
    """OBJECT/XINFO/XGROUP/MEMORY USAGE: the key is argument 2."""
    if len(args) < 3:
        raise KeyError("this subcommand takes no key and cannot be routed")
    return [2]


def _memory_usage(args: list[bytes]) -> list[int]:
    """MEMORY USAGE key is routable; the other MEMORY subcommands describe one server."""
    if len(args) < 3 or args[1].upper() != b"USAGE":
        raise KeyError("only MEMORY USAGE <key> can be routed")
    return [2]


def stream_options(args: list[bytes]) -> tuple[int | None, int]:
    """XREAD/XREADGROUP: (the argument index of BLOCK's milliseconds, or None; the index of
    the first stream key), read option by option as Redis does — so a stream named BLOCK is a
    key, not an option."""
    i = 4 if args[0].upper() == b"XREADGROUP" else 1  # XREADGROUP GROUP <group> <consumer>
    block = None
    while i < len(args):
        option = args[i].upper()
        if option == b"STREAMS":
            return block, i + 1
        if option in (b"COUNT", b"BLOCK") and i + 1 < len(args):
            if option == b"BLOCK":
                block = i + 1
            i += 2
        elif option == b"NOACK":
            i += 1
        else:
            raise KeyError("syntax error")
    raise KeyError("syntax error: STREAMS is missing")


def _streams(args: list[bytes]) -> list[int]:
    """XREAD/XREADGROUP: the keys are the first half of what follows STREAMS."""
    _, start = stream_options(args)
    rest = len(args) - start
    if rest <= 0 or rest % 2:
        raise KeyError("unbalanced list of streams and IDs")
    return list(range(start, start + rest // 2))


# ---------------------------------------------------------------- the table

# Single-key commands: "name arity" pairs, key at argument 1.
_KEY_COMMANDS = """
append 3 bitcount -2 bitfield -2 bitfield_ro -2 bitpos -3 decr 2 decrby 3 dump 2 expire -3
expireat -3 expiretime 2 geoadd -5 geodist -4 geohash -2 geopos -2 georadius_ro -6
georadiusbymember_ro -5 geosearch -7 get 2 getbit 3 getdel 2 getex -2 getrange 4 getset 3
hdel -3 hexists 3 hget 3 hgetall 2 hincrby 4 hincrbyfloat 4 hkeys 2 hlen 2 hmget -3 hmset -4
hrandfield -2 hscan -3 hset -4 hsetnx 4 hstrlen 3 hvals 2 incr 2 incrby 3 incrbyfloat 3
lindex 3 linsert 5 llen 2 lpop -2 lpos -3 lpush -3 lpushx -3 lrange 4 lrem 4 lset 4 ltrim 4
persist 2 pexpire -3 pexpireat -3 pexpiretime 2 pfadd -2 psetex 4 pttl 2 restore -4 rpop -2
rpush -3 rpushx -3 sadd -3 scard 2 set -3 setbit 4 setex 4 setnx 3 setrange 4 sismember 3
smembers 2 smismember -3 spop -2 srandmember -2 srem -3 sscan -3 strlen 2 substr 4 ttl 2
type 2 xack -4 xadd -5 xautoclaim -6 xclaim -6 xdel -3 xlen 2 xpending -3 xrange -4
xrevrange -4 xsetid -3 xtrim -4 zadd -4 zcard 2 zcount 4 zincrby 4 zlexcount 4 zmscore -3
zpopmax -2 zpopmin -2 zrandmember -2 zrange -4 zrangebylex -4 zrangebyscore -4 zrank 3 zrem -3
zremrangebylex 4 zremrangebyrank 4 zremrangebyscore 4 zrevrange -4 zrevrangebylex -4
zrevrangebyscore -4 zrevrank 3 zscan -3 zscore 3
"""

# Several keys on one shard, positions as (arity, first, last, step).
_SAME_RANGES = {
    "bitop": (-4, 2, -1, 1), "copy": (-3, 1, 2, 1), "geosearchstore": (-8, 1, 2, 1),
    "lcs": (-3, 1, 2, 1), "lmove": (5, 1, 2, 1), "msetnx": (-3, 1, -1, 2),
    "pfcount": (-2, 1, -1, 1), "pfmerge": (-2, 1, -1, 1), "rename": (3, 1, 2, 1),
    "renamenx": (3, 1, 2, 1), "rpoplpush": (3, 1, 2, 1), "sdiff": (-2, 1, -1, 1),
    "sdiffstore": (-3, 1, -1, 1), "sinter": (-2, 1, -1, 1), "sinterstore": (-3, 1, -1, 1),
    "smove": (4, 1, 2, 1), "sunion": (-2, 1, -1, 1), "sunionstore": (-3, 1, -1, 1),
    "zrangestore": (-5, 1, 2, 1),
}

# Scripts: their keys counted by numkeys; keyless ones go to any shard.
_EVAL = {"eval": -3, "evalsha": -3, "eval_ro": -3, "evalsha_ro": -3}

# Several keys on one shard, found by a function: name -> (arity, finder).
_SAME_FINDERS: dict[str, tuple[int, Callable[[list[bytes]], list[int]]]] = {
    "fcall": (-3, _numkeys(2)), "fcall_ro": (-3, _numkeys(2)),
    "sintercard": (-3, _numkeys(1)), "zdiff": (-3, _numkeys(1)), "zinter": (-3, _numkeys(1)),
    "zunion": (-3, _numkeys(1)), "zintercard": (-3, _numkeys(1)), "lmpop": (-4, _numkeys(1)),
    "zmpop": (-4, _numkeys(1)), "zdiffstore": (-4, _numkeys(2, (1,))),
    "zinterstore": (-4, _numkeys(2, (1,))), "zunionstore": (-4, _numkeys(2, (1,))),
    "sort": (-2, _with_keyword(b"STORE")), "sort_ro": (-2, _with_keyword(b"STORE")),
    "georadius": (-6, _with_keyword(b"STORE", b"STOREDIST")),
    "georadiusbymember": (-5, _with_keyword(b"STORE", b"STOREDIST")),
    "object": (-2, _subcommand_key), "xinfo": (-2, _subcommand_key),
    "xgroup": (-2, _subcommand_key), "memory": (-2, _memory_usage),
}

# Blocking commands (served on a pinned connection; XREAD/XREADGROUP only with BLOCK):
# name -> (arity, first, last, step) or (arity, finder).
_BLOCKING: dict[str, tuple[int, int, int, int] | tuple[int, Callable[[list[bytes]], list[int]]]] = {
    "blpop": (-3, 1, -2, 1), "brpop": (-3, 1, -2, 1), "bzpopmin": (-3, 1, -2, 1),
    "bzpopmax": (-3, 1, -2, 1), "blmove": (6, 1, 2, 1), "brpoplpush": (4, 1, 2, 1),
    "blmpop": (-5, _numkeys(2)), "bzmpop": (-5, _numkeys(2)),
    "xread": (-4, _streams), "xreadgroup": (-7, _streams),
}

# Pub/sub: name -> (kind, arity).
_PUBSUB = {
    "subscribe": (SUBSCRIBE, -2), "psubscribe": (SUBSCRIBE, -2), "ssubscribe": (SUBSCRIBE, -2),
    "unsubscribe": (SUBSCRIBE, -1), "punsubscribe": (SUBSCRIBE, -1),
    "sunsubscribe": (SUBSCRIBE, -1), "publish": (PUBLISH, 3), "spublish": (PUBLISH, 3),
    "pubsub": (PUBSUB, -2),
}

# Split per shard and merged: name -> (arity, last, step, merge).
_SPLIT = {
    "mget": (-2, -1, 1, "array"), "mset": (-3, -1, 2, "ok"), "del": (-2, -1, 1, "sum"),
    "unlink": (-2, -1, 1, "sum"), "exists": (-2, -1, 1, "sum"), "touch": (-2, -1, 1, "sum"),
}

# Every master, combined: name -> (arity, merge).
_EACH = {
    "dbsize": (1, "sum"), "keys": (2, "concat"), "flushdb": (-1, "ok"), "flushall": (-1, "ok"),
    "randomkey": (1, "random"), "lastsave": (1, "min"),
}

# One strategy each: name -> (kind, arity).
_OWN = {
    "time": (ANY, 1), "scan": (SCAN, -2), "info": (INFO, -1), "script": (SCRIPT, -2),
    "function": (FUNCTION, -2),
    "wait": (WAIT, 3), "multi": (TRANSACTION, 1), "exec": (TRANSACTION, 1),
    "discard": (TRANSACTION, 1), "unwatch": (TRANSACTION, 1),
}

_LOCAL = {
    "ping": -1, "echo": 2, "quit": -1, "select": 2, "auth": -2, "client": -2, "hello": -1,
    "command": -1, "config": -2, "slowlog": -2,
}

_ADMIN = "it administers one redis-server; connect to that server directly"
_REFUSED = {
    "it moves keys between databases, and the proxy serves database 0 only": "swapdb move",
    "it moves a key to another server behind the proxy's back": "migrate restore-asking",
    _ADMIN: (
        "shutdown debug save bgsave bgrewriteaof slaveof replicaof failover sync "
        "psync replconf monitor module acl latency cluster readonly readwrite asking "
        "role lolwut pfdebug pfselftest"
    ),
    "connection state is the proxy's own": "reset",
}

# Redis's "readonly" flag, for the commands routed by key (container commands OBJECT, MEMORY
# USAGE and XINFO read only, whatever the subcommand).
_READONLY = frozenset("""
bitcount bitfield_ro bitpos dump eval_ro evalsha_ro exists expiretime fcall_ro geodist geohash
geopos georadius_ro georadiusbymember_ro geosearch get getbit getrange hexists hget hgetall
hkeys hlen hmget hrandfield hscan hstrlen hvals lcs lindex llen lpos lrange mget pexpiretime
pfcount pttl scard sdiff sinter sintercard sismember smembers smismember sort_ro srandmember
sscan strlen substr sunion touch ttl type xlen xpending xrange xread xrevrange zcard zcount
zdiff zinter zintercard zlexcount zmscore zrandmember zrange zrangebylex zrangebyscore zrank
zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion object memory xinfo
dbsize keys scan randomkey
""".split())
_KEYLESS = frozenset({"fcall", "fcall_ro"})


def _build() -> dict[str, Command]:
    table: dict[str, Command] = {}
    words = _KEY_COMMANDS.split()
    for name, arity_text in zip(words[::2], words[1::2], strict=True):
        table[name] = Command(name, int(arity_text), KEY)
    for name, (arity, first, last, step) in _SAME_RANGES.items():
        table[name] = Command(name, arity, SAME, first, last, step)
    for name, (arity, finder) in _SAME_FINDERS.items():
        table[name] = Command(name, arity, SAME, keys=finder)
    for name, spec in _BLOCKING.items():
        if len(spec) == 4:
            arity, first, last, step = spec
            table[name] = Command(name, arity, BLOCKING, first, last, step)
        else:
            table[name] = Command(name, spec[0], BLOCKING, keys=spec[1])
    for name, (kind, arity) in _PUBSUB.items():
        table[name] = Command(name, arity, kind, 0, 0, 0)
    for name, arity in _EVAL.items():
        table[name] = Command(name, arity, EVAL, keys=_numkeys(2), keyless=True)
    for name, (arity, last, step, merge) in _SPLIT.items():
        table[name] = Command(name, arity, SPLIT, 1, last, step, merge=merge)
    for name, (arity, merge) in _EACH.items():
        table[name] = Command(name, arity, EACH, 0, 0, 0, merge=merge)
    for name, (kind, arity) in _OWN.items():
        table[name] = Command(name, arity, kind, 0, 0, 0)
    table["watch"] = Command("watch", -2, TRANSACTION, 1, -1, 1)
    for name, arity in _LOCAL.items():
        table[name] = Command(name, arity, LOCAL, 0, 0, 0)
    for reason, names in _REFUSED.items():
        for name in names.split():
            table[name] = Command(name, -1, REFUSED, 0, 0, 0, reason=reason)
    return {
        name: replace(command, index=i, readonly=name in _READONLY,
                      keyless=command.keyless or name in _KEYLESS)
        for i, (name, command) in enumerate(table.items())
    }


COMMANDS: dict[str, Command] = _build()

# bytes -> Command, in lower and upper case, for allocation-free lookups.
_BY_BYTES: dict[bytes, Command] = {}
for _command in COMMANDS.values():
    _BY_BYTES[_command.name.encode()] = _command
    _BY_BYTES[_command.name.upper().encode()] = _command


def lookup(name: bytes) -> Command | None:
    command = _BY_BYTES.get(name)
    if command is None:
        command = _BY_BYTES.get(name.lower())
    return command
