"""distribution.py: nutcracker's ketama ring, modula continuum and random choice, as pure
functions. Against a real nutcracker: test_parity_hashes.py."""

from __future__ import annotations

import hashlib
import struct
from collections import Counter

import pytest

from pyproxy.routing import distribution
from pyproxy.routing import table as routing
from pyproxy.routing.distribution import ketama_points, ketama_share, locator
from pyproxy.routing.hashing import HASHES, md5_hash

KEYS = [b"k:%d" % i for i in range(3000)]


def weighted_table(weights: list[tuple[str, int]], dist: str, hash_name: str = "md5"
                   ) -> routing.RoutingTable:
    shards, start = [], 0
    for name, weight in weights:
        shards.append(routing.Shard.of(name, start, start + weight - 1, f"127.0.0.1:{start + 1}"))
        start += weight
    return routing.build(shards, start, hash=hash_name, distribution=dist)


@pytest.mark.parametrize(("weight", "total", "servers", "points"), [
    (1, 3, 3, 160),  # equal weights: 160 points each (40 digests of 4)
    (1, 1, 1, 160),
    (7, 11, 3, 4 * 76),  # 7/11 * 40 * 3 = 76.36
    (1, 11, 3, 4 * 10),  # 10.909: floored
    (100000, 100001, 2, 4 * 79),  # twemproxy's omega pool: 79.9992 -> 79
    (1, 100001, 2, 0),  # a server too light for one digest gets no point at all
])
def test_ketama_share(weight: int, total: int, servers: int, points: int) -> None:
    assert ketama_share(weight, total, servers) == points


def test_ketama_points_are_the_md5_words_of_name_dash_n() -> None:
    values, owners = ketama_points([("b", 1), ("127.0.0.1:6379", 2)])
    assert len(values) == len(owners) == 4 * 26 + 4 * 53  # 1/3 and 2/3 of 2 x 40 digests
    assert values == sorted(values)
    expected = []
    for index, (name, groups) in enumerate([("b", 26), ("127.0.0.1:6379", 53)]):
        for n in range(groups):
            for word in struct.unpack("<4I", hashlib.md5(f"{name}-{n}".encode()).digest()):
                expected.append((word, index))
    assert sorted(expected) == sorted(zip(values, owners, strict=True))


def test_ketama_key_goes_to_the_first_point_at_or_after_its_hash_wrapping() -> None:
    table = weighted_table([("a", 1), ("b", 1), ("c", 1)], "ketama")
    values, owners = ketama_points(distribution.weights(table))
    locate = locator(table, ["a", "b", "c"], None)
    wrapped = 0
    for key in KEYS:
        hashed = md5_hash(key)
        after = [i for i, v in enumerate(values) if v >= hashed]
        assert locate(key) == "abc"[owners[after[0]] if after else owners[0]]
        wrapped += not after
    assert wrapped > 0  # some keys hash past the last point: the ring wraps
    assert locate(b"") == "abc"[owners[0]]  # hash 0: the first point


def test_ketama_spreads_keys_by_weight() -> None:
    table = weighted_table([("a", 3), ("b", 1)], "ketama", "md5")
    counts = Counter(locator(table, ["a", "b"], None)(key) for key in KEYS)
    assert 0.65 < counts["a"] / len(KEYS) < 0.85


def test_modula_over_many_slots_bisects_to_the_same_owner() -> None:
    weights = [("a", 70000), ("b", 5), ("c", 30000)]
    table = weighted_table(weights, "modula", "crc32a")
    assert table.modulus > distribution.SLOT_LIST_LIMIT
    locate = locator(table, ["a", "b", "c"], None)
    for key in KEYS:
        slot = HASHES["crc32a"](key) % table.modulus
        assert locate(key) == ("a" if slot < 70000 else "b" if slot < 70005 else "c")


def test_random_ignores_key_and_weights() -> None:
    table = weighted_table([("a", 7), ("b", 3), ("c", 1)], "random")
    locate = locator(table, ["a", "b", "c"], None)
    counts = Counter(locate(b"the same key") for _ in range(3000))
    assert all(800 < counts[name] < 1200 for name in "abc"), counts


def test_locator_checks_its_inputs() -> None:
    table = weighted_table([("a", 1), ("b", 1)], "ketama")
    with pytest.raises(ValueError, match="1 endpoints for 2 shards"):
        locator(table, ["a"], None)
    odd = routing.RoutingTable(table.shards, table.modulus, distribution="consistent")
    with pytest.raises(ValueError, match="unknown distribution 'consistent'"):
        locator(odd, ["a", "b"], None)
