"""Whole-keyspace commands: what a single Redis answers about all its keys, answered for every
shard together.

* ``Each``  the command to every shard's master, the replies combined by a ``fanout.Merge``:
            DBSIZE (sum), KEYS (concatenated), FLUSHDB/FLUSHALL (+OK when all did; refused
            when the pool sets ``allow_flush: false``), RANDOMKEY (a random shard's key),
            LASTSAVE (the oldest). A shard that fails makes the reply its error: a count
            without one shard would be a wrong answer, not a partial one.
* ``Any``   TIME: the first shard's master answers.
* ``Scan``  one cursor over every shard: the proxy's cursor is ``shard cursor × shards +
            shard index``, a plain decimal below 2^64. A shard's pages are served until its
            cursor comes back 0, then the next shard's from 0; the last shard's 0 is the end.
            So every key present for the whole scan is returned at least once, as Redis
            promises (MATCH, COUNT and TYPE pass through to each shard). The shards are
            numbered in slot order; a scan across a topology change that adds or removes a
            shard may miss keys — restart it.
* ``Wait``  WAIT on every shard the client wrote to (every shard if none), the fewest replicas
            acknowledged is the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..protocol import resp
from ..protocol.commands import Command
from ..protocol.resp import encode_command
from . import errors, fanout
from .dispatch import Context, Strategy
from .replies import Reply, Waiter
from .session import Session
from .strategies import first_shard

if TYPE_CHECKING:
    from .route import ShardRoute

CURSOR_LIMIT = 1 << 64
INVALID_CURSOR = b"-ERR invalid cursor\r\n"


def to_shards(shards: Sequence[ShardRoute], session: Session, frame: bytes, reply: Waiter,
              merge: fanout.Merge, readonly: bool = False) -> None:
    """``frame`` to each of ``shards``; ``reply`` gets their replies combined by ``merge``."""
    fan = fanout.FanOut(reply, merge, [[] for _ in shards])
    for index, route in enumerate(shards):
        route.send(frame, fan.part(index), session, readonly)


class Each(Strategy):
    def __init__(self, merge: fanout.Merge):
        self.merge = merge

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        if command.name in ("flushdb", "flushall") and not ctx.config.allow_flush:
            ctx.stats.refused += 1
            reply.settle(errors.refused(command, "this pool sets allow_flush: false"))
            return
        to_shards(ctx.pool.routes.shards, session, encode_command(args), reply, self.merge,
                  command.readonly)


class Any(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        first_shard(ctx).send(encode_command(args), reply, session, command.readonly)


class Scan(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        cursor = int(args[1]) if args[1].isdigit() else -1  # digits only, as Redis reads it
        if not 0 <= cursor < CURSOR_LIMIT:
            reply.settle(INVALID_CURSOR)
            return
        shards = ctx.pool.routes.shards
        index, shard_cursor = cursor % len(shards), cursor // len(shards)
        frame = encode_command([args[0], b"%d" % shard_cursor, *args[2:]])
        shards[index].send(frame, ScanPage(reply, index, len(shards)), session, readonly=True)


class ScanPage:
    """The waiter for one shard's SCAN page: its cursor becomes the proxy's."""

    __slots__ = ("reply", "index", "shards")

    def __init__(self, reply: Reply, index: int, shards: int):
        self.reply = reply
        self.index = index
        self.shards = shards

    def settle(self, raw: bytes) -> None:
        if resp.is_error(raw):
            self.reply.settle(raw)
            return
        cursor_raw, keys = resp.array_items(raw)
        shard_cursor = int(cursor_raw[cursor_raw.find(resp.CRLF) + 2:-2])
        if shard_cursor:
            cursor = shard_cursor * self.shards + self.index
        else:  # this shard is done: the next one starts at its 0, or the scan is over
            cursor = self.index + 1 if self.index + 1 < self.shards else 0
        if cursor >= CURSOR_LIMIT:
            self.reply.settle(resp.error("ERR pyproxy: a shard's SCAN cursor is too large to "
                                         "combine with the shard number"))
            return
        self.reply.settle(b"*2\r\n" + resp.bulk(b"%d" % cursor) + keys)


class Wait(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        shards = [r for r in ctx.pool.routes.shards if r.name in session.written]
        to_shards(shards or ctx.pool.routes.shards, session, encode_command(args), reply,
                  fanout.MERGES["min"])
