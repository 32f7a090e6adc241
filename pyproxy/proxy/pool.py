"""A server pool: its routes snapshot and the backends they point at.

``routes`` is the only routing state the request path reads: a ``Routes`` of ``ShardRoute``
endpoints (``route``), one per shard — and one for the slots of a migration (``migration``)
— built complete by ``apply`` and swapped in by one reference assignment (no await in
between), so a client never sees a half-applied topology. Requests held for a migration being
prepared wait in the pool's ``Pause`` for it (kept across swaps by migration id) and are
routed again by the swap that ends the preparation. Backends
that are no longer anyone's master are retired: closed once their in-flight requests have
answered. A shard that loses its master keeps its slots (they answer with an error); its
keys never move to another shard.

The pool also keeps what is per pool and not routing: its counters and its open clients
(the count of clients is derived from that set, never kept by hand), its SLOWLOG and the
per-slot and hot-key counts its routes' ``locate`` feeds (``observe.hotkeys``). Its backends
count their pinned connections in the process's ``Descriptors``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sized
from typing import Protocol

from ..config import PoolConfig
from ..observe.hotkeys import KeyLoad
from ..observe.slowlog import SlowLog
from ..observe.snapshot import ClientSnapshot, HoldSnapshot, PoolSnapshot
from ..observe.stats import PoolStats, copy_counters
from ..protocol.resp import encode_command
from ..routing.routes import Routes
from ..routing.table import PREPARE, Migration, RoutingTable
from .backend import Backend
from .descriptors import Descriptors
from .flow import MemoryBudget
from .hold import Gate, HoldStats
from .migration import MigrationStats, Moving, Pause, Preparing, migrate_prefix, slot_filter
from .route import ShardRoute
from .session import Session

STALL_AFTER = 0.25  # seconds a master may leave its oldest request unanswered before new
# requests wait at its gate (at most half the pool's timeout)
DRAIN_TIMEOUT = 5.0  # seconds ``drained`` waits for the requests before a table to answer
PING = encode_command([b"PING"])


class Member(Protocol):
    """A client connection of the pool, as the pool and the server see it."""

    @property
    def queue(self) -> Sized: ...  # replies still owed to the client

    @property
    def session(self) -> Session: ...

    def snapshot(self, now: float) -> ClientSnapshot: ...

    def idle_for(self, now: float) -> float: ...

    def close(self) -> None: ...


class Pool:
    def __init__(self, config: PoolConfig, table: RoutingTable,
                 descriptors: Descriptors | None = None):
        self.config = config
        self.descriptors = descriptors or Descriptors(None)
        self.name = config.name
        self.backends: dict[str, Backend] = {}
        self.stats = PoolStats()
        self.clients: set[Member] = set()
        self.on_routes: list[Callable[[Routes[ShardRoute]], None]] = []  # told of every swap
        self.hold = HoldStats()
        self.budget = MemoryBudget(config.proxy_memory_limit)  # reply bytes its clients hold
        self.gates: dict[str, Gate] = {}  # by shard name, when failover_hold is set
        self.migrations = MigrationStats()
        self.pauses: dict[str, Pause] = {}  # by migration id, while one is being prepared
        self.by_name: dict[str, ShardRoute] = {}
        # what observers see of the requests: SLOWLOG, per-slot counters and hot keys
        self.slowlog = SlowLog(config.slowlog_log_slower_than, config.slowlog_max_len,
                               lambda: self.table, config.hash_tag)
        self.load = KeyLoad(table.modulus if table.distribution == "modula" else 0)
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
        migration = next((s.migration for s in table.shards if s.migration is not None), None)
        if migration is None:
            return Routes(table, endpoints, self.config.hash_tag, load=self.load)

        def migrating(source: ShardRoute, target: ShardRoute) -> ShardRoute:
            assert migration is not None
            return self._migration_route(table, migration, source, target)

        return Routes(table, endpoints, self.config.hash_tag, migrating, self.load)

    def _migration_route(self, table: RoutingTable, migration: Migration, source: ShardRoute,
                         target: ShardRoute) -> ShardRoute:
        if migration.state == PREPARE:
            pause = self.pauses.get(migration.id)
            if pause is None:
                pause = self.pauses[migration.id] = Pause(migration, self.migrations)
            return Preparing(source, pause)
        config = self.config
        prefix = migrate_prefix(target, config.redis_db, config.timeout_ms or 1000,
                                config.redis_auth)
        return Moving(source, target, migration,
                      slot_filter(table, config.hash_tag, migration), prefix, self.migrations)

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
                    backend = Backend(shard.master, self.config, self.stats,
                                      self.descriptors)
                masters[shard.master] = backend
        routes = self._routes(table, masters)
        old, self.backends = self.backends, masters
        self.routes = routes
        self.by_name = {route.name: route for route in routes.shards}
        for listener in self.on_routes:
            listener(routes)
        for gate in self.gates.values():
            gate.routes_changed()
        preparing = {s.migration.id for s in table.shards
                     if s.migration is not None and s.migration.state == PREPARE}
        for migration_id in [m for m in self.pauses if m not in preparing]:
            self.pauses.pop(migration_id).release(routes)
        for address, backend in old.items():
            if address not in masters:
                backend.retire()
        if self.config.preconnect:
            for backend in masters.values():
                backend.preconnect()

    async def drained(self, table: RoutingTable) -> bool:
        """Once ``table`` is in force: True when every request sent before it to the source
        of a migration it prepares has been answered (a PING behind them on each of the
        source's shared connections answered), False if not within ``DRAIN_TIMEOUT``. True
        at once for a table that prepares none. (Pinned connections are not waited for.)"""
        sources = [s.master for s in table.shards
                   if s.migration is not None and s.migration.state == PREPARE and s.master]
        loop = asyncio.get_running_loop()
        answered: list[asyncio.Future[bytes]] = []
        for address in sources:
            backend = self.backends.get(address)
            for connection in backend.all_connections() if backend is not None else []:
                if connection.fifo:
                    future: asyncio.Future[bytes] = loop.create_future()
                    connection.send(PING, _Resolve(future))
                    answered.append(future)
        if not answered:
            return True
        done, _ = await asyncio.wait(answered, timeout=DRAIN_TIMEOUT)
        return len(done) == len(answered)

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
            migration=self.migrations.snapshot() if self.config.uses_zookeeper else None,
        )


class _Resolve:
    """A waiter that resolves a future with the reply."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[bytes]):
        self.future = future

    def settle(self, raw: bytes) -> None:
        if not self.future.done():
            self.future.set_result(raw)
