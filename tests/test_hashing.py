"""hashing.py: md5 slots bit-exact with nutcracker (system.md §1), and nutcracker's other
hashes. Placement against a real nutcracker is in test_parity.py and test_parity_hashes.py;
these are the golden values, published test vectors, references written out plainly, and the
hash-tag table."""

from __future__ import annotations

import hashlib

import pytest

from pyproxy import config
from pyproxy.routing import hashing
from pyproxy.routing.hashing import HASHES, hashed_part, make_slotter, md5_hash, slot_of

M32 = 0xFFFFFFFF
SAMPLES = [b"a", b"ab", b"abc", b"abcd", b"abcde", b"key:12345", b"\x00", b"\x80", b"\xff\xfe\xfd",
           "ключ:鍵🔑".encode(), bytes(range(256)), b"x" * 1000, b"{user1}:a"]


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


# --- nutcracker's other hashes -------------------------------------------------------------


def test_every_hash_config_accepts_is_implemented() -> None:
    assert tuple(HASHES) == config.HASHES


@pytest.mark.parametrize("name", config.HASHES)
def test_every_hash_gives_the_empty_key_0_and_a_uint32(name: str) -> None:
    assert HASHES[name](b"") == 0  # nutcracker's server_pool_hash, before any hash
    assert all(0 <= HASHES[name](key) <= M32 for key in SAMPLES)


@pytest.mark.parametrize(("name", "key", "value"), [
    ("crc32a", b"123456789", 0xCBF43926),  # the CRC-32 check value
    ("crc32", b"123456789", (0xCBF43926 >> 16) & 0x7FFF),
    ("fnv1_32", b"a", 0x050C5D7E),  # FNV's published values
    ("fnv1a_32", b"a", 0xE40C292C),
    ("fnv1a_32", b"foobar", 0xBF9CF968),
    ("fnv1_32", b"foobar", 0x31F0B262),
    ("one_at_a_time", b"a", 0xCA2E9442),
])
def test_published_values(name: str, key: bytes, value: int) -> None:
    assert HASHES[name](key) == value


def test_lookup3_published_values_and_jenkins_initval() -> None:
    # lookup3.c's driver5: hashlittle("Four score and seven years ago", 30, 0 / 1)
    assert hashing.lookup3(b"Four score and seven years ago", 0) == 0x17770551
    assert hashing.lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    assert hashing.lookup3(b"", 0) == 0xDEADBEEF
    for key in SAMPLES:
        assert HASHES["jenkins"](key) == hashing.lookup3(key, 13)


def _xmodem_entry(index: int) -> int:
    crc = index << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def crc16_as_nutcracker(key: bytes) -> int:
    """nc_crc16.c's loop written out: a uint32 register, a CRC-16/XMODEM table."""
    crc = 0
    for byte in key:
        crc = ((crc << 8) & M32) ^ _xmodem_entry(((crc >> 8) ^ byte) & 0xFF)
    return crc


def crc32_bitwise(key: bytes) -> int:
    crc = M32
    for byte in key:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ M32


def test_crc16_keeps_nutcrackers_32_bit_register() -> None:
    assert crc16_as_nutcracker(b"123456789") & 0xFFFF == 0x31C3  # the XMODEM check value
    for key in SAMPLES:
        assert HASHES["crc16"](key) == crc16_as_nutcracker(key)
    assert any(HASHES["crc16"](key) > 0xFFFF for key in SAMPLES)


def test_crc32_variants_against_a_bitwise_crc() -> None:
    for key in SAMPLES:
        assert HASHES["crc32a"](key) == crc32_bitwise(key)
        assert HASHES["crc32"](key) == (crc32_bitwise(key) >> 16) & 0x7FFF


def signed(byte: int, bits: int) -> int:
    """A C (signed) char widened to ``bits`` bits."""
    return byte | ((1 << bits) - 0x100) if byte >= 0x80 else byte


def test_fnv_64_hashes_are_their_64_bit_definitions_cut_to_32_bits() -> None:
    m64 = (1 << 64) - 1
    for key in SAMPLES:
        value = 0xCBF29CE484222325
        for byte in key:  # fnv1_64: 64-bit multiply, then xor the sign-extended byte
            value = ((value * 0x100000001B3) & m64) ^ signed(byte, 64)
        assert HASHES["fnv1_64"](key) == value & M32
        value32 = 0xCBF29CE484222325 & M32
        for byte in key:  # fnv1a_64: 32-bit state and prime, as nc_fnv.c declares them
            value32 = ((value32 ^ signed(byte, 32)) * (0x100000001B3 & M32)) & M32
        assert HASHES["fnv1a_64"](key) == value32


def test_bytes_above_0x7f_enter_as_signed_chars() -> None:
    assert HASHES["fnv1a_32"](b"\x80") == ((2166136261 ^ 0xFFFFFF80) * 16777619) & M32
    assert HASHES["fnv1_32"](b"\xff") == ((2166136261 * 16777619) & M32) ^ 0xFFFFFFFF
    value = ((0 + 0xFFFFFF80) * 1025) & M32  # one_at_a_time's first round for 0x80
    value ^= value >> 6
    value = (value * 9) & M32
    value ^= value >> 11
    assert HASHES["one_at_a_time"](b"\x80") == (value * 32769) & M32


def test_murmur_is_murmurhash2_seeded_by_length() -> None:
    for key in SAMPLES:
        assert HASHES["murmur"](key) == hashing.murmur2(key, (0xDEADBEEF * len(key)) & M32)
    assert hashing.murmur2(b"", 0) == 0


@pytest.mark.parametrize("name", config.HASHES)
def test_make_slotter_and_key_hash_apply_the_tag(name: str) -> None:
    for key in SAMPLES:
        part = hashed_part(key, b"{}")
        assert hashing.key_hash(name, b"{}")(key) == HASHES[name](part)
        assert make_slotter(b"{}", 3000, name)(key) == HASHES[name](part) % 3000
        assert make_slotter(None, 4096, name)(key) == HASHES[name](key) % 4096
