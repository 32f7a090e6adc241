#!/usr/bin/env python3
"""One huge reply through real proxies: ``LRANGE`` of millions of elements, wall time.

    python benchmarks/big_reply.py [--elements 3000000] [--reps 3] [--baseline PATH]

Starts one redis-server, nutcracker and pyproxy over it (and, with ``--baseline PATH``, a
second pyproxy running the code of the checkout PATH), all on 127.0.0.1, fills one list with
``--elements`` 7-byte values, then for each target in turn (order rotated per repetition)
sends ``LRANGE list 0 -1`` on a raw socket and times it until the last byte of the reply has
arrived (its size is known from Redis itself). Meanwhile a second client sends ``PING``
through the same proxy every millisecond: the longest of its round trips shows how long the
proxy's event loop was blocked. ``direct`` is the redis-server itself.

Everything started here is stopped by pid in a ``finally``; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyproxy.protocol import resp  # noqa: E402
from tests.servers import Nutcracker, ProxyProcess, RedisServer, free_port, pool_config  # noqa: E402

HOST = "127.0.0.1"
DEADLINE = 120.0


def fill(port: int, elements: int) -> int:
    """RPUSH ``elements`` values into ``list``; the size in bytes of its LRANGE reply."""
    with socket.create_connection((HOST, port), timeout=DEADLINE) as sock:
        sock.sendall(resp.encode_command([b"DEL", b"list"]))
        sock.recv(100)
        batch = 10_000
        for start in range(0, elements, batch):
            values = [b"%07d" % i for i in range(start, min(start + batch, elements))]
            sock.sendall(resp.encode_command([b"RPUSH", b"list", *values]))
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(100)
    return len(resp.array([resp.bulk(b"%07d" % i) for i in range(elements)]))


def lrange(port: int, size: int) -> float:
    """Seconds from sending LRANGE to the reply's last byte."""
    with socket.create_connection((HOST, port), timeout=DEADLINE) as sock:
        started = time.perf_counter()
        sock.sendall(resp.encode_command([b"LRANGE", b"list", b"0", b"-1"]))
        got = 0
        while got < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed after {got} of {size} bytes")
            got += len(chunk)
        elapsed = time.perf_counter() - started
    if got != size:
        raise RuntimeError(f"{got} bytes, expected {size}")
    return elapsed


def longest_ping(port: int, stop: threading.Event, result: list[float]) -> None:
    """PING every millisecond until ``stop``; the longest round trip goes into ``result``."""
    longest = 0.0
    with socket.create_connection((HOST, port), timeout=DEADLINE) as sock:
        while not stop.is_set():
            started = time.perf_counter()
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            if sock.recv(100) != b"+PONG\r\n":
                raise RuntimeError("PING did not get PONG")
            longest = max(longest, time.perf_counter() - started)
            time.sleep(0.001)
    result.append(longest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elements", type=int, default=3_000_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--baseline", type=Path, help="also run a pyproxy with this checkout's code")
    args = p.parse_args(argv)
    if args.baseline and not (args.baseline / "pyproxy" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline}: no pyproxy/__init__.py there")
    started: list = []
    with tempfile.TemporaryDirectory(prefix="big-reply-") as tmp:
        try:
            redis = RedisServer(HOST, tmpdir=Path(tmp) / "redis")
            started.append(redis)
            redis.start()
            targets = {"direct": redis.port}
            nutcracker = Nutcracker.for_servers([f"{HOST}:{redis.port}:1"], timeout=60000,
                                                tmpdir=Path(tmp) / "nutcracker")
            started.append(nutcracker)
            nutcracker.start()
            targets["nutcracker"] = nutcracker.port
            servers = [f"{redis.address}:0-4095"]
            proxies = {"pyproxy": {}}
            if args.baseline:
                proxies["baseline"] = {"PYTHONPATH": str(args.baseline)}
            for name, env in proxies.items():
                proxy = ProxyProcess(lambda: pool_config(free_port(HOST), servers, timeout=60000),
                                     tmpdir=Path(tmp) / name, env=env)
                started.append(proxy)
                proxy.start(timeout=20.0)
                targets[name] = proxy.port
            size = fill(redis.port, args.elements)
            print(f"LRANGE of {args.elements:,} elements: {size:,} bytes; {args.reps} reps")
            times: dict[str, list[float]] = {name: [] for name in targets}
            stalls: dict[str, list[float]] = {name: [] for name in targets}
            names = list(targets)
            for rep in range(args.reps):
                for name in names[rep % len(names):] + names[: rep % len(names)]:
                    stop, longest = threading.Event(), []
                    pinger = threading.Thread(target=longest_ping,
                                              args=(targets[name], stop, longest))
                    pinger.start()
                    try:
                        times[name].append(lrange(targets[name], size))
                    finally:
                        stop.set()
                        pinger.join(DEADLINE)
                    stalls[name] += longest
            print(f"{'target':<12} {'median s':>9} {'min s':>7} {'max s':>7} "
                  f"{'longest PING ms':>16}")
            for name in names:
                print(f"{name:<12} {statistics.median(times[name]):9.2f} {min(times[name]):7.2f}"
                      f" {max(times[name]):7.2f} {max(stalls[name]) * 1e3:16.1f}")
        finally:
            for server in reversed(started):
                server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
