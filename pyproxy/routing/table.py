"""Immutable routing tables: which shard owns which slots, and who its master is.

A ``RoutingTable`` is what the configuration or ZooKeeper says the cluster looks like — shard
names, slot ranges, master and replica addresses, and how keys are placed on the shards (the
pool's ``hash`` and ``distribution``, see ``distribution``). It is built once, validated, and
never changed: a topology change builds a new one, from which the proxy builds its ``Routes``
(``routes``) and swaps them in whole.

Invariants checked by ``build``: the shards' ranges tile ``0..modulus-1`` exactly once. A
shard may own several ranges, or none (a shard just added, before slots move to it). A shard
may have no master (``master is None``). At most one shard is migrating, under modula only.
Under modula the ranges are where the keys go (slot = hash % modulus); under ketama and
random they only carry each shard's weight (its slots' count), the shards in nutcracker's
server order.

A shard may be the source of a ``Migration``: some of its slots moving, with their keys, to
another shard (``target``). Until the migration ends the source still owns them (its ranges
include them). Its ``state`` says how the proxy serves them:

* ``prepare``  requests for them wait (they go nowhere), so that once every proxy says it
               routes by this table no request for them is on its way to the source: a
               proxy that still sent them to the source would write a key the move has
               already taken away. ``pyproxy-admin`` waits for that, then writes ``moving``.
* ``moving``   each request first moves its keys from the source to the target (atomic on
               the source; a key already gone just is not there) and then runs on the target.
               The admin's mover moves the rest meanwhile; when none is left it gives the
               slots to the target and removes the migration in one ZooKeeper transaction.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


class TopologyError(Exception):
    """An invalid table; ``.errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


Ranges = tuple[tuple[int, int], ...]  # inclusive (start, end) pairs, ascending


PREPARE, MOVING = "prepare", "moving"
MIGRATION_STATES = (PREPARE, MOVING)


@dataclass(frozen=True, slots=True)
class Migration:
    """Slots of a shard moving to ``target`` (ZooKeeper's record, see ``cluster/zkschema``)."""

    slots: Ranges
    target: str
    id: str
    state: str  # PREPARE or MOVING


@dataclass(frozen=True, slots=True)
class Shard:
    name: str
    ranges: Ranges
    master: str | None  # "host:port"
    replicas: tuple[str, ...] = ()
    migration: Migration | None = None

    @classmethod
    def of(cls, name: str, start: int, end: int, master: str | None,
           replicas: tuple[str, ...] = ()) -> Shard:
        """A shard owning the one range ``start..end``."""
        return cls(name, ((start, end),), master, replicas)

    @property
    def slots(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)

    @property
    def first(self) -> int:
        """Where it sorts: its first slot (a shard with none sorts last)."""
        return self.ranges[0][0] if self.ranges else 1 << 62


@dataclass(frozen=True, slots=True)
class RoutingTable:
    shards: tuple[Shard, ...]  # ordered by start slot
    modulus: int
    version: int = 0
    source: str = "config"
    hash: str = "md5"  # a name in hashing.HASHES
    distribution: str = "modula"  # "modula", "ketama" or "random"

    def master_of(self, shard_name: str) -> str | None:
        for shard in self.shards:
            if shard.name == shard_name:
                return shard.master
        return None


def format_ranges(ranges: Ranges) -> str:
    """``0-1023,2048-2559`` (the empty string for none), as ZooKeeper's weights spell it."""
    return ",".join(f"{start}-{end}" for start, end in ranges)


def slot_set(ranges: Ranges) -> set[int]:
    return {slot for start, end in ranges for slot in range(start, end + 1)}


def to_ranges(slots: set[int] | list[int]) -> Ranges:
    """Slots -> the fewest ascending ranges."""
    out: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if out and slot == out[-1][1] + 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return tuple(out)


def tiling_errors(ranges: list[tuple[str, int, int]], modulus: int) -> list[str]:
    """Problems with ``(label, start, end)`` ranges meant to cover 0..modulus-1 once."""
    errors = []
    for label, start, end in ranges:
        if not 0 <= start <= end < modulus:
            errors.append(f"{label}: range {start}-{end} is not within 0-{modulus - 1}")
    ordered = sorted(ranges, key=lambda r: (r[1], r[2]))
    expected = 0
    previous: tuple[str, int, int] | None = None
    for label, start, end in ordered:
        if start > expected:
            errors.append(f"slots {expected}-{start - 1} are not covered")
        elif start < expected and previous is not None:
            errors.append(
                f"ranges {previous[1]}-{previous[2]} ({previous[0]}) and "
                f"{start}-{end} ({label}) overlap"
            )
        if end + 1 > expected:
            expected, previous = end + 1, (label, start, end)
    if expected < modulus:
        errors.append(f"slots {expected}-{modulus - 1} are not covered")
    return errors


def build(
    shards: list[Shard], modulus: int, version: int = 0, source: str = "config",
    hash: str = "md5", distribution: str = "modula",
) -> RoutingTable:
    if not shards:
        raise TopologyError(["no shards"])
    errors = tiling_errors([(s.name, start, end) for s in shards for start, end in s.ranges],
                           modulus)
    for shard in shards:
        migration = shard.migration
        if migration is not None:
            if not all(any(a <= start and end <= b for a, b in shard.ranges)
                       for start, end in migration.slots):
                errors.append(f"{shard.name}: migrating slots {format_ranges(migration.slots)} "
                              f"are not all its own ({format_ranges(shard.ranges)})")
            if migration.target == shard.name or migration.target not in {
                    s.name for s in shards}:
                errors.append(f"{shard.name}: migration target {migration.target!r} is not "
                              "another shard")
    moving = [s.name for s in shards if s.migration is not None]
    if len(moving) > 1:
        errors.append(f"{', '.join(moving)}: one migration at a time, not {len(moving)}")
    if moving and distribution != "modula":
        errors.append(f"{moving[0]}: slots migrate only under modula, not {distribution}")
    if errors:
        raise TopologyError(errors)
    ordered = tuple(sorted(shards, key=lambda s: (s.first, s.name)))
    return RoutingTable(ordered, modulus, version, source, hash, distribution)
