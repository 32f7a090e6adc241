"""The executor: from a parsed command to its reply, by strategy.

One ``Executor`` per pool sits between the sessions and the backends (the role of Envoy's
command splitter and router). ``run`` takes one command of one client and:

1. gives it a ``Reply`` at the tail of the client's queue (every command, answered or not,
   so replies leave in request order);
2. answers what needs no shard at all: unknown commands and wrong arity (Redis's own
   texts), ``NOAUTH`` before AUTH;
3. lets the session's ``Mode`` (a transaction being queued, subscribed mode, ...) take it;
4. otherwise dispatches it by the command table's ``kind`` to a ``Strategy``:
   ``Forward`` (one key: that shard), ``SameShard`` (several keys that must share a shard),
   ``Split`` (split per shard, merged by a ``fanout.Merge``), ``Local`` (answered by the
   proxy), ``Refused`` (a reason, and nothing reaches a backend).

Adding a command family is a ``Strategy`` here (or a ``Mode``), chosen by a new ``kind`` in
``protocol/commands.py`` — never a branch in ``Client``.

Requests are re-framed from their parsed arguments before they reach a backend, never passed
through as received: hiredis tolerates element types a request must not have, and a frame
Redis rejects would close a backend connection that other clients share.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..config import PoolConfig
from ..observe.snapshot import ProxySnapshot
from ..observe.stats import UNKNOWN_INDEX
from ..protocol import resp
from ..protocol.commands import COMMANDS, KEY, LOCAL, REFUSED, SAME, SPLIT, Command, lookup
from ..protocol.resp import encode_command
from . import fanout, local
from .replies import Owner, Reply
from .session import Session

if TYPE_CHECKING:
    from .pool import Pool


class Requester(Owner, Protocol):
    """What the executor needs of a client connection (``client.Client`` is one)."""

    queue: deque[Reply]
    read_at: float  # loop time the current read arrived
    session: Session


# ---------------------------------------------------------------- error replies

def unknown_command(args: list[bytes]) -> bytes:
    """Redis's own message, byte for byte: the arguments shown fill at most 128 bytes."""
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + arg[: 128 - len(shown)] + b"' "
    message = b"-ERR unknown command '" + args[0][:128] + b"', with args beginning with: " + shown
    return message.replace(b"\r", b" ").replace(b"\n", b" ") + resp.CRLF


def wrong_arity(command: Command) -> bytes:
    return resp.error(f"ERR wrong number of arguments for '{command.name}' command")


def refused(command: Command, reason: str) -> bytes:
    return resp.error(f"ERR pyproxy: '{command.name.upper()}' is not supported: {reason}")


def cross_shard(command: Command) -> bytes:
    return resp.error(
        f"ERR pyproxy: the keys of '{command.name.upper()}' live on different shards"
        " (use a hash tag to keep them together)"
    )


# ---------------------------------------------------------------- strategies

class Strategy:
    """How one kind of command is served."""

    def run(self, executor: Executor, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        raise NotImplementedError


class Forward(Strategy):
    """One key at argument 1: the whole command to the shard that owns it."""

    def run(self, executor: Executor, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        route = executor.pool.routes.locate(args[1])
        route.send(encode_command(args), reply, session.id, session.resp3)


class SameShard(Strategy):
    """Several keys that must live on one shard: forwarded whole, or refused."""

    def run(self, executor: Executor, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        try:
            positions = command.key_positions(args)
        except KeyError as why:
            reply.settle(resp.error(f"ERR pyproxy: '{command.name.upper()}': {why.args[0]}"))
            return
        if not positions:
            reply.settle(refused(command, "it names no key, so no shard can be chosen"))
            return
        routes = executor.pool.routes
        owners = {routes.locate(args[p]) for p in positions}
        if len(owners) > 1:
            reply.settle(cross_shard(command))
            return
        owners.pop().send(encode_command(args), reply, session.id, session.resp3)


class Split(Strategy):
    """MGET/MSET/DEL/...: one sub-command per shard, merged in the client's key order."""

    def __init__(self, merge: fanout.Merge):
        self.merge = merge

    def run(self, executor: Executor, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        positions = command.key_positions(args)
        if command.step == 2 and len(args) % 2 == 0:  # MSET with a key missing its value
            reply.settle(wrong_arity(command))
            return
        parts = fanout.plan(args, positions, command.step, executor.pool.routes.locate)
        if len(parts) == 1:  # every key on one shard: Redis's own reply is the answer
            parts[0][0].send(encode_command(args), reply, session.id, session.resp3)
            return
        fan = fanout.FanOut(reply, self.merge, [indexes for _, _, indexes in parts],
                            len(positions))
        executor.stats.fragments += len(parts)
        for index, (route, frame, _) in enumerate(parts):
            route.send(frame, fan.part(index), session.id, session.resp3)


class Local(Strategy):
    """Answered by the proxy itself (``local``)."""

    def run(self, executor: Executor, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        reply.settle(local.answer(session, executor, command.name, args))


class Refused(Strategy):
    """Cannot be served correctly through a sharding proxy: the reason, nothing sent."""

    def run(self, executor: Executor, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        executor.stats.refused += 1
        reply.settle(refused(command, command.reason))


def _strategy(command: Command) -> Strategy:
    if command.kind == SPLIT:
        return Split(fanout.MERGES[command.merge])
    return _BY_KIND[command.kind]


_BY_KIND: dict[int, Strategy] = {KEY: Forward(), SAME: SameShard(), LOCAL: Local(),
                                 REFUSED: Refused()}


# ---------------------------------------------------------------- the executor

class Executor:
    """Serves one pool's commands; ``snapshot`` gives local commands (INFO) the proxy's view."""

    __slots__ = ("pool", "stats", "config", "snapshot", "strategies")

    def __init__(self, pool: Pool, snapshot: Callable[[], ProxySnapshot]):
        self.pool = pool
        self.stats = pool.stats
        self.config: PoolConfig = pool.config
        self.snapshot = snapshot
        self.strategies = [_strategy(command) for command in COMMANDS.values()]

    def run(self, client: Requester, args: list[bytes]) -> None:
        command = lookup(args[0])
        reply = Reply(client, client.read_at)
        client.queue.append(reply)
        stats = self.stats
        if command is None:
            stats.unknown += 1
            stats.commands[UNKNOWN_INDEX] += 1
            reply.settle(unknown_command(args))
            return
        index = command.index
        reply.command = index
        stats.commands[index] += 1
        if not command.arity_ok(len(args)):
            reply.settle(wrong_arity(command))
            return
        session = client.session
        if not session.authenticated and command.name not in local.BEFORE_AUTH:
            reply.settle(local.NOAUTH)
            return
        mode = session.mode
        if mode is not None and mode.intercept(command, args, reply):
            return
        self.strategies[index].run(self, session, command, args, reply)
