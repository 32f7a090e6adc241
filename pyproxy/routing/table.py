"""Immutable routing tables: which shard owns which slots, and who its master is.

A ``RoutingTable`` is what the configuration or ZooKeeper says the cluster looks like — shard
names, slot ranges, master and replica addresses, and how keys are placed on the shards (the
pool's ``hash`` and ``distribution``, see ``distribution``). It is built once, validated, and
never changed: a topology change builds a new one, from which the proxy builds its ``Routes``
(``routes``) and swaps them in whole.

Invariants checked by ``build``: shard ranges tile ``0..modulus-1`` exactly once. A shard
may have no master (``master is None``) — its keys then get a prompt error. Under modula the
ranges are where the keys go (slot = hash % modulus); under ketama and random they only carry
each shard's weight (its range's length), the shards in nutcracker's server order.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


class TopologyError(Exception):
    """An invalid table; ``.errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Shard:
    name: str
    start: int
    end: int  # inclusive
    master: str | None  # "host:port"
    replicas: tuple[str, ...] = ()


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
    errors = tiling_errors([(s.name, s.start, s.end) for s in shards], modulus)
    if errors:
        raise TopologyError(errors)
    ordered = tuple(sorted(shards, key=lambda s: s.start))
    return RoutingTable(ordered, modulus, version, source, hash, distribution)
