"""Transactions: MULTI/EXEC/DISCARD with Redis's semantics when every key lives on one shard,
and WATCH/UNWATCH on a pinned connection.

* MULTI puts the session in ``Transaction`` mode. Every command after it is checked as Redis
  checks it before queueing — unknown command and wrong arity (by the executor), and here:
  one shard must serve it as it is (its strategy's ``routes``), and its keys must live on the
  transaction's shard, which the first key fixes (or the watched shard). A command that fails
  a check gets its error and marks the transaction failed: EXEC then answers ``-EXECABORT``
  and **nothing is sent to any shard**. Otherwise the proxy answers ``+QUEUED`` itself and
  keeps the command. Keys moving to a shard (a migration's, ``migration``) count as that
  shard's. After a topology change the queued commands are checked again against the routes
  in force; if their keys no longer live on one shard, EXEC answers ``-EXECABORT pyproxy:
  ...`` and nothing runs.
* EXEC sends ``MULTI``, the queued frames and ``EXEC`` in one go to the shard's connection —
  contiguous in its FIFO, so no other client's request can come between them on that
  connection — and the client gets EXEC's reply exactly as Redis sent it: the array with
  per-command errors inside, or ``*-1``/``_`` when a WATCH failed. A transaction with no key
  runs on the first shard. The replies to MULTI and to each queued command are swallowed
  (Redis answers EXEC with ``-EXECABORT`` itself if one was refused at its queueing).
* WATCH needs the client's later commands on the connection that watches, so the first
  WATCH leases a pinned connection to the keys' shard (``session.pin``): from then on the
  client's requests to that shard travel on it, until EXEC, DISCARD or UNWATCH (or the
  disconnect) releases it with UNWATCH queued first. Keys on another shard than the watched
  one are refused, with nothing sent.
* Redis's own errors for MULTI inside MULTI, WATCH inside MULTI, EXEC or DISCARD without
  MULTI; those two inside MULTI do not fail the transaction (as in Redis).
"""

from __future__ import annotations

from ..protocol import resp
from ..protocol.commands import Command
from ..protocol.resp import encode_command
from . import errors
from .dispatch import Context, Strategy
from .errors import Unroutable
from .replies import Reply, Swallow, Waiter
from .route import ShardRoute, one_shard, single
from .session import Mode, Session

MULTI = encode_command([b"MULTI"])
EXEC = encode_command([b"EXEC"])
UNWATCH = encode_command([b"UNWATCH"])


class TransactionControl(Strategy):
    """MULTI, EXEC, DISCARD, WATCH and UNWATCH outside a transaction."""

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        name = command.name
        if name == "multi":
            session.mode = Transaction(ctx, session)
            reply.settle(resp.OK)
        elif name == "exec":
            reply.settle(errors.EXEC_WITHOUT_MULTI)
        elif name == "discard":
            reply.settle(errors.DISCARD_WITHOUT_MULTI)
        elif name == "watch":
            watch(ctx, session, command, args, reply)
        elif session.pin is not None:  # UNWATCH: Redis answers, then the pin goes back
            session.pin.send(UNWATCH, reply)
            session.pin.reset = []
            session.unpin()
        else:
            reply.settle(resp.OK)


def watch(ctx: Context, session: Session, command: Command, args: list[bytes],
          reply: Reply) -> None:
    locate = ctx.pool.routes.locate
    try:
        route = single({locate(args[p]) for p in command.key_positions(args)}, command)
    except Unroutable as refusal:
        reply.settle(refusal.reply)
        return
    pin = session.pin
    if pin is not None and pin.shard != route.name:
        reply.settle(resp.error(f"ERR pyproxy: this connection already watches keys of shard "
                                f"{pin.shard}; '{args[1].decode(errors='replace')}' lives on "
                                f"{route.name} (use a hash tag to keep them together)"))
        return
    if pin is None:
        try:
            session.pin = route.pin(session, reset=[UNWATCH])
        except Unroutable as refusal:
            reply.settle(refusal.reply)
            return
    route.send(encode_command(args), reply, session)


