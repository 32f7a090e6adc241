"""The routes snapshot: key -> shard -> endpoint, built once, swapped in whole.

A ``Routes`` is made from a ``RoutingTable`` and one endpoint per shard (whatever the caller
sends requests through — the proxy's ``ShardRoute``; nothing here knows what it is) each time
the topology changes, and is never modified. The request path reads ``pool.routes`` once per
command and then only this object, so a command sees the old routes or the new ones, never a
mix; nothing outside this class indexes a routing list.

* ``locate(key)``   the endpoint of the shard that owns ``key``, as the table's distribution
                    places it (``distribution``): one hash and one list index for modula and
                    ketama; a random endpoint on every call for random.
* ``shards``        the endpoints in table order: ``shards[i]`` serves ``table.shards[i]``.
* slots of a migration are located at ``migrating(source endpoint, target endpoint)``, one
  endpoint per migrating pair, when the caller gives that factory.
* with a ``load`` (``distribution.Load``), ``locate`` counts every key it places there: the
  per-slot counters and the hot-key samples of ``observe.hotkeys``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .distribution import Load, locator
from .table import RoutingTable

E = TypeVar("E")


class Routes(Generic[E]):
    __slots__ = ("table", "shards", "locate")

    def __init__(self, table: RoutingTable, endpoints: Sequence[E], hash_tag: bytes | None,
                 migrating: Callable[[E, E], E] | None = None, load: Load | None = None):
        self.table = table
        self.shards: tuple[E, ...] = tuple(endpoints)
        pair = None if migrating is None else (
            lambda source, target: migrating(self.shards[source], self.shards[target]))
        self.locate: Callable[[bytes], E] = locator(table, self.shards, hash_tag, pair, load)
