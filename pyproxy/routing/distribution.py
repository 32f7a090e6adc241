"""Key -> shard: nutcracker 0.5's three distributions over a routing table's shards.

``locator(table, endpoints, hash_tag)`` returns ``key -> endpoint`` for the table's
``distribution`` and ``hash``; ``endpoints[i]`` serves ``table.shards[i]``, and the shards are
in nutcracker's server order (config sorts them as nutcracker does: by name, shorter first,
then bytewise). Every key goes where nutcracker sends it while all servers are up:

* ``modula``: slot = hash(key) % modulus, the shard whose ranges hold the slot. The ranges
  are nutcracker's modula continuum (one entry per unit of weight, servers in order), or
  pyproxy's explicit slot ranges over 4096 slots (several per shard, or none). The slots of
  a migration go to the endpoint the caller makes for it (``migrating``).
* ``ketama``: nutcracker's ring (``ketama_points``): each shard gets points in proportion to
  its weight (the length of its range), at the md5 of ``"<name>-<n>"``; a key goes to the
  first point at or after hash(key), wrapping to the first point.
* ``random``: every call picks a shard uniformly at random, ignoring weights and the key —
  as nutcracker does for every request, reads included.

nutcracker rebuilds its ring or continuum without the servers it ejects (auto_eject_hosts);
pyproxy never moves keys (an ejected shard's keys get an error), so placement is nutcracker's
with every server live.

Pure: no I/O.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from struct import Struct
from typing import Protocol, TypeVar

from .hashing import fast_md5, key_hash, make_slotter
from .table import RoutingTable

E = TypeVar("E")

DISTRIBUTIONS = ("ketama", "modula", "random")
# nutcracker's nc_ketama.c: 160 points per server at equal weights, 4 per md5 digest, and a
# point's name cut to 272 bytes.
KETAMA_POINTS_PER_SERVER = 160
KETAMA_POINTS_PER_HASH = 4
KETAMA_MAX_NAME = 272
# modula with more slots than this (large classic weights) bisects the ranges instead of
# indexing a list with one entry per slot.
SLOT_LIST_LIMIT = 1 << 16

_float32 = Struct("<f")
_four_uint32 = Struct("<4I")


def _f32(value: float) -> float:
    """``value`` rounded to a C float, as each step of nutcracker's float arithmetic is."""
    return float(_float32.unpack(_float32.pack(value))[0])


def ketama_share(weight: int, total: int, servers: int) -> int:
    """Points nutcracker gives one server: floorf(weight/total * 160/4 * servers) * 4, every
    step in C float (single precision), as ketama_update computes it."""
    pct = _f32(_f32(weight) / _f32(total))
    scaled = _f32(_f32(_f32(pct * KETAMA_POINTS_PER_SERVER) / 4) * _f32(servers))
    return int(math.floor(_f32(scaled + 0.0000000001))) * KETAMA_POINTS_PER_HASH


