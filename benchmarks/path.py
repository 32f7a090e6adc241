#!/usr/bin/env python3
"""The proxy's whole request path in one process, no sockets: µs of Python per request.

    python benchmarks/path.py [-k NAME] [--clients N] [--turns N] [--baseline PATH]

A real ``Pool`` (two shards, md5 modula, timeout 2000: run.py's config), ``Executor``,
``Client`` and backend ``Connection`` objects, on a running uvloop event loop, with fake
transports that drop what is written. One *turn* is what one event-loop iteration of the
loaded proxy does: ``--clients`` clients each deliver one read (run.py's workloads: a GET, 16
pipelined GETs, an MGET of 10 keys, ...), the loop runs the backend writes, each backend
connection delivers one read holding the replies to everything it was sent (the exact bytes
Redis would send), and the loop runs the client writes. The figure is the best over
``--rounds`` rounds of CPU time per request, so it is the interpreter's cost of the path
without the kernel's (run.py measures both).

``--baseline PATH`` runs the same cases with the code of another checkout and prints both
with their ratio: each checkout in its own process, alternating ``--alternate`` times, the
best of all its runs per case.

Nothing is started, nothing listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

Reply = Callable[[list[bytes]], bytes]  # a backend's reply to one request it received


def _keys(n: int, start: int) -> list[bytes]:
    return [b"key:%012d" % ((start + 7919 * i) % 100_000) for i in range(n)]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _answer(args: list[bytes]) -> bytes:
    """What redis answers run.py's prefilled data."""
    name = args[0].upper()
    if name == b"GET":
        return _bulk(b"v" * 10240 if args[1].startswith(b"big:") else b"xxx")
    if name in (b"SET", b"MSET"):
        return b"+OK\r\n"
    if name == b"MGET":
        return b"*%d\r\n" % (len(args) - 1) + _bulk(b"xxx") * (len(args) - 1)
    if name == b"LRANGE":
        return b"*100\r\n" + _bulk(b"xxx") * 100
    raise ValueError(name)


