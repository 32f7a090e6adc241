"""Keys chosen by the slot they hash to (md5, 4096 slots), e.g. for two-shard pools
(0-2047, 2048-4095)."""

from __future__ import annotations

from pyproxy.routing.hashing import slot_of

SHARD_SLOTS = ((0, 2047), (2048, 4095))


def keys_for_shard(shard: int, count: int, prefix: str = "k") -> list[str]:
    """The first ``count`` keys ``<prefix><i>`` whose slot belongs to ``shard`` (0 or 1)."""
    return keys_in_slots(*SHARD_SLOTS[shard], count, prefix)


def keys_in_slots(first: int, last: int, count: int, prefix: str = "k") -> list[str]:
    """The first ``count`` keys ``<prefix><i>`` whose slot is within ``first..last``."""
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"{prefix}{i}"
        if first <= slot_of(key.encode()) <= last:
            keys.append(key)
        i += 1
    return keys
