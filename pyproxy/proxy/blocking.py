"""Blocking commands: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP,
XREAD … BLOCK and XREADGROUP … BLOCK.

* Their keys must live on one shard (otherwise an error naming the shards, and nothing runs).
  The call waits where Redis itself blocks — on a pinned connection of its own to that
  shard's master (``ShardRoute.pin(blocking=True)``: no request timeout, from the backend's
  bounded pool of ``pinned_connections``; past the bound the client gets an error at once) —
  so a blocked client never stalls the shared pipelined connections, and the shard's
  ``blocked_clients`` counts it. Timeouts are Redis's (``0`` waits forever).
* While it waits the session is ``Blocked``: the client's later commands are kept, in order,
  and run when the reply comes — as Redis would not read them before — and the client's
  reading pauses through flow control if it keeps sending.
* A client that disconnects while blocked: the pinned connection is closed, so Redis unblocks
  it there and a later push is not popped for nobody (it stays in the list).
* A migration (``migration``): a call for a slot being prepared waits to start until it moves;
  one already waiting where its keys no longer go is taken back (``BlockedCalls``: CLIENT
  UNBLOCK ... TIMEOUT, on the pinned connection's id, which it learns at connect) and waits
  again on the target with the time it has left.
* A failover: a master that turns replica answers its blocked clients ``-UNBLOCKED`` (Redis
  proves nothing was popped): the wait is re-issued on the shard's current master with the
  time it has left. A connection that breaks while the call waits leaves its outcome unknown
  (the element may have been popped and its reply lost): the client gets an error that says
  so, never a silent second pop. A connection that was refused before the call went out is
  re-issued too.
* Inside MULTI they are queued like any command: Redis runs them without blocking.
* While the client WATCHes (its connection to a shard is pinned already) blocking calls are
  refused: they would have to wait on the watching connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..protocol import resp
from ..protocol.commands import Command, stream_options
from ..protocol.resp import encode_command
from . import errors
from .dispatch import Context
from .errors import Failure, Unroutable
from .migration import PREPARE_HOLD, Preparing
from .replies import Reply, Swallow
from .route import Pin, ShardRoute, one_shard
from .session import Mode, Session
from .strategies import SameShard

if TYPE_CHECKING:
    from ..routing.routes import Routes
    from .pool import Pool

MAX_ATTEMPTS = 3  # a call re-issued after -UNBLOCKED or a refused connect, at most this often


def timeout_of(command: Command, args: list[bytes]) -> tuple[int, float] | None:
    """(argument index, seconds) of the call's timeout; None for XREAD without BLOCK."""
    name = command.name
    if name in ("xread", "xreadgroup"):
        block, _ = stream_options(args)
        return None if block is None else (block, _number(args[block]) / 1000.0)
    index = 1 if name in ("blmpop", "bzmpop") else len(args) - 1
    return index, _number(args[index])


def _number(text: bytes) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0  # Redis itself answers the bad timeout; the proxy only forwards it


class BlockedCalls:
    """A pool's blocking calls waiting on pinned connections, told of every routes swap: one
    whose keys no longer go where it waits (a migration took its slot) is taken back with
    ``CLIENT UNBLOCK <id> TIMEOUT`` — Redis then answers it as timed out, proving nothing was
    popped — and waits again where its keys now go, with the time it has left."""

    def __init__(self, pool: Pool):
        self.waits: set[Wait] = set()
        pool.on_routes.append(self.rerouted)

    def rerouted(self, routes: Routes[ShardRoute]) -> None:
        for wait in list(self.waits):
            wait.rerouted(routes)


class Blocking(SameShard):
    def __init__(self, calls: BlockedCalls):
        self.calls = calls

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        try:
            timeout = timeout_of(command, args)
        except KeyError as why:
            reply.settle(errors.key_error(command, why.args[0]))
            return
        if timeout is None:  # XREAD without BLOCK: an ordinary read
            super().run(ctx, session, command, args, reply)
            return
        try:
            owners = self.routes(ctx, command, args)
        except Unroutable as refusal:
            reply.settle(refusal.reply)
            return
        route = one_shard(owners)
        if route is None:
            if any(owner.migrating for owner in owners):
                reply.settle(errors.mixed_migration(f"'{command.name.upper()}'"))
                return
            names = ", ".join(sorted(owner.name for owner in owners))
            reply.settle(resp.error(f"ERR pyproxy: the keys of '{command.name.upper()}' live "
                                    f"on different shards ({names}); a blocking call waits on "
                                    "one shard: use a hash tag to keep them together"))
            return
        if session.pin is not None:
            reply.settle(resp.error(f"ERR pyproxy: '{command.name.upper()}' cannot block while "
                                    "this connection WATCHes keys (EXEC, DISCARD or UNWATCH "
                                    "first)"))
            return
        session.written.add(route.name)
        wait = Wait(ctx, self.calls, session, command, args, reply, route.name, timeout)
        if wait.start(route):
            session.mode = Blocked(ctx, session, wait)


