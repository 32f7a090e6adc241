"""hashing.py: md5 slots bit-exact with nutcracker (system.md §1). Placement against a real
nutcracker is in test_parity.py; these are the golden values and the hash-tag table."""

from __future__ import annotations

import hashlib

import pytest

from pyproxy.routing.hashing import hashed_part, make_slotter, md5_hash, slot_of


@pytest.mark.parametrize(
    "key, hashed, slot",
    [
        # md5("foo") = acbd18db...: bytes ac bd 18 db read little-endian = 0xdb18bdac
        (b"foo", 0xDB18BDAC, 3500),
        (b"bar", 421377335, 1335),
        (b"user1", 1591855396, 2340),
        (b"a", 3111502092, 268),
        (b"{user1}:a", 374055112, 200),  # no hash_tag: the whole key
        (b"\xff\x00", 2948589792, 2272),
        ("ключ".encode(), 1719363011, 1475),
        (b"x" * 20000, 4274442981, 741),
    ],
)
def test_golden_md5_slots(key: bytes, hashed: int, slot: int) -> None:
    assert md5_hash(key) == hashed
    assert slot_of(key) == slot
    assert make_slotter(None, 4096)(key) == slot
    assert make_slotter(None, 3000)(key) == hashed % 3000


def test_md5_is_the_first_four_digest_bytes_little_endian() -> None:
    for i in range(500):
        key = b"key:%d" % i
        d = hashlib.md5(key).digest()
        assert md5_hash(key) == d[0] | d[1] << 8 | d[2] << 16 | d[3] << 24


def test_empty_key_is_slot_zero_not_3540() -> None:
    pure = int.from_bytes(hashlib.md5(b"").digest()[:4], "little") % 4096
    assert pure == 3540  # what the plain rule would say
    assert md5_hash(b"") == 0
    assert slot_of(b"") == 0
    assert slot_of(b"", b"{}") == 0
    assert make_slotter(None, 4096)(b"") == 0
    assert make_slotter(b"{}", 4096)(b"") == 0
    assert make_slotter(None, 4096)(b"{}") == slot_of(b"{}")


# system.md §1, checked against nutcracker: what is hashed under hash_tag "{}".
HASH_TAG_TABLE = [
    (b"}{a}", b"a"),
    (b"{{a}}", b"{a"),
    (b"{{}}", b"{"),
    (b"a}b{c}d", b"c"),
    (b"{}", b"{}"),
    (b"a{}b", b"a{}b"),
    (b"{}{a}", b"{}{a}"),
    (b"{a", b"{a"),
    (b"a{b", b"a{b"),
    (b"{user1}:a", b"user1"),
    (b"x:{user1}", b"user1"),
    (b"{user1}{user2}", b"user1"),
    (b"plain", b"plain"),
    (b"", b""),
]


@pytest.mark.parametrize("key, part", HASH_TAG_TABLE)
def test_hash_tag_table(key: bytes, part: bytes) -> None:
    assert hashed_part(key, b"{}") == part
    assert slot_of(key, b"{}") == slot_of(part)
    assert make_slotter(b"{}", 4096)(key) == slot_of(part)
    assert make_slotter(b"{}", 1234)(key) == md5_hash(part) % 1234


@pytest.mark.parametrize("key, _part", HASH_TAG_TABLE)
def test_no_hash_tag_hashes_the_whole_key(key: bytes, _part: bytes) -> None:
    assert hashed_part(key, None) == key
    assert make_slotter(None, 4096)(key) == slot_of(key)


def test_other_tag_characters() -> None:
    assert hashed_part(b"user:<42>:name", b"<>") == b"42"
    assert hashed_part(b"a$b$c", b"$$") == b"b"  # same opening and closing character
    assert hashed_part(b"a$$c", b"$$") == b"a$$c"
    assert hashed_part(b"{x}", b"<>") == b"{x}"


def test_tagged_keys_share_a_slot() -> None:
    slotter = make_slotter(b"{}", 4096)
    slots = {slotter(b"{user1}:%d" % i) for i in range(200)}
    assert slots == {slot_of(b"user1")}
