"""A cluster's slot layout as ``pyproxy-admin`` reads and changes it, and the plans that move
slots between shards.

``Layout`` is what ZooKeeper holds under the cluster path: every shard's ranges, the migration
it is the source of, its members, and its node's data version (writes are conditional on it,
so two admins never interleave). Its changes are new ``Layout`` values:

* ``start(source, slots, target, id)``   records a migration in ``prepare``;
* ``moving(source)``                     the same migration, state ``moving``;
* ``finish(source)``                     the slots given to the target, the record gone;
* ``abandon(source)``                    the record gone, nothing moved (only from
                                         ``prepare``: no key has moved yet).

Plans (``plan_reshard``, ``plan_rebalance``) are lists of ``Step``: slots of one source moving
to one target. Every layout they produce still tiles the slots exactly once.

Pure: no kazoo, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..routing.table import (
    MOVING,
    PREPARE,
    Migration,
    Ranges,
    format_ranges,
    slot_set,
    tiling_errors,
    to_ranges,
)
from . import zkschema


class LayoutError(ValueError):
    """A change the layout does not allow; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class ShardState:
    name: str
    ranges: Ranges
    migration: Migration | None = None
    members: tuple[str, ...] = ()  # member addresses, master first
    version: int = -1  # the node's data version (-1: not read from ZooKeeper)

    @property
    def master(self) -> str | None:
        return self.members[0] if self.members else None

    @property
    def slots(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)


@dataclass(frozen=True, slots=True)
class Step:
    """Slots of ``source`` moving to ``target``."""

    source: str
    target: str
    slots: Ranges

    @property
    def count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)

    def describe(self) -> str:
        return f"{format_ranges(self.slots)} ({self.count} slots): {self.source} -> {self.target}"


@dataclass(frozen=True, slots=True)
class Layout:
    shards: dict[str, ShardState] = field(default_factory=dict)
    modulus: int = 4096

    def digest(self) -> str:
        """What a proxy routing by this layout says in its node (``zkschema.layout_digest``)."""
        return zkschema.layout_digest((s.name, s.ranges, s.migration)
                                      for s in self.shards.values())

    def errors(self) -> list[str]:
        return tiling_errors([(s.name, a, b) for s in self.shards.values() for a, b in s.ranges],
                             self.modulus)

    def migration(self) -> tuple[str, Migration] | None:
        """The migration in progress: (its source, the record)."""
        for shard in self.shards.values():
            if shard.migration is not None:
                return shard.name, shard.migration
        return None

    def owner(self, slot: int) -> str | None:
        for shard in self.shards.values():
            if any(start <= slot <= end for start, end in shard.ranges):
                return shard.name
        return None

    def _with(self, *changed: ShardState) -> Layout:
        shards = dict(self.shards)
        for shard in changed:
            shards[shard.name] = shard
        return Layout(shards, self.modulus)

    def start(self, step: Step, migration_id: str) -> Layout:
        source = self.shards[step.source]
        if step.target not in self.shards or step.target == step.source:
            raise LayoutError(f"{step.target} is not another shard of the cluster")
        if self.migration() is not None:
            raise LayoutError("a migration is in progress already")
        if not slot_set(step.slots) <= slot_set(source.ranges):
            raise LayoutError(f"{step.source} does not own all of {format_ranges(step.slots)}")
        return self._with(replace(source, migration=Migration(step.slots, step.target,
                                                              migration_id, PREPARE)))

    def moving(self, source_name: str) -> Layout:
        source = self.shards[source_name]
        assert source.migration is not None
        return self._with(replace(source, migration=replace(source.migration, state=MOVING)))

    def finish(self, source_name: str) -> Layout:
        source = self.shards[source_name]
        migration = source.migration
        assert migration is not None
        moved = slot_set(migration.slots)
        target = self.shards[migration.target]
        return self._with(
            replace(source, ranges=to_ranges(slot_set(source.ranges) - moved), migration=None),
            replace(target, ranges=to_ranges(slot_set(target.ranges) | moved)))

    def abandon(self, source_name: str) -> Layout:
        source = self.shards[source_name]
        assert source.migration is not None and source.migration.state == PREPARE
        return self._with(replace(source, migration=None))


def plan_reshard(layout: Layout, slots: Ranges, target: str) -> list[Step]:
    """Give ``slots`` to ``target``: one step per shard that owns some of them now."""
    if target not in layout.shards:
        raise LayoutError(f"no shard named {target!r} (add it first: pyproxy-admin add-shard)")
    wanted = slot_set(slots)
    outside = [s for s in wanted if not 0 <= s < layout.modulus]
    if outside:
        raise LayoutError(f"slot {outside[0]} is not within 0-{layout.modulus - 1}")
    steps = []
    for shard in sorted(layout.shards.values(), key=lambda s: s.name):
        if shard.name == target:
            continue
        mine = wanted & slot_set(shard.ranges)
        if mine:
            steps.append(Step(shard.name, target, to_ranges(mine)))
    return steps


def plan_rebalance(layout: Layout) -> list[Step]:
    """Spread the slots evenly over every shard with a master, with as few moves as possible:
    a shard above its share gives its highest slots to those below theirs. Shards without a
    master give all their slots away."""
    live = sorted((s for s in layout.shards.values() if s.master), key=lambda s: s.name)
    if not live:
        raise LayoutError("no shard has a master: nothing can receive slots")
    base, extra = divmod(layout.modulus, len(live))
    # the extra slots go to shards holding more than the base already (each saves a move),
    # those closest to it first (so they need not give at all: fewer steps)
    preferred = sorted(live, key=lambda s: (s.slots <= base, s.slots, s.name))
    share = {s.name: base + (1 if i < extra else 0) for i, s in enumerate(preferred)}
    owned = {s.name: sorted(slot_set(s.ranges)) for s in layout.shards.values()}
    givers = sorted(((name, len(slots) - share.get(name, 0)) for name, slots in owned.items()
                     if len(slots) > share.get(name, 0)), key=lambda g: g[0])
    deficit = {s.name: share[s.name] - len(owned[s.name]) for s in live
               if len(owned[s.name]) < share[s.name]}
    steps = []
    for giver, surplus in givers:
        slots = owned[giver]
        while surplus > 0:
            taker = next(name for name, wanted in deficit.items() if wanted > 0)
            count = min(surplus, deficit[taker])
            moving, slots = slots[len(slots) - count:], slots[:len(slots) - count]
            steps.append(Step(giver, taker, to_ranges(moving)))
            surplus -= count
            deficit[taker] -= count
    return steps