class Wait:
    """The waiter of one blocking call on its pinned connection."""

    __slots__ = ("ctx", "calls", "session", "command", "args", "reply", "shard", "timeout",
                 "deadline", "pin", "mode", "attempts", "unblocking")

    def __init__(self, ctx: Context, calls: BlockedCalls, session: Session, command: Command,
                 args: list[bytes], reply: Reply, shard: str, timeout: tuple[int, float]):
        self.ctx, self.calls, self.session, self.command = ctx, calls, session, command
        self.args, self.reply, self.shard, self.timeout = args, reply, shard, timeout
        seconds = timeout[1]
        self.deadline = time.monotonic() + seconds if seconds > 0 else 0.0
        self.pin: Pin | None = None
        self.mode: Blocked | None = None
        self.attempts = 0
        self.unblocking = False  # CLIENT UNBLOCK sent: a timeout answer means "wait again"

    def start(self, route: ShardRoute) -> bool:
        """Send the call on a new pinned connection (or park it until its slot, being
        prepared for a migration, moves); False if it cannot wait (the reply is then settled
        with the reason)."""
        if isinstance(route, Preparing):
            route.pause.park(self._resumed)
            return True
        try:
            self.pin = route.pin(self.session, reset=[], blocking=True)
        except Unroutable as refusal:
            self.reply.settle(refusal.reply)
            return False
        self.attempts += 1
        self.shard = route.name
        self.calls.waits.add(self)
        route.send_pinned(self.pin, encode_command(self._args_left()), self)
        return True

    def _args_left(self) -> list[bytes]:
        """The call with the time it has left (its own arguments the first time)."""
        if not self.deadline or self.attempts == 1:
            return self.args
        index = self.timeout[0]
        left = max(self.deadline - time.monotonic(), 0.001)
        args = list(self.args)
        if self.command.name in ("xread", "xreadgroup"):  # BLOCK is in milliseconds
            args[index] = b"%d" % max(int(left * 1000), 1)
        else:
            args[index] = b"%.3f" % left
        return args

    def _route(self, routes: Routes[ShardRoute]) -> ShardRoute | None:
        """Where the call's keys go in ``routes`` (None: on two shards now)."""
        return one_shard({routes.locate(self.args[p])
                          for p in self.command.key_positions(self.args)})

    def rerouted(self, routes: Routes[ShardRoute]) -> None:
        pin = self.pin
        if pin is None or self.unblocking:
            return
        route = self._route(routes)
        if route is not None and route.name == self.shard and not isinstance(route, Preparing):
            return  # its keys still go where it waits
        client_id = pin.connection.client_id
        if client_id is None:
            return  # not connected yet: it has not blocked there either (sent once set up)
        self.unblocking = True
        pin.backend.send(encode_command([b"CLIENT", b"UNBLOCK", b"%d" % client_id,
                                         b"TIMEOUT"]), Swallow(_unblock_failed))

    def _resumed(self, routes: Routes[ShardRoute] | None) -> None:
        """Its slot moves now (or the migration did not start in time: ``routes`` None)."""
        if self.session.mode is not self.mode or self.session.closing:
            return  # the client is gone
        if routes is None:
            self._answer(errors.migration_not_started(PREPARE_HOLD))
        else:
            self._again()

    def _again(self) -> None:
        """Wait again where the keys go now."""
        route = self._route(self.ctx.pool.routes)
        if route is None:
            self._answer(errors.mixed_migration(f"'{self.command.name.upper()}'"))
        elif not self.start(route):
            self._finish()

    def settle(self, raw: bytes) -> None:
        pin, self.pin = self.pin, None
        self.calls.waits.discard(self)
        if pin is not None:
            pin.release()
        if self.unblocking:
            self.unblocking = False
            if raw in _TIMED_OUT and (not self.deadline or time.monotonic() < self.deadline):
                self._again()  # taken back by CLIENT UNBLOCK: nothing was popped
                return
        # Redis unblocks with this text when its master becomes a replica (CLIENT UNBLOCK's
        # own -UNBLOCKED is an operator's decision and reaches the client)
        moved = raw.startswith(b"-UNBLOCKED") and b"instance state changed" in raw
        retry = moved or (isinstance(raw, Failure) and not raw.sent)
        if retry and self.attempts < MAX_ATTEMPTS and self.session.mode is self.mode:
            route = self.ctx.pool.route_of(self.shard)
            if route is not None and route.backend is not None and self.start(route):
                return
        if isinstance(raw, Failure) and raw.sent:
            raw = resp.error(f"ERR pyproxy: the connection to shard {self.shard}'s master broke "
                             f"while {self.command.name.upper()} waited: it may or may not have "
                             "taken an element (not retried)")
        self._answer(raw)

    def _answer(self, raw: bytes) -> None:
        self.reply.settle(raw)
        self._finish()

    def _finish(self) -> None:
        mode = self.mode
        if mode is not None:
            mode.done()

    def abandon(self) -> None:
        """The client is gone: close the pinned connection (Redis unblocks it there)."""
        pin, self.pin = self.pin, None
        self.calls.waits.discard(self)
        if pin is not None:
            pin.release()  # close_if_busy: the call is still waiting on it


_TIMED_OUT = (b"*-1\r\n", b"$-1\r\n", b"_\r\n")  # what a blocking call answers on timeout


def _unblock_failed(raw: bytes) -> None:
    """CLIENT UNBLOCK's answer: 0 when the call had answered already (its reply is on the
    way), an error if the connection broke (the call's own reply says what happened)."""


class Blocked(Mode):
    """A session whose blocking call is waiting: later commands wait, in order."""

    flag = "b"

    def __init__(self, ctx: Context, session: Session, wait: Wait):
        self.ctx, self.session, self.wait = ctx, session, wait
        wait.mode = self
        self.deferred: list[tuple[Command, list[bytes], Reply]] = []

    def intercept(self, command: Command, args: list[bytes], reply: Reply) -> bool:
        self.deferred.append((command, args, reply))
        return True

    def done(self) -> None:
        """The call answered: leave the mode and run what the client sent meanwhile (a
        second blocking call among them blocks again, with the rest deferred behind it)."""
        session = self.session
        if session.mode is not self:
            return
        session.mode = None
        deferred = self.deferred
        for position, (command, args, reply) in enumerate(deferred):
            if isinstance(session.mode, Blocked):
                session.mode.deferred.extend(deferred[position:])
                return
            self.ctx.dispatch(session, command, args, reply)

    def end(self) -> None:
        self.wait.abandon()
