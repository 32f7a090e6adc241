"""A server pool: the current routing table and the backends it points at.

``route`` is a list with one entry per slot (``modulus`` entries) holding the master's
``Backend`` or ``None`` when the shard has no master; a request costs one md5 and one list
index. ``slot_owner`` maps a slot to its shard's index in ``table.shards`` (multi-key
commands group keys by it) and ``shard_route`` maps that index to the shard's backend.
``apply`` builds complete new lists and swaps them in together (no await in between), so
clients never see a half-applied table. Backends that are no longer anyone's master are retired:
closed once their in-flight requests have answered. A shard that loses its master keeps its
slots (they answer with an error); its keys never move to another shard.
"""

from __future__ import annotations

from collections.abc import Callable

from .backend import Backend
from .config import PoolConfig
from .hashing import make_slotter
from .routing import RoutingTable
from .stats import PoolStats


class Pool:
    def __init__(self, config: PoolConfig, table: RoutingTable):
        self.config = config
        self.name = config.name
        self.backends: dict[str, Backend] = {}
        self.stats = PoolStats()
        self.table = table
        self.route: list[Backend | None] = []
        self.slot_owner: list[int] = []
        self.key_owner: Callable[[bytes], int] = lambda key: 0
        self.shard_route: list[Backend | None] = []
        self.slotter: Callable[[bytes], int] = make_slotter(config.hash_tag, table.modulus)
        self.apply(table)

    def apply(self, table: RoutingTable) -> None:
        """Swap in ``table``: one reference assignment, then retire unused backends."""
        masters: dict[str, Backend] = {}
        for shard in table.shards:
            if shard.master is not None:
                backend = self.backends.get(shard.master)
                if backend is None or backend.retired:
                    backend = Backend(shard.master, self.config, self.stats)
                masters[shard.master] = backend
        route: list[Backend | None] = [None] * table.modulus
        slot_owner: list[int] = [0] * table.modulus
        shard_route: list[Backend | None] = []
        for index, shard in enumerate(table.shards):
            backend = masters.get(shard.master) if shard.master else None
            width = shard.end - shard.start + 1
            route[shard.start : shard.end + 1] = [backend] * width
            slot_owner[shard.start : shard.end + 1] = [index] * width
            shard_route.append(backend)
        if table.modulus != self.table.modulus:
            self.slotter = make_slotter(self.config.hash_tag, table.modulus)
        old = self.backends
        self.backends = masters
        self.route = route
        self.slot_owner = slot_owner
        self.shard_route = shard_route
        slotter = self.slotter
        self.key_owner = lambda key: slot_owner[slotter(key)]  # key -> shard index
        self.table = table
        for address, backend in old.items():
            if address not in masters:
                backend.retire()
        if self.config.preconnect:
            for backend in masters.values():
                backend.preconnect()

    def close(self) -> None:
        for backend in self.backends.values():
            backend.retire()