def _frame(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


# case name -> (requests per read, the read of client i)
CASES: dict[str, tuple[int, Callable[[int], bytes]]] = {
    "get": (1, lambda i: _frame(b"GET", *_keys(1, i))),
    "set": (1, lambda i: _frame(b"SET", *_keys(1, i), b"xxx")),
    "get_p16": (16, lambda i: b"".join(_frame(b"GET", k) for k in _keys(16, 16 * i))),
    "set_p16": (16, lambda i: b"".join(_frame(b"SET", k, b"xxx") for k in _keys(16, 16 * i))),
    "mset": (1, lambda i: _frame(b"MSET", *(x for k in _keys(10, i) for x in (k, b"xxx")))),
    "mget": (1, lambda i: _frame(b"MGET", *_keys(10, i))),
    "set_10k": (1, lambda i: _frame(b"SET", b"big:%012d" % i, b"v" * 10240)),
    "get_10k": (1, lambda i: _frame(b"GET", b"big:%012d" % i)),
    "lrange_100": (1, lambda i: _frame(b"LRANGE", b"mylist", b"0", b"99")),
}


class Sink:
    """A transport that drops what is written."""

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Recorder(Sink):
    """A backend transport that keeps what it was sent (the warm-up turn)."""

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data


def origin() -> str:
    import pyproxy

    return str(Path(pyproxy.__file__).parent.parent)


async def run_case(name: str, clients: int, turns: int, rounds: int) -> float:
    """Best CPU µs per request of case ``name`` (see the module docstring)."""
    from pyproxy.config import parse
    from pyproxy.protocol.resp import RequestParser
    from pyproxy.proxy.client import Client
    from pyproxy.proxy.execute import Executor
    from pyproxy.proxy.pool import Pool
    from pyproxy.proxy.replies import Flusher
    from pyproxy.server import static_table
    from tests.servers import pool_config

    loop = asyncio.get_running_loop()
    config = parse(pool_config(1, ["127.0.0.1:7001:0-2047", "127.0.0.1:7002:2048-4095"],
                               timeout=2000)).pools[0]
    pool = Pool(config, static_table(config))
    executor = Executor(pool, lambda: None)  # type: ignore[arg-type,return-value]
    flusher = Flusher(loop.call_soon)
    per_read, make = CASES[name]
    reads = [make(i) for i in range(clients)]
    members = []
    for _ in range(clients):
        client = Client(pool, executor, flusher)
        client.connection_made(Sink())  # type: ignore[arg-type]
        members.append(client)
    connections = [b.connections[0] for b in pool.backends.values()]
    recorders = []
    for connection in connections:
        recorder = Recorder()
        connection.transport, connection.ready = recorder, True  # type: ignore[assignment]
        recorders.append(recorder)

    async def turn(answers: list[bytes] | None) -> None:
        for client, data in zip(members, reads, strict=True):
            client.data_received(data)
        await asyncio.sleep(0)  # the backend writes
        for connection, answer in zip(connections, answers or [], strict=False):
            if answer:
                connection.on_data(answer)
        await asyncio.sleep(0)  # the client writes

    await turn(None)  # warm-up: learn what each backend is sent, answer it
    answers = []
    for connection, recorder in zip(connections, recorders, strict=True):
        parser = RequestParser()
        answers.append(b"".join(_answer(args) for args in parser.feed(recorder.sent)))
        connection.on_data(answers[-1])
        connection.transport = Sink()  # type: ignore[assignment]
    await asyncio.sleep(0)
    assert all(not c.queue for c in members), "a reply is missing"
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(turns):
            await turn(answers)
        best = min(best, time.process_time() - started)
    assert all(not c.queue for c in members), "a reply is missing"
    return best / (turns * clients * per_read) * 1e6


def measure(names: list[str], clients: int, turns: int, rounds: int) -> dict[str, float]:
    import uvloop

    async def all_cases() -> dict[str, float]:
        return {n: await run_case(n, clients, turns, rounds) for n in names}

    return uvloop.run(all_cases())


def _subprocess_run(code: Path, names: list[str], args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "-k", args.k, "--clients", str(args.clients),
           "--turns", str(args.turns), "--rounds", str(args.rounds), "--json", "--code", str(code)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    output = json.loads(done.stdout)
    if Path(output["origin"]).resolve() != code.resolve():
        raise SystemExit(f"{code}: pyproxy was imported from {output['origin']}")
    return {n: output["results"][n] for n in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", default="", help="only the cases whose name contains this")
    p.add_argument("--clients", type=int, default=10, help="client reads per turn (10)")
    p.add_argument("--turns", type=int, default=2000, help="turns per round (2000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds, the best counts (5)")
    p.add_argument("--baseline", type=Path, default=None, metavar="PATH",
                   help="also run another checkout's code, in a subprocess")
    p.add_argument("--alternate", type=int, default=3,
                   help="with --baseline: runs of each checkout, alternating (3)")
    p.add_argument("--code", type=Path, default=None, help=argparse.SUPPRESS)  # its code
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # its output
    args = p.parse_args(argv)
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))  # before anything imports pyproxy
    names = [n for n in CASES if args.k in n]
    if args.json:
        print(json.dumps({"origin": origin(),
                          "results": measure(names, args.clients, args.turns, args.rounds)}))
        return 0
    if args.baseline is None:
        ours, theirs = measure(names, args.clients, args.turns, args.rounds), {}
    else:
        # Alternate the two checkouts' runs, each in its own process, and keep each case's
        # best: slow drift on a shared machine then hits both alike.
        ours, theirs = {}, {}
        for _ in range(args.alternate):
            for code, best in ((REPO, ours), (args.baseline, theirs)):
                for n, value in _subprocess_run(code, names, args).items():
                    best[n] = min(best.get(n, value), value)
    print(f"python {sys.version.split()[0]}; pyproxy from {origin()}; {args.clients} clients "
          f"per turn, best of {args.rounds} rounds of {args.turns} turns; CPU µs per request")
    print(f"{'case':<12} {'this':>8}" + (f" {'baseline':>9} {'ratio':>6}" if theirs else ""))
    for n in names:
        line = f"{n:<12} {ours[n]:8.2f}"
        if n in theirs:
            line += f" {theirs[n]:9.2f} {ours[n] / theirs[n]:6.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