class Transaction(Mode):
    """A session between MULTI and EXEC/DISCARD."""

    flag = "x"

    def __init__(self, ctx: Context, session: Session):
        self.ctx = ctx
        self.session = session
        self.queue: list[tuple[Command, list[bytes]]] = []
        self.shard: str | None = session.pin.shard if session.pin is not None else None
        self.routes = ctx.pool.routes  # the routes the queued commands were checked against
        self.owners: set[ShardRoute] = set()  # what serves their keys, in those routes
        self.failed = False
        self.moved = False  # a topology change left the queued keys on several shards

    def queued(self) -> int:
        return len(self.queue)

    def rejected(self) -> None:
        self.failed = True

    def intercept(self, command: Command, args: list[bytes], reply: Reply) -> bool:
        name = command.name
        if name == "exec":
            self._exec(reply)
        elif name == "discard":
            self._finish()
            reply.settle(resp.OK)
        elif name == "multi":
            reply.settle(errors.NESTED_MULTI)
        elif name == "watch":
            reply.settle(errors.WATCH_INSIDE_MULTI)
        elif name == "quit":
            return False
        else:
            self._queue(command, args, reply)
        return True

    def _queue(self, command: Command, args: list[bytes], reply: Reply) -> None:
        if self.ctx.pool.routes is not self.routes:  # a topology change since the last check
            self.routes = self.ctx.pool.routes
            owners = self._owners()
            self.moved = self.moved or owners is None
            self.owners = owners or set()
        try:
            self.owners = self._add(command, args, self.owners)
        except Unroutable as refusal:
            self.failed = True
            reply.settle(refusal.reply)
            return
        self.queue.append((command, args))
        reply.settle(errors.QUEUED)

    def _add(self, command: Command, args: list[bytes],
             owners: set[ShardRoute]) -> set[ShardRoute]:
        """``owners`` with the command's: ``Unroutable`` unless one shard (the watched one,
        if any) serves them all."""
        ctx = self.ctx
        own = ctx.strategies[command.index].routes(ctx, command, args)
        if not own:
            return owners
        single(own, command)  # its own keys on one shard
        more = owners | own
        shard = self.shard or next(iter(owners or own)).name
        route = one_shard(more)
        if route is None and any(owner.migrating for owner in more):
            raise Unroutable(errors.mixed_migration(f"'{command.name.upper()}'"))
        if route is None or route.name != shard:
            raise Unroutable(errors.transaction_cross_shard(command, shard))
        return more

    def _owners(self) -> set[ShardRoute] | None:
        """What serves the queued commands' keys in the routes in force; None if one shard
        no longer does (a topology change moved some)."""
        owners: set[ShardRoute] = set()
        try:
            for command, args in self.queue:
                owners = self._add(command, args, owners)
        except Unroutable:
            return None
        return owners

    def _exec(self, reply: Reply) -> None:
        session = self.session
        if self.failed:
            self._finish()
            reply.settle(errors.EXECABORT)
            return
        routes = self.ctx.pool.routes
        owners = self.owners if routes is self.routes else self._owners()
        if owners is None or self.moved:
            self._finish()
            reply.settle(errors.TRANSACTION_MOVED)
            return
        route = one_shard(owners) if owners else None
        if route is None:  # no key: the watched shard, or the first with a master
            route = next((r for r in routes.shards if r.name == self.shard), None) or next(
                (r for r in routes.shards if r.backend is not None), routes.shards[0])
        swallow: Waiter = Swallow(_ignore)
        block = [(MULTI, swallow), *((encode_command(args), swallow) for _, args in self.queue),
                 (EXEC, reply)]
        route.send_block(block, session)
        session.written.add(route.name)
        if session.pin is not None:
            session.pin.reset = []  # EXEC unwatched everything
        self._finish()

    def _finish(self) -> None:
        """Leave the mode; a pin goes back (with UNWATCH, unless EXEC made it needless)."""
        self.session.mode = None
        self.session.unpin()

    def end(self) -> None:
        self.session.unpin()


def _ignore(raw: bytes) -> None:
    """The replies to MULTI and the queued commands: EXEC's reply tells the client."""
