#!/usr/bin/env python3
"""Microbenchmarks of pyproxy's pure hot-path pieces: parse, hash, route, split/merge, framing.

    python benchmarks/micro.py [-k SUBSTRING] [--time SECONDS]    # timeit, prints µs per op
    pytest benchmarks/micro.py --benchmark-only                  # the same cases, pytest-benchmark

No servers, no sockets: each case calls one pure function on fixed input. A case whose API has
changed reports its error instead of stopping the others.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyproxy.observe import hotkeys  # noqa: E402
from pyproxy.protocol import commands, resp  # noqa: E402
from pyproxy.proxy import fanout  # noqa: E402
from pyproxy.routing import hashing  # noqa: E402
from pyproxy.routing import table as routing  # noqa: E402
from pyproxy.routing.routes import Routes  # noqa: E402

SLOTS = 4096


@dataclass(frozen=True)
class Case:
    name: str
    ops: int  # operations (commands, keys, replies) per call, for the per-op column
    unit: str
    make: Callable[[], Callable[[], object]]  # builds the inputs, returns the timed call


def _keys(n: int, start: int = 12345) -> list[bytes]:
    return [b"key:%012d" % (start + 7919 * i) for i in range(n)]


def _slotter() -> Callable[[bytes], int]:
    return hashing.make_slotter(None, SLOTS)


# ------------------------------------------------------------------ parse (client -> proxy)


def parse_16_sets() -> Callable[[], object]:
    data = b"".join(resp.encode_command([b"SET", k, b"xxx"]) for k in _keys(16))
    parser = resp.RequestParser()
    assert len(parser.feed(data)) == 16
    return lambda: parser.feed(data)


def parse_1_get() -> Callable[[], object]:
    data = resp.encode_command([b"GET", _keys(1)[0]])
    parser = resp.RequestParser()
    assert len(parser.feed(data)) == 1
    return lambda: parser.feed(data)


def parse_mget_10() -> Callable[[], object]:
    data = resp.encode_command([b"MGET", *_keys(10)])
    parser = resp.RequestParser()
    assert len(parser.feed(data)) == 1
    return lambda: parser.feed(data)


# ------------------------------------------------------------------ hash + route


def slot_1_key() -> Callable[[], object]:
    slot = _slotter()
    key = _keys(1)[0]
    return lambda: slot(key)


def slot_10_keys() -> Callable[[], object]:
    slot = _slotter()
    keys = _keys(10)

    def run() -> object:
        for k in keys:
            slot(k)
        return None

    return run


def _hash_10_keys(name: str) -> Callable[[], Callable[[], object]]:
    """nutcracker hash ``name`` over ten 16-byte keys (the unit is one key)."""
    def make() -> Callable[[], object]:
        function = hashing.HASHES[name]
        keys = _keys(10)

        def run() -> object:
            for k in keys:
                function(k)
            return None

        return run

    return make


def route_get_ketama() -> Callable[[], object]:
    """Command lookup + key -> fnv1a_64 -> ketama ring -> endpoint (twemproxy's defaults)."""
    table = routing.build(
        [routing.Shard.of(f"127.0.0.1:{6379 + i}", i, i, f"127.0.0.1:{6379 + i}")
         for i in range(4)],
        4, hash="fnv1a_64", distribution="ketama")
    return _locate_one(Routes(table, [shard.name for shard in table.shards], None))


def _table() -> routing.RoutingTable:
    return routing.build(
        [routing.Shard.of("redis-0000", 0, 2047, "127.0.0.1:6379"),
         routing.Shard.of("redis-0001", 2048, 4095, "127.0.0.1:6380")],
        SLOTS,
    )


def _routes() -> Routes[str]:
    table = _table()
    return Routes(table, [shard.name for shard in table.shards], None)


def route_get() -> Callable[[], object]:
    """Command lookup + key -> slot -> shard endpoint, as for one GET."""
    return _locate_one(_routes())


def _locate_one(routes: Routes[str]) -> Callable[[], object]:
    """A GET's command lookup + ``routes.locate`` of one key, again and again."""
    lookup = commands.lookup
    args = [b"GET", _keys(1)[0]]

    def run() -> object:
        cmd = lookup(args[0])
        assert cmd is not None
        return routes.locate(args[1])

    return run


def _locate_distinct(routes: Routes[str]) -> Callable[[], object]:
    """A GET's command lookup + ``routes.locate`` over 4096 distinct keys in turn."""
    lookup = commands.lookup
    keys = _keys(4096)
    turn = iter(range(1 << 62))

    def run() -> object:
        key = keys[next(turn) & 4095]
        cmd = lookup(b"GET")
        assert cmd is not None
        return routes.locate(key)

    return run


def route_get_counted() -> Callable[[], object]:
    """``route_get`` with the pool's ``KeyLoad``: the per-slot counter and the hot-key
    countdown every key pays, and the sample one key in SAMPLE_EVERY pays (distinct keys)."""
    table = _table()
    return _locate_distinct(Routes(table, [shard.name for shard in table.shards], None,
                                   load=hotkeys.KeyLoad(SLOTS)))


def route_get_distinct() -> Callable[[], object]:
    """``route_get`` over the same 4096 distinct keys without a load: ``route_get_counted``'s
    baseline."""
    return _locate_distinct(_routes())


def hotkeys_sample() -> Callable[[], object]:
    """One sample into a full Space-Saving summary of distinct keys (an eviction each)."""
    load = hotkeys.KeyLoad(SLOTS)
    keys = _keys(4096)
    for key in keys[:256]:
        load.sample(key)
    turn = iter(range(1 << 62))
    return lambda: load.sample(keys[next(turn) & 4095])


# ------------------------------------------------------------------ split / merge (MGET)


def _mget_setup() -> tuple[list[bytes], list[int], Callable[[bytes], str]]:
    """MGET of 10 keys grouped the way the executor does it: by the routes' endpoints."""
    args = [b"MGET", *_keys(10)]
    positions = list(range(1, 11))
    return args, positions, _routes().locate


def _shard_replies(groups: list) -> list[bytes]:
    return [resp.array([resp.bulk(b"xxx") for _ in indexes]) for _, _, indexes in groups]


def split_plan_mget_10() -> Callable[[], object]:
    args, positions, shard_of = _mget_setup()
    groups = fanout.plan(args, positions, 1, shard_of)
    assert len(groups) == 2, "the 10 keys should span both shards"
    return lambda: fanout.plan(args, positions, 1, shard_of)


def merge_mget_10() -> Callable[[], object]:
    args, positions, shard_of = _mget_setup()
    groups = fanout.plan(args, positions, 1, shard_of)
    replies = _shard_replies(groups)
    places = [indexes for _, _, indexes in groups]
    merge = fanout.MERGES["array"]
    expected = resp.array([resp.bulk(b"xxx")] * 10)
    assert merge.combine(replies, places, 10) == expected
    return lambda: merge.combine(replies, places, 10)


def split_merge_mget_10() -> Callable[[], object]:
    """plan (which frames each shard's part) + the MGET merge: the MGET path minus I/O."""
    args, positions, shard_of = _mget_setup()
    groups = fanout.plan(args, positions, 1, shard_of)
    replies = _shard_replies(groups)
    merge = fanout.MERGES["array"]

    def run() -> object:
        g = fanout.plan(args, positions, 1, shard_of)
        return merge.combine(replies, [indexes for _, _, indexes in g], 10)

    return run


# ------------------------------------------------------------------ reply framing (from redis)


def reply_end_ok() -> Callable[[], object]:
    buf = resp.OK
    return lambda: resp.reply_end(buf, 0)


def reply_end_bulk() -> Callable[[], object]:
    buf = resp.bulk(b"xxx")
    return lambda: resp.reply_end(buf, 0)


def reply_end_16_pipelined() -> Callable[[], object]:
    """Find 16 reply boundaries in one read, as a -P 16 GET burst arrives."""
    buf = resp.bulk(b"xxx") * 16
    reply_end = resp.reply_end

    def run() -> object:
        pos = 0
        while pos < len(buf):
            pos = reply_end(buf, pos)
        return pos

    return run


def reply_end_mget_10() -> Callable[[], object]:
    buf = resp.array([resp.bulk(b"xxx")] * 10)
    assert resp.reply_end(buf, 0) == len(buf)
    return lambda: resp.reply_end(buf, 0)


def reply_end_lrange_100() -> Callable[[], object]:
    buf = resp.array([resp.bulk(b"xxx")] * 100)
    return lambda: resp.reply_end(buf, 0)


def _scan(buf: bytes, replies: int) -> Callable[[], object]:
    """What a backend connection does with one read holding ``replies`` whole replies."""
    scanner = resp.ReplyScanner()
    assert len(scanner.feed(buf)) == replies
    return lambda: scanner.feed(buf)


def scan_ok() -> Callable[[], object]:
    return _scan(resp.OK, 1)


def scan_bulk() -> Callable[[], object]:
    return _scan(resp.bulk(b"xxx"), 1)


def scan_16_pipelined() -> Callable[[], object]:
    return _scan(resp.bulk(b"xxx") * 16, 16)


def scan_mget_10() -> Callable[[], object]:
    return _scan(resp.array([resp.bulk(b"xxx")] * 10), 1)


def scan_lrange_100() -> Callable[[], object]:
    return _scan(resp.array([resp.bulk(b"xxx")] * 100), 1)


# ------------------------------------------------------------------ request framing (to redis)


def encode_get() -> Callable[[], object]:
    args = [b"GET", _keys(1)[0]]
    return lambda: resp.encode_command(args)


def encode_set() -> Callable[[], object]:
    args = [b"SET", _keys(1)[0], b"xxx"]
    return lambda: resp.encode_command(args)


def encode_mget_5() -> Callable[[], object]:
    args = [b"MGET", *_keys(5)]
    return lambda: resp.encode_command(args)


CASES: tuple[Case, ...] = (
    Case("parse_16_sets", 16, "cmd", parse_16_sets),
    Case("parse_1_get", 1, "cmd", parse_1_get),
    Case("parse_mget_10", 1, "cmd", parse_mget_10),
    Case("slot_1_key", 1, "key", slot_1_key),
    Case("slot_10_keys", 10, "key", slot_10_keys),
    Case("route_get", 1, "cmd", route_get),
    Case("route_get_ketama", 1, "cmd", route_get_ketama),
    Case("route_get_distinct", 1, "cmd", route_get_distinct),
    Case("route_get_counted", 1, "cmd", route_get_counted),
    Case("hotkeys_sample", 1, "sample", hotkeys_sample),
    *(Case(f"hash_{name}", 10, "key", _hash_10_keys(name)) for name in hashing.HASHES),
    Case("split_plan_mget_10", 1, "cmd", split_plan_mget_10),
    Case("merge_mget_10", 1, "cmd", merge_mget_10),
    Case("split_merge_mget_10", 1, "cmd", split_merge_mget_10),
    Case("reply_end_ok", 1, "reply", reply_end_ok),
    Case("reply_end_bulk", 1, "reply", reply_end_bulk),
    Case("reply_end_16_pipelined", 16, "reply", reply_end_16_pipelined),
    Case("reply_end_mget_10", 1, "reply", reply_end_mget_10),
    Case("reply_end_lrange_100", 1, "reply", reply_end_lrange_100),
    Case("scan_ok", 1, "reply", scan_ok),
    Case("scan_bulk", 1, "reply", scan_bulk),
    Case("scan_16_pipelined", 16, "reply", scan_16_pipelined),
    Case("scan_mget_10", 1, "reply", scan_mget_10),
    Case("scan_lrange_100", 1, "reply", scan_lrange_100),
    Case("encode_get", 1, "cmd", encode_get),
    Case("encode_set", 1, "cmd", encode_set),
    Case("encode_mget_5", 1, "cmd", encode_mget_5),
)


# ------------------------------------------------------------------ pytest-benchmark entry points


def _pytest_case(case: Case) -> Callable[..., None]:
    def test(benchmark) -> None:  # type: ignore[no-untyped-def]
        benchmark.extra_info["ops_per_call"] = case.ops
        benchmark(case.make())

    test.__name__ = f"test_{case.name}"
    return test


for _case in CASES:
    globals()[f"test_{_case.name}"] = _pytest_case(_case)


# ------------------------------------------------------------------ standalone


def measure(fn: Callable[[], object], seconds: float, repeat: int = 5) -> float:
    """Best seconds per call over ``repeat`` rounds of about ``seconds`` / ``repeat`` each."""
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()  # total >= 0.2 s
    per_round = max(seconds / repeat, 0.01)
    number = max(1, int(number * per_round / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", default="", help="only the cases whose name contains this")
    p.add_argument("--time", type=float, default=0.25,
                   help="seconds of timing per case (default 0.25)")
    p.add_argument("--interleave", type=int, default=1, metavar="N",
                   help="measure the chosen cases in turn N times, each keeping its best: "
                        "on a busy machine, cases compared this way share its noise")
    args = p.parse_args(argv)
    print(f"python {sys.version.split()[0]}; best of {5 * args.interleave} rounds")
    print(f"{'case':<24} {'µs/call':>9} {'ops/call':>8} {'µs/op':>8}  unit")
    failed = 0
    chosen = []
    for case in CASES:
        if args.k not in case.name:
            continue
        try:
            chosen.append((case, case.make()))
        except Exception as e:  # an API changed under us: report and go on
            failed += 1
            print(f"{case.name:<24} error: {type(e).__name__}: {e}")
    best = {case.name: float("inf") for case, _ in chosen}
    for _ in range(max(1, args.interleave)):
        for case, call in chosen:
            best[case.name] = min(best[case.name], measure(call, args.time / args.interleave))
    for case, _ in chosen:
        us = best[case.name] * 1e6
        print(f"{case.name:<24} {us:9.3f} {case.ops:8d} {us / case.ops:8.3f}  {case.unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
