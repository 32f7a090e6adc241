"""Which keys and slots take the requests: per-slot counters and a sampled top-K of keys.

``KeyLoad`` is what the routes' locator (``routing.distribution.locator``) feeds for every key
it places — the one hook on the request path for this:

* ``slots``: one counter per slot (modula pools with a slot list, e.g. the 4096 slots of a
  ZooKeeper pool), bumped for every key located: a 10-key MGET counts 10. A key located twice
  (a command queued in MULTI, checked when queued and routed at EXEC; a request held for a
  migration, routed again) counts twice. Fixed size: 4096 ints.
* every ``SAMPLE_EVERY``-th key on average (the gap drawn at random, so a client cycling
  through keys in a fixed order cannot hide one) goes to ``hot``, a Space-Saving summary
  (Metwally, Agrawal, El Abbadi 2005) of ``HOT_CAPACITY`` counters: whatever the number of
  distinct keys, it holds at most that many, and every key with more than 1/capacity of the
  samples is among them; a key's count overestimates its samples by at most its ``error``.
  Counts halve every ``HALF_LIFE`` seconds, so the summary says what is hot now.

The locator's cost per key when not sampling: one list increment and one countdown
(``benchmarks/micro.py -k route_get``). A sample costs a few dict operations.

Keys longer than ``MAX_KEY_BYTES`` are kept as their first bytes plus their length and a
digest of the whole key (two long keys with the same prefix stay two).

Pure: no I/O (a clock is read when sampling and reporting).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from random import getrandbits

SAMPLE_EVERY = 128  # keys located per key sampled, on average (a power of two)
HOT_CAPACITY = 64  # counters of the summary
HALF_LIFE = 60.0  # seconds after which every count is halved
MAX_KEY_BYTES = 128
SLOT_COUNTERS_LIMIT = 1 << 16  # modula pools with more slots keep no per-slot counters


@dataclass(frozen=True, slots=True)
class HotKey:
    key: bytes
    count: int  # samples (decayed) counted for it, at most ``error`` too many
    error: int

    def share(self, total: int) -> float:
        return self.count / total if total else 0.0


def kept_key(key: bytes) -> bytes:
    if len(key) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.blake2b(key, digest_size=4).hexdigest().encode()
    return key[:MAX_KEY_BYTES] + b"... (%d bytes, %s)" % (len(key), digest)


class SpaceSaving:
    """At most ``capacity`` counters; the key with the smallest count is replaced by a new one,
    which inherits that count (+1) as its count and the old count as its error.

    Counters are grouped by count (``buckets``: count -> keys in arrival order) so finding and
    moving the smallest costs O(1)."""

    __slots__ = ("capacity", "counts", "errors", "buckets", "minimum", "total")

    def __init__(self, capacity: int = HOT_CAPACITY):
        self.capacity = capacity
        self.counts: dict[bytes, int] = {}
        self.errors: dict[bytes, int] = {}
        self.buckets: dict[int, dict[bytes, None]] = {}
        self.minimum = 0
        self.total = 0  # samples taken (decayed as the counts are)

    def add(self, key: bytes) -> None:
        self.total += 1
        counts, buckets = self.counts, self.buckets
        count = counts.get(key)
        if count is None:
            if len(counts) < self.capacity:
                count, error = 0, 0
            else:  # replace the oldest of the smallest
                count = self.minimum
                victim = next(iter(buckets[count]))
                self._unfile(victim, count)
                del counts[victim], self.errors[victim]
                error = count
            self.errors[key] = error
        else:
            self._unfile(key, count)
        counts[key] = count + 1
        buckets.setdefault(count + 1, {})[key] = None
        if count == 0 or self.minimum not in buckets:  # the smallest moved up: it is this one
            self.minimum = count + 1

    def _unfile(self, key: bytes, count: int) -> None:
        bucket = self.buckets[count]
        del bucket[key]
        if not bucket:
            del self.buckets[count]

    def halve(self) -> None:
        """Every count (and error, and the total) halved; keys left at 0 are dropped."""
        kept = {key: count // 2 for key, count in self.counts.items() if count >= 2}
        self.errors = {key: self.errors[key] // 2 for key in kept}
        self.counts = kept
        self.buckets = {}
        for key, count in kept.items():
            self.buckets.setdefault(count, {})[key] = None
        self.minimum = min(self.buckets, default=0)
        self.total //= 2

    def top(self, n: int) -> list[HotKey]:
        ranked = sorted(self.counts.items(), key=lambda item: -item[1])[:n]
        return [HotKey(key, count, self.errors[key]) for key, count in ranked]


class KeyLoad:
    """One pool's per-slot counters and hot-key summary (see the module docstring)."""

    __slots__ = ("slots", "hot", "sample_every", "bits", "next_decay", "clock")

    def __init__(self, modulus: int, sample_every: int = SAMPLE_EVERY,
                 capacity: int = HOT_CAPACITY):
        if sample_every < 1 or sample_every & (sample_every - 1):
            raise ValueError(f"sample_every must be a power of two, not {sample_every}")
        self.slots = [0] * (modulus if modulus <= SLOT_COUNTERS_LIMIT else 0)
        self.hot = SpaceSaving(capacity)
        self.sample_every = sample_every
        self.bits = sample_every.bit_length()  # gaps of 1 + bits random bits: 1..2N
        self.clock = time.monotonic
        self.next_decay = self.clock() + HALF_LIFE

    def gap(self) -> int:
        """Keys to let pass before the next sample: 1..2N, N + 1/2 on average."""
        return 1 + getrandbits(self.bits)

    def sample(self, key: bytes) -> int:
        """Count ``key`` in the summary; return the gap to the next sample."""
        self._decay()
        self.hot.add(kept_key(key))
        return self.gap()

    def top(self, n: int) -> tuple[list[HotKey], int]:
        """The ``n`` hottest keys and the samples they are a share of."""
        self._decay()
        return self.hot.top(n), self.hot.total

    def _decay(self) -> None:
        now = self.clock()
        while now >= self.next_decay:  # at most a few turns: each moves it HALF_LIFE on
            self.hot.halve()
            self.next_decay += HALF_LIFE
            if not self.hot.total:
                self.next_decay = max(self.next_decay, now + HALF_LIFE)
