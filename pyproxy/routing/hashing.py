"""Key -> hash: nutcracker 0.5's twelve key hashes, bit-exact, and the md5 slot fast path.

Invariants (checked against a real nutcracker 0.5 in tests/test_parity.py and
tests/test_parity_hashes.py):

* ``HASHES[name](key)`` is the uint32 nutcracker's ``hash: name`` gives ``key``, for every
  name nutcracker 0.5 knows (one_at_a_time, md5, crc16, crc32, crc32a, fnv1_64, fnv1a_64,
  fnv1_32, fnv1a_32, hsieh, murmur, jenkins).
* The empty key hashes to 0 under every hash (nutcracker's ``server_pool_hash`` special-cases
  it before calling the hash), so it lives wherever hash 0 lives.
* nutcracker reads key bytes as C ``char``, which is signed on x86 and amd64 (the Debian
  package tested here): where its code widens a byte to 32 or 64 bits before mixing it in
  (one_at_a_time, the four fnv hashes, hsieh's 3-byte tail) a byte >= 0x80 enters as
  0xffffff80..0xffffffff, and so it does here. (A nutcracker built where char is unsigned,
  e.g. arm64, hashes such keys differently; keys of ASCII bytes only hash alike everywhere.)
* ``md5_hash(key)`` is the first four digest bytes read as a little-endian uint32.
* With a hash tag ``ab`` the hashed part is the bytes strictly between the first ``a``
  and the first ``b`` after it, when that span is non-empty; otherwise the whole key.
* ``make_slotter(tag, modulus, hash)`` is ``key -> hash(hashed part) % modulus``; for md5 it
  inlines the hash so the hot path costs one call per key.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import zlib
from binascii import crc_hqx
from collections.abc import Callable
from hashlib import md5
from struct import Struct

try:  # CPython's built-in md5: half the per-call cost of OpenSSL's for short keys
    from _md5 import md5 as fast_md5  # (0.18 µs vs 0.36 µs per 16-byte key, measured here)
except ImportError:  # pragma: no cover - other interpreters
    fast_md5 = md5

unpack_uint32 = Struct("<I").unpack_from

__all__ = ["HASHES", "md5_hash", "hashed_part", "key_hash", "slot_of", "make_slotter"]

MASK = 0xFFFFFFFF
# A key byte as nutcracker's signed char widened to uint32: 0x80 -> 0xffffff80.
SIGNED = tuple(b if b < 0x80 else b | 0xFFFFFF00 for b in range(256))


def md5_hash(key: bytes) -> int:
    if not key:
        return 0
    return int(unpack_uint32(fast_md5(key).digest())[0])


def one_at_a_time(key: bytes) -> int:
    """Bob Jenkins' one-at-a-time hash (nc_one_at_a_time.c)."""
    value = 0
    for byte in key:
        value = ((value + SIGNED[byte]) * 1025) & MASK  # value += byte; value += value << 10
        value ^= value >> 6
    value = (value * 9) & MASK  # value += value << 3
    value ^= value >> 11
    return (value * 32769) & MASK  # value += value << 15


def crc16(key: bytes) -> int:
    """nutcracker's crc16: CRC-16/XMODEM whose register is a uint32 never cut to 16 bits.

    Its low 16 bits are the CRC of the whole key; each byte shifts the register left by 8, so
    bits 16-23 hold the high byte of the CRC of the key without its last byte, and bits 24-31
    the high byte of the CRC without its last two (``binascii.crc_hqx`` is CRC-16/XMODEM).
    """
    if not key:
        return 0
    but_two = crc_hqx(key[:-2], 0)
    but_one = crc_hqx(key[-2:-1], but_two)
    whole = crc_hqx(key[-1:], but_one)
    return whole | (but_one >> 8) << 16 | (but_two >> 8) << 24


def crc32a(key: bytes) -> int:
    """The standard CRC-32 (IEEE, reflected, as zlib computes it)."""
    return zlib.crc32(key)


def crc32(key: bytes) -> int:
    """libmemcached's crc32: 15 bits of the standard CRC-32 (its bits 16-30)."""
    return (zlib.crc32(key) >> 16) & 0x7FFF


