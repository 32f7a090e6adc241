"""Where a request goes: one shard's route (``ShardRoute``) and a session's pinned connection
(``Pin``).

A ``ShardRoute`` is immutable once built: a topology change builds new ones inside a new
``Routes`` (see ``pool``). Every request to a shard goes through its route's ``send`` (or
``send_block`` for requests that must arrive together), which honours the session's pin for
the shard and the shard's failover gate (``hold``). The routes of migrating slots
(``migration``) are ``ShardRoute``s too, with the same four entry points: ``send``,
``send_block``, ``pin`` and ``send_pinned``.
"""

from __future__ import annotations

from ..observe.stats import PoolStats
from ..protocol.commands import Command
from ..routing.table import PREPARE
from . import errors
from .backend import Backend, Connection
from .errors import Unroutable
from .hold import Block, Gate
from .replies import Waiter
from .session import Session


class Pin:
    """A pinned backend connection one session holds for one shard (see ``backend``).

    ``reset`` are the commands that put the connection back in a neutral state when the pin is
    released (UNWATCH for a watch). With ``close_if_busy``, a release while requests still wait
    on the connection closes it instead (a blocking pop must not pop for nobody). A request
    that will be sent on the pin later (after its keys move, ``migration``) ``hold``s it: a
    release meanwhile waits for its ``unhold``, so the request goes out before the reset.
    """

    __slots__ = ("shard", "backend", "connection", "reset", "close_if_busy", "holds",
                 "releasing")

    def __init__(self, shard: str, backend: Backend, connection: Connection,
                 reset: list[bytes], close_if_busy: bool = False):
        self.shard = shard
        self.backend = backend
        self.connection = connection
        self.reset = reset
        self.close_if_busy = close_if_busy
        self.holds = 0
        self.releasing = False

    def send(self, payload: bytes, waiter: Waiter) -> None:
        self.connection.send(payload, waiter)

    def send_block(self, block: list[tuple[bytes, Waiter]]) -> None:
        self.connection.send_block(block)

    def hold(self) -> None:
        self.holds += 1

    def unhold(self) -> None:
        self.holds -= 1
        if not self.holds and self.releasing:
            self.release()

    def release(self) -> None:
        if self.holds:
            self.releasing = True
            return
        self.releasing = False
        if self.close_if_busy and self.connection.fifo:
            self.backend.close_pinned(self.connection)
        else:
            self.backend.give_back(self.connection, self.reset)


class ShardRoute:
    """Where one shard's requests go right now: its master's backend, or nowhere.

    Immutable once built (a topology change builds new ones inside new ``Routes``). ``send``
    honours the session's pin for this shard: a watching client's requests to the shard it
    watches travel on its own connection.
    """

    __slots__ = ("index", "name", "backend", "stats", "pinned_limit", "gate")
    migrating = ""  # a migration's routes: its state (see ``migration``)

    def __init__(self, index: int, name: str, backend: Backend | None, stats: PoolStats,
                 pinned_limit: int, gate: Gate | None):
        self.index = index
        self.name = name
        self.backend = backend
        self.stats = stats
        self.pinned_limit = pinned_limit
        self.gate = gate  # set when the pool holds requests through failovers

    def send(self, payload: bytes, waiter: Waiter, session: Session,
             readonly: bool = False) -> None:
        """``readonly``: the request changes nothing, so it may be sent again after a failover
        (see ``hold``); every other request is treated as a write."""
        pin = session.pin
        if pin is not None and pin.shard == self.name:
            pin.send(payload, waiter)
            return
        gate = self.gate
        if gate is not None:
            gate.send(self, payload, waiter, session, readonly)
            return
        backend = self.backend
        if backend is None:
            self.stats.forward_error += 1
            waiter.settle(errors.no_master(self.name))
        else:
            backend.send(payload, waiter, session.id, session.resp3)

    def send_block(self, block: list[tuple[bytes, Waiter]], session: Session) -> None:
        """Requests that must reach the shard together or not at all (``Connection.send_block``)."""
        pin = session.pin
        if pin is not None and pin.shard == self.name:
            pin.send_block(block)
            return
        if self.gate is not None:
            self.gate.send(self, Block(block), block[-1][1], session, readonly=False)
            return
        backend = self.backend
        if backend is None:
            self.stats.forward_error += len(block)
            for _, waiter in block:
                waiter.settle(errors.no_master(self.name))
        else:
            backend.send_block(block, session.id, session.resp3)

    def send_pinned(self, pin: Pin, payload: bytes, waiter: Waiter) -> None:
        """A request on a pin this route leased (a blocking call's)."""
        pin.send(payload, waiter)

    def pin(self, session: Session, reset: list[bytes], blocking: bool = False) -> Pin:
        """Lease a pinned connection to this shard's master; ``Unroutable`` if none."""
        backend = self.backend
        if backend is None:
            self.stats.forward_error += 1
            raise Unroutable(errors.no_master(self.name))
        connection = backend.lease(session.resp3, timeout=not blocking)
        if connection is None:
            self.stats.forward_error += 1
            raise Unroutable(errors.no_pinned_connection(self.name, self.pinned_limit))
        return Pin(self.name, backend, connection, reset, close_if_busy=blocking)


def one_shard(owners: set[ShardRoute]) -> ShardRoute | None:
    """The route to send a request whose keys the ``owners`` serve, when one shard runs it:
    they share a ``name`` (the route of keys moving to a shard, with that shard's own);
    None when they do not, or when some keys wait for a migration to start and some not."""
    if len(owners) == 1:
        return next(iter(owners))
    if not owners or len({route.name for route in owners}) > 1:
        return None
    if any(route.migrating == PREPARE for route in owners):
        return None
    return next(route for route in owners if route.migrating)


def single(owners: set[ShardRoute], command: Command) -> ShardRoute:
    """The route of a command whose keys ``owners`` serve (``route.one_shard``), else
    ``Unroutable``: keys on two shards, or some in a migration's slots and some not."""
    route = one_shard(owners)
    if route is None:
        if any(owner.migrating for owner in owners):
            raise Unroutable(errors.mixed_migration(f"'{command.name.upper()}'"))
        raise Unroutable(errors.cross_shard(command))
    return route
