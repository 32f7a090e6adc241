"""The ordinary strategies: commands served by key, split per shard, answered locally, refused.

* ``Forward``    one key at argument 1: the whole command to the shard that owns it.
* ``SameShard``  several keys that must share a shard: forwarded whole, or refused with
                 ``cross_shard``; scripts and functions naming no key go to the first shard.
* ``Split``      MGET/MSET/DEL/...: one sub-command per shard, merged by a ``fanout.Merge``.
* ``Local``      answered by the proxy (``local``).
* ``Refused``    the reason; nothing reaches a backend.

Every send goes through ``ShardRoute.send(payload, waiter, session)``, which honours the
session's pinned connection (WATCH) for its shard. Commands that may write note their shard in
``session.written`` (WAIT waits there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol.commands import Command
from ..protocol.resp import encode_command
from ..routing.hashing import hashed_part
from . import errors, fanout, local
from .dispatch import Context, Strategy
from .errors import Unroutable
from .replies import Reply
from .route import single
from .session import Session

if TYPE_CHECKING:
    from .route import ShardRoute


def first_shard(ctx: Context) -> ShardRoute:
    """Where a command that names no key goes: the first shard that has a master."""
    shards = ctx.pool.routes.shards
    return next((route for route in shards if route.backend is not None), shards[0])


class Forward(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        route = ctx.pool.routes.locate(args[1])
        if not command.readonly:
            session.written.add(route.name)
        route.send(encode_command(args), reply, session, command.readonly)

    def routes(self, ctx: Context, command: Command, args: list[bytes]) -> set[ShardRoute]:
        return {ctx.pool.routes.locate(args[1])}


class SameShard(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        try:
            route = self.target(ctx, command, args)
        except Unroutable as refusal:
            reply.settle(refusal.reply)
            return
        if not command.readonly:
            session.written.add(route.name)
        route.send(encode_command(args), reply, session, command.readonly)

    def target(self, ctx: Context, command: Command, args: list[bytes]) -> ShardRoute:
        """The one shard that serves the command; ``Unroutable`` if there is none."""
        owners = self.routes(ctx, command, args)
        if not owners:
            return first_shard(ctx)
        return single(owners, command)

    def routes(self, ctx: Context, command: Command, args: list[bytes]) -> set[ShardRoute]:
        try:
            positions = command.key_positions(args)
        except KeyError as why:
            raise Unroutable(errors.key_error(command, why.args[0])) from None
        if not positions and not command.keyless:
            raise Unroutable(errors.refused(command, "it names no key, so no shard can be "
                                                     "chosen"))
        check = _ARGUMENT_CHECKS.get(command.name)
        if check is not None:
            refusal = check(ctx, args)
            if refusal:
                raise Unroutable(errors.refused(command, refusal))
        locate = ctx.pool.routes.locate
        return {locate(args[p]) for p in positions}


def _copy_db(ctx: Context, args: list[bytes]) -> str:
    """COPY src dst DB n would write another database."""
    if any(arg.upper() == b"DB" for arg in args[3:]):
        return "COPY ... DB writes another database, and the proxy serves database 0 only"
    return ""


def _sort_patterns(ctx: Context, args: list[bytes]) -> str:
    """SORT key BY/GET pattern reads other keys: only right when they live with ``key`` —
    Redis Cluster's rule: the pattern carries the sorted key's hash tag."""
    if len(ctx.pool.routes.shards) == 1:
        return ""
    tag = ctx.config.hash_tag
    own = hashed_part(args[1], tag)
    for i in range(2, len(args) - 1):
        option, pattern = args[i].upper(), args[i + 1]
        if option == b"BY" and b"*" not in pattern:
            continue  # BY nosort (or a constant): no other key is read
        if option == b"GET" and pattern == b"#":
            continue
        if option in (b"BY", b"GET"):
            part = hashed_part(pattern, tag)
            if part == pattern or b"*" in part or part != own:
                return ("its BY/GET pattern reads keys that may live on other shards (give the "
                        "pattern the sorted key's hash tag, as Redis Cluster requires)")
    return ""


_ARGUMENT_CHECKS = {"copy": _copy_db, "sort": _sort_patterns, "sort_ro": _sort_patterns}


class Split(Strategy):
    def __init__(self, merge: fanout.Merge):
        self.merge = merge

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        positions = command.key_positions(args)
        if command.step == 2 and len(args) % 2 == 0:  # MSET with a key missing its value
            reply.settle(errors.wrong_arity(command))
            return
        parts = fanout.plan(args, positions, command.step, ctx.pool.routes.locate)
        if not command.readonly:
            session.written.update(route.name for route, _, _ in parts)
        if len(parts) == 1:  # every key on one shard: Redis's own reply is the answer
            parts[0][0].send(encode_command(args), reply, session, command.readonly)
            return
        fan = fanout.FanOut(reply, self.merge, [indexes for _, _, indexes in parts],
                            len(positions))
        ctx.stats.fragments += len(parts)
        for index, (route, frame, _) in enumerate(parts):
            route.send(frame, fan.part(index), session, command.readonly)

    def routes(self, ctx: Context, command: Command, args: list[bytes]) -> set[ShardRoute]:
        if command.step == 2 and len(args) % 2 == 0:
            raise Unroutable(errors.wrong_arity(command))
        locate = ctx.pool.routes.locate
        return {locate(args[p]) for p in command.key_positions(args)}


class Local(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        reply.settle(local.answer(session, ctx, command.name, args))

    def routes(self, ctx: Context, command: Command, args: list[bytes]) -> set[ShardRoute]:
        if command.name in local.QUEUEABLE:  # PING, ECHO: Redis runs them in the transaction
            return set()
        raise Unroutable(errors.not_in_transaction(command))


class Refused(Strategy):
    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        ctx.stats.refused += 1
        reply.settle(errors.refused(command, command.reason))

    def routes(self, ctx: Context, command: Command, args: list[bytes]) -> set[ShardRoute]:
        ctx.stats.refused += 1
        raise Unroutable(errors.refused(command, command.reason))
