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

from collections.abc import Sized
from typing import Protocol

from ..config import PoolConfig
from ..observe.snapshot import PoolSnapshot
from ..observe.stats import PoolStats, copy_counters
from ..protocol import resp
from ..routing.routes import Routes
from ..routing.table import RoutingTable
from .backend import Backend
from .replies import Waiter
from .session import Session


class Member(Protocol):
    """A client connection of the pool, as the pool and the server see it."""

    @property
    def queue(self) -> Sized: ...  # replies still owed to the client

    @property
    def session(self) -> Session: ...

    def idle_for(self, now: float) -> float: ...

    def close(self) -> None: ...


class ShardRoute:
    """Where one shard's requests go right now: its master's backend, or nowhere.

    Immutable once built (a topology change builds new ones inside new ``Routes``).
    """

    __slots__ = ("index", "name", "backend", "stats")

    def __init__(self, index: int, name: str, backend: Backend | None, stats: PoolStats):
        self.index = index
        self.name = name
        self.backend = backend
        self.stats = stats

    def send(self, payload: bytes, waiter: Waiter, affinity: int, resp3: bool) -> None:
        backend = self.backend
        if backend is None:
            self.stats.forward_error += 1
            waiter.settle(resp.error(f"ERR pyproxy: shard {self.name} has no master right now"))
        else:
            backend.send(payload, waiter, affinity, resp3)


class Pool:
    def __init__(self, config: PoolConfig, table: RoutingTable):
        self.config = config
        self.name = config.name
        self.backends: dict[str, Backend] = {}
        self.stats = PoolStats()
        self.clients: set[Member] = set()
        self.routes: Routes[ShardRoute] = self._routes(table, {})
        self.apply(table)

    @property
    def table(self) -> RoutingTable:
        return self.routes.table

    def _routes(self, table: RoutingTable, backends: dict[str, Backend]) -> Routes[ShardRoute]:
        endpoints = [
            ShardRoute(index, shard.name, backends.get(shard.master) if shard.master else None,
                       self.stats)
            for index, shard in enumerate(table.shards)
        ]
        return Routes(table, endpoints, self.config.hash_tag)

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
        return PoolSnapshot(
            name=self.name, listen=self.config.listen, table=self.table,
            clients=len(self.clients), stats=copy_counters(self.stats),
            backends={address: b.snapshot() for address, b in self.backends.items()},
        )