def ketama_points(servers: Sequence[tuple[str, int]]) -> tuple[list[int], list[int]]:
    """nutcracker's ketama continuum for ``(name, weight)`` in server order: the point values,
    sorted, and the index of the server owning each. Equal values keep server order (glibc's
    qsort, a merge sort, is stable)."""
    total = sum(weight for _, weight in servers)
    points: list[tuple[int, int]] = []
    for index, (name, weight) in enumerate(servers):
        for group in range(ketama_share(weight, total, len(servers)) // KETAMA_POINTS_PER_HASH):
            point_name = f"{name}-{group}".encode()[:KETAMA_MAX_NAME]
            points += [(value, index) for value in _four_uint32.unpack(
                fast_md5(point_name).digest())]
    points.sort(key=lambda point: point[0])
    return [value for value, _ in points], [index for _, index in points]


class Load(Protocol):
    """What a locator tells of the keys it places (``observe.hotkeys.KeyLoad``): ``slots``
    counts the keys of each slot (when it has one counter per slot of the table); every
    ``gap()``-th key goes to ``sample``, which returns the next gap."""

    slots: list[int]

    def gap(self) -> int: ...

    def sample(self, key: bytes) -> int: ...


def weights(table: RoutingTable) -> list[tuple[str, int]]:
    """``(name, weight)`` of each shard in table order: its slots' count is its weight."""
    return [(shard.name, shard.slots) for shard in table.shards]


def locator(table: RoutingTable, endpoints: Sequence[E], hash_tag: bytes | None,
            migrating: Callable[[int, int], E] | None = None,
            load: Load | None = None) -> Callable[[bytes], E]:
    """``key -> endpoints[index of the shard that owns key]`` for the table's placement.

    Under modula a slot of a shard's ``migration`` goes to ``migrating(source index, target
    index)`` instead (made once per pair) when given. With ``load``, every key placed is
    counted there (``Load``)."""
    if len(endpoints) != len(table.shards):
        raise ValueError(f"{len(endpoints)} endpoints for {len(table.shards)} shards")
    if table.distribution == "random":
        choices = tuple(endpoints)
        choice = random.choice
        return _sampled(lambda key: choice(choices), load)
    if table.distribution == "ketama":
        values, owners = ketama_points(weights(table))
        ring = [endpoints[index] for index in owners] + [endpoints[owners[0]]]  # wrap-around
        hashed = key_hash(table.hash, hash_tag)
        return _sampled(lambda key: ring[bisect_left(values, hashed(key))], load)
    if table.distribution != "modula":
        raise ValueError(f"unknown distribution {table.distribution!r}")
    slot_of = make_slotter(hash_tag, table.modulus, table.hash)
    pieces = _pieces(table, endpoints, migrating)
    if table.modulus > SLOT_LIST_LIMIT:  # bisect the ranges' ends
        ends = [end for _, end, _ in pieces]
        placed = [endpoint for _, _, endpoint in pieces]
        return _sampled(lambda key: placed[bisect_left(ends, slot_of(key))], load)
    by_slot: list[E] = [endpoints[0]] * table.modulus
    for start, end, endpoint in pieces:
        by_slot[start : end + 1] = [endpoint] * (end - start + 1)
    if load is None or len(load.slots) != table.modulus:
        return _sampled(lambda key: by_slot[slot_of(key)], load)
    # The common case (ZooKeeper pools), counted inline: a wrapper's extra call would cost
    # more than the counting itself.
    counts, sample, countdown = load.slots, load.sample, load.gap()

    def locate(key: bytes) -> E:
        nonlocal countdown
        slot = slot_of(key)
        counts[slot] += 1
        countdown -= 1
        if not countdown:
            countdown = sample(key)
        return by_slot[slot]

    return locate


def _sampled(place: Callable[[bytes], E], load: Load | None) -> Callable[[bytes], E]:
    """``place`` with every ``load.gap()``-th key sampled (``place`` itself without a load)."""
    if load is None:
        return place
    sample, countdown = load.sample, load.gap()

    def locate(key: bytes) -> E:
        nonlocal countdown
        countdown -= 1
        if not countdown:
            countdown = sample(key)
        return place(key)

    return locate


def _pieces(table: RoutingTable, endpoints: Sequence[E],
            migrating: Callable[[int, int], E] | None) -> list[tuple[int, int, E]]:
    """``(start, end, endpoint)`` tiling the slots in order: each shard's ranges, with the
    slots of a migration cut out of its source's and given to ``migrating(source, target)``."""
    pieces: list[tuple[int, int, E]] = []
    index_of = {shard.name: i for i, shard in enumerate(table.shards)}
    for index, (shard, endpoint) in enumerate(zip(table.shards, endpoints, strict=True)):
        moving = shard.migration
        if moving is None or migrating is None:
            pieces.extend((start, end, endpoint) for start, end in shard.ranges)
            continue
        mover = migrating(index, index_of[moving.target])
        cuts = sorted(moving.slots)
        for start, end in shard.ranges:
            at = start
            for cut_start, cut_end in cuts:
                if cut_end < start or cut_start > end:
                    continue
                if cut_start > at:
                    pieces.append((at, cut_start - 1, endpoint))
                pieces.append((cut_start, cut_end, mover))
                at = cut_end + 1
            if at <= end:
                pieces.append((at, end, endpoint))
    pieces.sort(key=lambda piece: piece[0])
    return pieces
