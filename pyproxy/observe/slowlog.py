"""The proxy's SLOWLOG: the latest requests that took at least ``slowlog_log_slower_than`` µs.

The time is the proxy's own measure, the one ``PoolStats.latency`` histograms: from the read
that brought the request to the write of its reply (queueing behind the client's pipeline,
the shard's round trip, a failover hold — what the client waited). Entries are Redis's (id,
unix time, duration in µs, arguments, client ``addr:port``, client name) plus the shard that
owns the request's keys, as a seventh element.

* The hot path pays one comparison per reply: ``threshold`` (seconds; infinite when the
  setting is negative, 0 logs every request, as Redis). Everything else runs only for a
  request that is slow.
* Arguments are kept as Redis's slowlog.c keeps them: at most 32, the 32nd then saying
  ``... (N more arguments)``; each at most 128 bytes, followed by ``... (N more bytes)``.
  Passwords are never stored: AUTH's arguments and HELLO's AUTH pair are ``(redacted)``, as
  Redis 7 shows them.
* Calls that wait by design — the blocking commands (BLPOP, ..., XREAD), WAIT,
  (P|S)SUBSCRIBE — are not logged: their time is the client's choice (Redis counts only
  their execution, never the wait).
* Bounded: ``slowlog_max_len`` entries, the oldest dropped. Ids grow from 0 and are never
  reused, RESET included.
* ``shard``: the names of the shards owning the keys in the table in force when the entry is
  made (comma-separated; the first shard for a command that names no key but runs on one),
  ``all`` for commands sent to every shard, ``proxy`` for what the proxy answers itself,
  ``transaction`` for MULTI/EXEC/DISCARD/UNWATCH (EXEC runs where its commands' keys live).

Pure: no I/O.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol.commands import (
    ANY,
    BLOCKING,
    COMMANDS,
    EVAL,
    KEY,
    LOCAL,
    PUBLISH,
    REFUSED,
    SAME,
    SPLIT,
    SUBSCRIBE,
    TRANSACTION,
    WAIT,
    Command,
)
from ..routing.routes import Routes
from ..routing.table import RoutingTable

MAX_ARGS = 32  # Redis's SLOWLOG_ENTRY_MAX_ARGC
MAX_ARG_BYTES = 128  # SLOWLOG_ENTRY_MAX_STRING
REDACTED = b"(redacted)"

_BY_INDEX: tuple[Command | None, ...] = (*COMMANDS.values(), None)  # None: unknown commands
_UNLOGGED = frozenset(c.index for c in COMMANDS.values() if c.kind in (BLOCKING, WAIT, SUBSCRIBE))
_KEYED = (KEY, SAME, SPLIT, EVAL, PUBLISH)


@dataclass(frozen=True, slots=True)
class SlowEntry:
    id: int
    time: int  # unix seconds when the reply was written
    duration_us: int
    args: tuple[bytes, ...]  # as Redis keeps them: truncated, passwords redacted
    addr: str  # the client's ip:port
    name: bytes  # the client's CLIENT SETNAME
    shard: str


def kept_args(args: list[bytes]) -> tuple[bytes, ...]:
    """``args`` as a slowlog entry keeps them (see the module docstring)."""
    args = _redacted(args)
    count = min(len(args), MAX_ARGS)
    kept = []
    for index in range(count):
        if count != len(args) and index == count - 1:
            kept.append(b"... (%d more arguments)" % (len(args) - count + 1))
            break
        arg = args[index]
        if len(arg) > MAX_ARG_BYTES:
            arg = arg[:MAX_ARG_BYTES] + b"... (%d more bytes)" % (len(arg) - MAX_ARG_BYTES)
        kept.append(arg)
    return tuple(kept)


# the settings Redis 7 flags sensitive, whose values CONFIG SET never shows
_SECRET_SETTINGS = frozenset((b"requirepass", b"masterauth", b"tls-key-file-pass",
                              b"tls-client-key-file-pass"))


def _redacted(args: list[bytes]) -> list[bytes]:
    """``args`` with what Redis 7 redacts from its slowlog replaced by ``(redacted)``."""
    name = args[0].lower()
    out = list(args)
    if name == b"auth":
        out[1:] = [REDACTED] * (len(out) - 1)
    elif name == b"hello":
        for index in range(2, len(out) - 2):
            if out[index].upper() == b"AUTH":
                out[index + 1] = out[index + 2] = REDACTED
    elif name == b"acl" and len(out) > 2 and out[1].lower() == b"setuser":
        out[3:] = [REDACTED] * (len(out) - 3)  # the user's name stays, its rules do not
    elif name == b"config" and len(out) > 1 and out[1].lower() == b"set":
        for index in range(2, len(out) - 1, 2):
            if out[index].lower() in _SECRET_SETTINGS:
                out[index + 1] = REDACTED
    elif name == b"migrate":
        for index in range(6, len(out)):
            option = out[index].upper()
            if option == b"AUTH" and index + 1 < len(out):
                out[index + 1] = REDACTED
            elif option == b"AUTH2" and index + 2 < len(out):
                out[index + 1] = out[index + 2] = REDACTED
    return out


class SlowLog:
    """One pool's slowlog; ``table`` gives the routing table in force (for the shard names)."""

    __slots__ = ("threshold", "entries", "next_id", "table", "hash_tag", "_namer")

    def __init__(self, slower_than_us: int, max_len: int, table: Callable[[], RoutingTable],
                 hash_tag: bytes | None):
        self.threshold = float("inf") if slower_than_us < 0 else slower_than_us / 1e6
        self.entries: deque[SlowEntry] = deque(maxlen=max_len)
        self.next_id = 0
        self.table = table
        self.hash_tag = hash_tag
        self._namer: Routes[str] | None = None  # key -> shard name, for the table it was made of

    def __len__(self) -> int:
        return len(self.entries)

    def record(self, command: int, args: list[bytes], seconds: float, addr: str,
               name: bytes) -> None:
        """A reply written ``seconds`` after its request was read (at least ``threshold``)."""
        if command in _UNLOGGED or not args:
            return
        self.entries.appendleft(SlowEntry(
            self.next_id, int(time.time()), int(seconds * 1e6), kept_args(args), addr, name,
            self._shard(_BY_INDEX[command], args)))
        self.next_id += 1

    def latest(self, count: int) -> list[SlowEntry]:
        """The ``count`` newest entries, newest first (all of them for -1)."""
        entries = list(self.entries)
        return entries if count < 0 else entries[:count]

    def reset(self) -> None:
        self.entries.clear()

    def _shard(self, command: Command | None, args: list[bytes]) -> str:
        if command is None or command.kind in (LOCAL, REFUSED):
            return "proxy"
        table = self.table()
        if command.kind == ANY:
            return table.shards[0].name
        if command.kind == TRANSACTION and command.name != "watch":
            return "transaction"
        if command.kind not in _KEYED and command.kind != TRANSACTION:
            return "all"  # the keyspace commands: SCAN, KEYS, INFO, SCRIPT, FUNCTION, ...
        try:
            positions = [1] if command.kind == PUBLISH else command.key_positions(args)
        except (KeyError, IndexError, ValueError):
            return "proxy"  # too few arguments or a bad numkeys: the proxy answered the error
        if not positions:
            return table.shards[0].name
        namer = self._namer
        if namer is None or namer.table is not table:
            namer = self._namer = Routes(table, [s.name for s in table.shards], self.hash_tag)
        return ",".join(sorted({namer.locate(args[p]) for p in positions if p < len(args)}))

