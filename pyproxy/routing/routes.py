"""The routes snapshot: key -> slot -> shard -> endpoint, built once, swapped in whole.

A ``Routes`` is made from a ``RoutingTable`` and one endpoint per shard (whatever the caller
sends requests through — the proxy's ``ShardRoute``; nothing here knows what it is) each time
the topology changes, and is never modified. The request path reads ``pool.routes`` once per
command and then only this object, so a command sees the old routes or the new ones, never a
mix; nothing outside this class indexes a routing list.

* ``locate(key)``   the endpoint of the shard that owns ``key``: one hash, one list index.
* ``shards``        the endpoints in table order: ``shards[i]`` serves ``table.shards[i]``.
* ``slot_of(key)``  the key's slot; ``by_slot[slot]`` its endpoint.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .hashing import make_slotter
from .table import RoutingTable

E = TypeVar("E")


class Routes(Generic[E]):
    __slots__ = ("table", "shards", "by_slot", "slot_of", "locate")

    def __init__(self, table: RoutingTable, endpoints: Sequence[E], hash_tag: bytes | None):
        if len(endpoints) != len(table.shards):
            raise ValueError(f"{len(endpoints)} endpoints for {len(table.shards)} shards")
        by_slot: list[E] = [endpoints[0]] * table.modulus
        for shard, endpoint in zip(table.shards, endpoints, strict=True):
            by_slot[shard.start : shard.end + 1] = [endpoint] * (shard.end - shard.start + 1)
        slot_of = make_slotter(hash_tag, table.modulus)
        self.table = table
        self.shards: tuple[E, ...] = tuple(endpoints)
        self.by_slot = by_slot
        self.slot_of = slot_of
        self.locate: Callable[[bytes], E] = lambda key: by_slot[slot_of(key)]
