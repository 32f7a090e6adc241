#!/usr/bin/env python3
"""Framing cost as the input grows 10x and 100x: it must stay flat per byte and per element.

    python benchmarks/framing.py [--baseline PATH] [--quick]

In-process, no sockets. Each case feeds one big input in reads of a fixed size to the code
the proxy runs on it, and prints the time per byte and per element:

* ``reply lrange``   an LRANGE reply of N elements (``$10 value:NNNN``-like bulks) in 4 KB
  reads, through ``backend.Connection.on_data`` with one request waiting for it;
* ``reply pipeline`` N short replies (``$3 xxx``, a pipelined GET burst) in 4 KB reads,
  through ``Connection.on_data`` with N requests waiting;
* ``request pipeline`` N ``SET key value`` requests in 1 KB reads, through
  ``RequestParser.feed``;
* ``request mset``   one ``MSET`` of N arguments in 4 KB reads, through ``RequestParser.feed``.

With ``--baseline PATH`` the same cases also run against the pyproxy code of the checkout
PATH (e.g. ``git worktree add /tmp/before HEAD~3``), each code base in its own child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("PYPROXY_FROM") or str(REPO))

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000)


class Waiter:
    __slots__ = ("raw",)

    def __init__(self) -> None:
        self.raw: bytes | None = None

    def settle(self, raw: bytes) -> None:
        if self.raw is None:
            self.raw = raw


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _connection_feed(reply_bytes: bytes, replies: int, read: int) -> Callable[[], float]:
    """Seconds for one backend connection to take ``reply_bytes`` in ``read``-byte reads,
    ``replies`` requests waiting (as if written)."""
    from pyproxy.config import parse
    from pyproxy.observe.stats import PoolStats
    from pyproxy.proxy.backend import Backend, Connection

    settings = parse("alpha:\n  listen: 127.0.0.1:1\n  hash: md5\n  distribution: modula\n"
                     "  redis: true\n  servers:\n   - 127.0.0.1:2:0-4095\n").pools[0]
    chunks = _chunks(reply_bytes, read)

    async def run() -> float:
        connection = Connection(Backend("127.0.0.1:2", settings, PoolStats()))
        waiters = [Waiter() for _ in range(replies)]
        connection.fifo.extend(waiters)
        connection.sent.extend([0.0] * replies)
        started = time.perf_counter()
        for chunk in chunks:
            connection.on_data(chunk)
        elapsed = time.perf_counter() - started
        assert all(w.raw is not None for w in waiters), "a reply was not found"
        return elapsed

    return lambda: asyncio.run(run())


def _parser_feed(request_bytes: bytes, commands: int, read: int) -> Callable[[], float]:
    from pyproxy.protocol.resp import RequestParser

    chunks = _chunks(request_bytes, read)

    def run() -> float:
        parser = RequestParser()
        started = time.perf_counter()
        got = 0
        for chunk in chunks:
            got += len(parser.feed(chunk))
        elapsed = time.perf_counter() - started
        assert got == commands, (got, commands)
        return elapsed

    return run


def case(name: str, n: int) -> tuple[int, int, Callable[[], float]]:
    """(bytes, elements, timed run) of one case at size ``n``."""
    from pyproxy.protocol import resp

    if name == "reply lrange":
        data = resp.array([resp.bulk(b"value:%04d" % (i % 10_000)) for i in range(n)])
        return len(data), n, _connection_feed(data, 1, 4096)
    if name == "reply pipeline":
        data = resp.bulk(b"xxx") * n
        return len(data), n, _connection_feed(data, n, 4096)
    if name == "request pipeline":
        data = b"".join(resp.encode_command([b"SET", b"key:%012d" % i, b"xxx"])
                        for i in range(n))
        return len(data), n, _parser_feed(data, n, 1024)
    if name == "request mset":
        data = resp.encode_command([b"MSET", *(b"k%d" % i for i in range(n))])
        return len(data), n, _parser_feed(data, 1, 4096)
    raise ValueError(name)


CASES = ("reply lrange", "reply pipeline", "request pipeline", "request mset")


def measure(sizes: tuple[int, ...], budget: float) -> list[dict]:
    """Best of up to 3 runs per case and size (fewer when one run takes over ``budget`` s)."""
    rows = []
    for name in CASES:
        for n in sizes:
            size, elements, run = case(name, n)
            best = run()
            for _ in range(2):
                if best > budget:
                    break
                best = min(best, run())
            rows.append({"case": name, "n": n, "bytes": size, "seconds": best,
                         "ns_per_byte": best / size * 1e9, "us_per_element": best / elements * 1e6})
    return rows


def _child(path: Path | None, sizes: tuple[int, ...], budget: float) -> list[dict]:
    env = dict(os.environ)
    env["PYPROXY_FROM"] = str(path or REPO)
    done = subprocess.run([sys.executable, __file__, "--child", ",".join(map(str, sizes)),
                           "--budget", str(budget)], env=env, capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{path or REPO}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, help="also measure this checkout's pyproxy")
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} instead")
    p.add_argument("--budget", type=float, default=2.0,
                   help="repeat a run only while one takes less than this (s)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(tuple(map(int, args.child.split(","))), args.budget)))
        return 0
    if args.baseline and not (args.baseline / "pyproxy" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline}: no pyproxy/__init__.py there")
    sizes = QUICK_SIZES if args.quick else SIZES
    results = {"this checkout": _child(None, sizes, args.budget)}
    if args.baseline:
        results["baseline"] = _child(args.baseline, sizes, args.budget)
    print(f"python {sys.version.split()[0]}; best of up to 3 runs")
    header = f"{'case':<18} {'elements':>9} {'bytes':>10}"
    for label in results:
        header += f" | {label + ' ms':>18} {'ns/byte':>8} {'µs/elem':>8}"
    print(header)
    for i, row in enumerate(results["this checkout"]):
        line = f"{row['case']:<18} {row['n']:>9,} {row['bytes']:>10,}"
        for rows in results.values():
            r = rows[i]
            line += (f" | {r['seconds'] * 1e3:>18.1f} {r['ns_per_byte']:>8.1f}"
                     f" {r['us_per_element']:>8.3f}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