# nutcracker's fnv1_64 and fnv1a_64 return the low 32 bits of a 64-bit FNV (fnv1_64) or run
# FNV-1a in 32 bits seeded with the low half of the 64-bit basis (fnv1a_64). Both reduce to
# 32-bit arithmetic with the low halves of the 64-bit basis and prime, since the low 32 bits
# of a product and of an xor depend only on the low 32 bits of their operands.
FNV64_BASIS, FNV64_PRIME = 0xCBF29CE484222325 & MASK, 0x100000001B3 & MASK
FNV32_BASIS, FNV32_PRIME = 2166136261, 16777619


def _fnv1(basis: int, prime: int) -> Callable[[bytes], int]:
    def fnv1(key: bytes) -> int:
        if not key:
            return 0
        value = basis
        for byte in key:
            value = ((value * prime) & MASK) ^ SIGNED[byte]
        return value

    return fnv1


def _fnv1a(basis: int, prime: int) -> Callable[[bytes], int]:
    def fnv1a(key: bytes) -> int:
        if not key:
            return 0
        value = basis
        for byte in key:
            value = ((value ^ SIGNED[byte]) * prime) & MASK
        return value

    return fnv1a


def hsieh(key: bytes) -> int:
    """Paul Hsieh's SuperFastHash as nutcracker has it (nc_hsieh.c): seeded with 0, not the
    key length, and its 3-byte tail widens the last byte as a signed char."""
    if not key:
        return 0
    value, rem, whole = 0, len(key) & 3, len(key) & ~3
    halves = Struct(f"<{whole // 2}H").unpack_from(key)
    for i in range(0, len(halves), 2):
        value = (value + halves[i]) & MASK
        value = ((value << 16) & MASK) ^ ((halves[i + 1] << 11) ^ value)
        value = (value + (value >> 11)) & MASK
    tail = key[whole:]
    if rem == 3:
        value = (value + (tail[0] | tail[1] << 8)) & MASK
        value ^= (value << 16) & MASK
        value ^= (SIGNED[tail[2]] << 18) & MASK
        value = (value + (value >> 11)) & MASK
    elif rem == 2:
        value = (value + (tail[0] | tail[1] << 8)) & MASK
        value ^= (value << 11) & MASK
        value = (value + (value >> 17)) & MASK
    elif rem == 1:
        value = (value + tail[0]) & MASK
        value ^= (value << 10) & MASK
        value = (value + (value >> 1)) & MASK
    value ^= (value << 3) & MASK
    value = (value + (value >> 5)) & MASK
    value ^= (value << 4) & MASK
    value = (value + (value >> 17)) & MASK
    value ^= (value << 25) & MASK
    return (value + (value >> 6)) & MASK


MURMUR_M = 0x5BD1E995


def murmur2(key: bytes, seed: int) -> int:
    """Austin Appleby's MurmurHash2 (32-bit, little-endian words)."""
    length = len(key)
    value = (seed ^ length) & MASK
    whole = length & ~3
    for word in Struct(f"<{whole // 4}I").unpack_from(key):
        word = (word * MURMUR_M) & MASK
        word ^= word >> 24
        value = ((value * MURMUR_M) & MASK) ^ ((word * MURMUR_M) & MASK)
    rem = length & 3
    if rem:
        if rem == 3:
            value ^= key[whole + 2] << 16
        if rem >= 2:
            value ^= key[whole + 1] << 8
        value = ((value ^ key[whole]) * MURMUR_M) & MASK
    value ^= value >> 13
    value = (value * MURMUR_M) & MASK
    return value ^ (value >> 15)


def murmur(key: bytes) -> int:
    """nutcracker's murmur: MurmurHash2 seeded with 0xdeadbeef times the key length."""
    if not key:
        return 0
    return murmur2(key, 0xDEADBEEF * len(key))


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & MASK


