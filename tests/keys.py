"""Keys chosen by the shard they hash to, for tests of two-shard pools (0-2047, 2048-4095)."""

from __future__ import annotations

from pyproxy.routing.hashing import slot_of

SHARD_SLOTS = ((0, 2047), (2048, 4095))


def keys_for_shard(shard: int, count: int, prefix: str = "k") -> list[str]:
    """The first ``count`` keys ``<prefix><i>`` whose slot belongs to ``shard`` (0 or 1)."""
    lo, hi = SHARD_SLOTS[shard]
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"{prefix}{i}"
        if lo <= slot_of(key.encode()) <= hi:
            keys.append(key)
        i += 1
    return keys
