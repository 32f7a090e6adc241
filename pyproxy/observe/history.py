"""Recent topology events of a pool, for the status page: master changes, migrations, slots.

``TableHistory.observe`` is told every routing table the pool swaps in (``Pool.on_routes``)
and keeps what changed from the previous one, with the time, in a ring of ``SIZE`` events:
the newest are kept, memory is bounded however long the proxy runs. ``changes`` is the pure
comparison:

* ``master``     a shard's master changed (a failover, or a master that left: ``none``);
* ``migration``  a migration began, changed state (prepare -> moving) or ended;
* ``slots``      a shard's ranges changed (the end of a migration gives them to the target);
* ``source``     the table's source changed (``config`` -> ``zookeeper`` at the first
                 ZooKeeper answer): its masters are then not counted as failovers.

Pure: no I/O (``follow`` reads the clock).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..routing.routes import Routes
from ..routing.table import RoutingTable, format_ranges

SIZE = 32


@dataclass(frozen=True, slots=True)
class TableEvent:
    time: float  # unix seconds
    version: int  # of the table that brought it
    kind: str  # "master", "migration", "slots" or "source"
    shard: str  # "" for the whole table
    text: str


def changes(old: RoutingTable, new: RoutingTable) -> list[tuple[str, str, str]]:
    """``(kind, shard, text)`` for what ``new`` changes from ``old``."""
    if old.source != new.source:
        return [("source", "", f"table from {new.source} (was {old.source})")]
    found = []
    before = {shard.name: shard for shard in old.shards}
    for shard in new.shards:
        was = before.get(shard.name)
        if was is None:
            found.append(("slots", shard.name, "shard added with slots "
                          f"{format_ranges(shard.ranges) or 'none'}"))
            continue
        if was.master != shard.master:
            found.append(("master", shard.name,
                          f"master {was.master or 'none'} -> {shard.master or 'none'}"))
        if was.migration != shard.migration:
            moving = shard.migration or was.migration
            assert moving is not None
            what = (f"slots {format_ranges(moving.slots)} to {moving.target}")
            state = shard.migration.state if shard.migration is not None else "ended"
            found.append(("migration", shard.name, f"migration {moving.id}: {what}: {state}"))
        if was.ranges != shard.ranges:
            found.append(("slots", shard.name, f"slots {format_ranges(was.ranges) or 'none'} "
                          f"-> {format_ranges(shard.ranges) or 'none'}"))
    names = {shard.name for shard in new.shards}
    found += [("slots", name, "shard removed") for name in before if name not in names]
    return found


class TableHistory:
    __slots__ = ("events", "table")

    def __init__(self, table: RoutingTable, size: int = SIZE):
        self.events: deque[TableEvent] = deque(maxlen=size)
        self.table = table

    def observe(self, table: RoutingTable, now: float) -> None:
        for kind, shard, text in changes(self.table, table):
            self.events.append(TableEvent(now, table.version, kind, shard, text))
        self.table = table

    def follow(self, routes: Routes[Any]) -> None:
        """A ``Pool.on_routes`` listener: the routes' table, now."""
        self.observe(routes.table, time.time())

    def recent(self) -> tuple[TableEvent, ...]:
        """Newest first."""
        return tuple(reversed(self.events))