def lookup3(key: bytes, initval: int) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (little-endian: nutcracker's three read paths,
    by word, half-word and byte, all give this value there)."""
    length = len(key)
    a = b = c = (0xDEADBEEF + length + initval) & MASK
    if not length:
        return c
    blocks = (length + 11) // 12
    words = Struct(f"<{3 * blocks}I").unpack(key + bytes(12 * blocks - length))
    for i in range(0, 3 * (blocks - 1), 3):  # every block but the last: mix
        a, b, c = (a + words[i]) & MASK, (b + words[i + 1]) & MASK, (c + words[i + 2]) & MASK
        a = ((a - c) & MASK) ^ _rot(c, 4)
        c = (c + b) & MASK
        b = ((b - a) & MASK) ^ _rot(a, 6)
        a = (a + c) & MASK
        c = ((c - b) & MASK) ^ _rot(b, 8)
        b = (b + a) & MASK
        a = ((a - c) & MASK) ^ _rot(c, 16)
        c = (c + b) & MASK
        b = ((b - a) & MASK) ^ _rot(a, 19)
        a = (a + c) & MASK
        c = ((c - b) & MASK) ^ _rot(b, 4)
        b = (b + a) & MASK
    last = 3 * (blocks - 1)  # the last block, zero-padded: padding adds nothing
    a, b, c = (a + words[last]) & MASK, (b + words[last + 1]) & MASK, (c + words[last + 2]) & MASK
    c = ((c ^ b) - _rot(b, 14)) & MASK
    a = ((a ^ c) - _rot(c, 11)) & MASK
    b = ((b ^ a) - _rot(a, 25)) & MASK
    c = ((c ^ b) - _rot(b, 16)) & MASK
    a = ((a ^ c) - _rot(c, 4)) & MASK
    b = ((b ^ a) - _rot(a, 14)) & MASK
    return ((c ^ b) - _rot(b, 24)) & MASK


def jenkins(key: bytes) -> int:
    """nutcracker's jenkins: lookup3 hashlittle with initval 13."""
    if not key:
        return 0
    return lookup3(key, 13)


HASHES: dict[str, Callable[[bytes], int]] = {
    "one_at_a_time": one_at_a_time,
    "md5": md5_hash,
    "crc16": crc16,
    "crc32": crc32,
    "crc32a": crc32a,
    "fnv1_64": _fnv1(FNV64_BASIS, FNV64_PRIME),
    "fnv1a_64": _fnv1a(FNV64_BASIS, FNV64_PRIME),
    "fnv1_32": _fnv1(FNV32_BASIS, FNV32_PRIME),
    "fnv1a_32": _fnv1a(FNV32_BASIS, FNV32_PRIME),
    "hsieh": hsieh,
    "murmur": murmur,
    "jenkins": jenkins,
}


def hashed_part(key: bytes, hash_tag: bytes | None) -> bytes:
    """The part of ``key`` that is hashed under ``hash_tag`` (two bytes, or None)."""
    if hash_tag is None:
        return key
    start = key.find(hash_tag[0:1])
    if start < 0:
        return key
    end = key.find(hash_tag[1:2], start + 1)
    if end <= start + 1:  # not found (-1) or nothing between the two characters
        return key
    return key[start + 1 : end]


def key_hash(name: str, hash_tag: bytes | None) -> Callable[[bytes], int]:
    """``key -> HASHES[name](hashed part of key)``."""
    function = HASHES[name]
    if hash_tag is None:
        return function
    return lambda key: function(hashed_part(key, hash_tag))


def slot_of(key: bytes, hash_tag: bytes | None = None, modulus: int = 4096) -> int:
    return md5_hash(hashed_part(key, hash_tag)) % modulus


def make_slotter(hash_tag: bytes | None, modulus: int,
                 hash_name: str = "md5") -> Callable[[bytes], int]:
    """Return the fastest ``key -> slot`` function for a pool's settings.

    The tag-less md5 variant inlines ``md5_hash`` so the hot path costs one call per key.
    """
    if hash_name == "md5" and hash_tag is None:
        def slot_plain(key: bytes) -> int:
            if not key:
                return 0
            return unpack_uint32(fast_md5(key).digest())[0] % modulus

        return slot_plain
    hashed = key_hash(hash_name, hash_tag)
    return lambda key: hashed(key) % modulus
