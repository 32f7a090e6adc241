"""A server pool: its routes snapshot and the backends they point at.

``routes`` is the only routing state the request path reads: a ``Routes`` of ``ShardRoute``
endpoints, one per shard, built complete by ``apply`` and swapped in by one reference
assignment (no await in between), so a client never sees a half-applied topology. Backends
that are no longer anyone's master are retired: closed once their in-flight requests have
answered. A shard that loses its master keeps its slots (they answer with an error); its
keys never move to another shard.

The pool also keeps what is per pool and not routing: its counters and its open clients
(the count of clients is derived from that set, never kept by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Protocol

from ..config import PoolConfig
from ..observe.snapshot import ClientSnapshot, HoldSnapshot, PoolSnapshot
from ..observe.stats import PoolStats, copy_counters
from ..routing.routes import Routes
from ..routing.table import RoutingTable
from . import errors
from .backend import Backend, Connection
from .errors import Unroutable
from .flow import MemoryBudget
from .hold import Block, Gate, HoldStats
from .replies import Waiter
from .session import Session

STALL_AFTER = 0.25  # seconds a master may leave its oldest request unanswered before new
# requests wait at its gate (at most half the pool's timeout)


class Member(Protocol):
    """A client connection of the pool, as the pool and the server see it."""

    @property
    def queue(self) -> Sized: ...  # replies still owed to the client

    @property
    def session(self) -> Session: ...

    def snapshot(self, now: float) -> ClientSnapshot: ...

    def idle_for(self, now: float) -> float: ...

    def close(self) -> None: ...


class Pin:
    """A pinned backend connection one session holds for one shard (see ``backend``).

    ``reset`` are the commands that put the connection back in a neutral state when the pin is
    released (UNWATCH for a watch). With ``close_if_busy``, a release while requests still wait
    on the connection closes it instead (a blocking pop must not pop for nobody).
    """

    __slots__ = ("shard", "backend", "connection", "reset", "close_if_busy")

    def __init__(self, shard: str, backend: Backend, connection: Connection,
                 reset: list[bytes], close_if_busy: bool = False):
        self.shard = shard
        self.backend = backend
        self.connection = connection
        self.reset = reset
        self.close_if_busy = close_if_busy

    def send(self, payload: bytes, waiter: Waiter) -> None:
        self.connection.send(payload, waiter)

    def send_block(self, block: list[tuple[bytes, Waiter]]) -> None:
        self.connection.send_block(block)

    def release(self) -> None:
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


class Pool:
    def __init__(self, config: PoolConfig, table: RoutingTable):
        self.config = config
        self.name = config.name
        self.backends: dict[str, Backend] = {}
        self.stats = PoolStats()
        self.clients: set[Member] = set()
        self.on_routes: list[Callable[[Routes[ShardRoute]], None]] = []  # told of every swap
        self.hold = HoldStats()
        self.budget = MemoryBudget(config.proxy_memory_limit)  # reply bytes its clients hold
        self.gates: dict[str, Gate] = {}  # by shard name, when failover_hold is set
        self.by_name: dict[str, ShardRoute] = {}
        self.routes: Routes[ShardRoute] = self._routes(table, {})
        self.apply(table)

    @property
    def table(self) -> RoutingTable:
        return self.routes.table

    def _routes(self, table: RoutingTable, backends: dict[str, Backend]) -> Routes[ShardRoute]:
        endpoints = [
            ShardRoute(index, shard.name, backends.get(shard.master) if shard.master else None,
                       self.stats, self.config.pinned_connections, self._gate(shard.name))
            for index, shard in enumerate(table.shards)
        ]
        return Routes(table, endpoints, self.config.hash_tag)

    def _gate(self, shard: str) -> Gate | None:
        config = self.config
        if not config.failover_hold_ms:
            return None
        gate = self.gates.get(shard)
        if gate is None:
            timeout = (config.timeout_ms or 1000) / 1000.0
            gate = self.gates[shard] = Gate(self, shard, config.failover_hold_ms / 1000.0,
                                            min(STALL_AFTER, timeout / 2), self.hold)
        return gate

    def route_of(self, shard: str) -> ShardRoute | None:
        """The shard's route in the routes in force now."""
        return self.by_name.get(shard)

    def apply(self, table: RoutingTable) -> None:
        """Swap in ``table``: one reference assignment, then retire unused backends."""
        masters: dict[str, Backend] = {}
        for shard in table.shards:
            if shard.master is not None and shard.master not in masters:
                backend = self.backends.get(shard.master)
                if backend is None or backend.retired:
                    backend = Backend(shard.master, self.config, self.stats)
                masters[shard.master] = backend
        routes = self._routes(table, masters)
        old, self.backends = self.backends, masters
        self.routes = routes
        self.by_name = {route.name: route for route in routes.shards}
        for listener in self.on_routes:
            listener(routes)
        for gate in self.gates.values():
            gate.routes_changed()
        for address, backend in old.items():
            if address not in masters:
                backend.retire()
        if self.config.preconnect:
            for backend in masters.values():
                backend.preconnect()

    def close(self) -> None:
        for backend in self.backends.values():
            backend.retire()

    def snapshot(self) -> PoolSnapshot:
        hold = self.hold
        return PoolSnapshot(
            name=self.name, listen=self.config.listen, table=self.table,
            clients=len(self.clients), stats=copy_counters(self.stats),
            backends={address: b.snapshot() for address, b in self.backends.items()},
            hold=HoldSnapshot(
                held_now=sum(gate.held() for gate in self.gates.values()),
                held_total=hold.held, expired=hold.expired, unknown=hold.unknown,
                hold_time=hold.hold_time.copy(), outages=dict(hold.outages),
            ) if self.config.failover_hold_ms else None,
        )
