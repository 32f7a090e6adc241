#!/usr/bin/env python3
"""pyproxy beside nutcracker and direct Redis, in one run: ``python benchmarks/run.py``.

Starts two redis-servers, nutcracker and pyproxy over the same two shards (slots 0-2047 on
redis-1, 2048-4095 on redis-2; nutcracker's servers are named so its modula order is the same),
all on 127.0.0.1, then runs redis-benchmark against

* ``direct``     redis-1 alone (every key on one server: the per-request baseline),
* ``nutcracker`` twemproxy 0.5 over redis-1 + redis-2,
* ``pyproxy``    ``python -m pyproxy -c FILE [--proxy-args]`` over redis-1 + redis-2,
* ``baseline``   only with ``--baseline PATH``: the same pyproxy process (same config, same
  ``--proxy-args``) but running the code of the checkout PATH (``PYTHONPATH=PATH``), so a
  change can be measured before/after in the same run,

interleaved: every repetition sweeps all workloads, and for each workload the targets run one
after the other in an order rotated per repetition, so slow drift on this shared machine hits
all of them alike. One short warm-up pass (not recorded) comes first.

Per workload and target it reports the median ops/s over the repetitions, the median p50/p99
latency (redis-benchmark's --csv columns), and CPU per request of the process under test read
from /proc/PID/stat (utime+stime, the process and its children, before/after each run; for
``direct`` that is redis-1), plus the backend redises' and the load generator's CPU per
request. Results: ``results.json``, ``results.md`` and ``chart.png`` (if matplotlib imports)
in ``--out`` (default benchmarks/results/<timestamp>/); the Markdown table is printed at the end.

Everything started here is stopped by pid (tests/servers.py classes) in a ``finally``; every
redis-benchmark run has a -n request count and a subprocess timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.servers import (  # noqa: E402
    Nutcracker,
    ProxyProcess,
    RedisServer,
    ServerError,
    free_port,
    pool_config,
    process_tree,
    redis_client,
    require_binary,
    stop_all,
)

HOST = "127.0.0.1"
KEYSPACE = 100_000  # -r for the small-value workloads: key:000000000000 .. key:000000099999
BIG_KEYSPACE = 10_000  # -r for the 10 KB workloads (big:...), prefilled: 100 MB per server
BIG_VALUE_SIZE = 10_240
SMALL_VALUE = b"xxx"  # redis-benchmark's default -d 3
LIST_KEY = "mylist"
TARGETS = ("direct", "nutcracker", "pyproxy", "baseline")  # baseline only with --baseline
PROXIES = ("pyproxy", "baseline")  # targets that are a pyproxy process
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    args: tuple[str, ...]  # redis-benchmark arguments after -h/-p/-n/--csv
    requests: int  # -n of one measured run in a full run (--quick divides it by 10)


def _mget(n: int) -> tuple[str, ...]:
    # Every __rand_int__ is replaced by its own random number per request (checked with
    # redis-benchmark 7.0), so the 10 keys spread over both shards.
    return ("MGET", *(["key:__rand_int__"] * n))


R = str(KEYSPACE)
BIG_R = str(BIG_KEYSPACE)
WORKLOADS: tuple[Workload, ...] = (
    Workload("get", "GET, 50 clients", ("-c", "50", "-r", R, "-t", "get"), 150_000),
    Workload("set", "SET, 50 clients", ("-c", "50", "-r", R, "-t", "set"), 150_000),
    Workload("get_p16", "GET -P 16", ("-c", "50", "-P", "16", "-r", R, "-t", "get"), 800_000),
    Workload("set_p16", "SET -P 16", ("-c", "50", "-P", "16", "-r", R, "-t", "set"), 800_000),
    Workload("mset", "MSET 10 keys", ("-c", "50", "-r", R, "-t", "mset"), 80_000),
    Workload("mget", "MGET 10 keys", ("-c", "50", "-r", R, *_mget(10)), 60_000),
    Workload("set_10k", "SET 10 KB", ("-c", "50", "-r", BIG_R, "SET", "big:__rand_int__",
                                      "v" * BIG_VALUE_SIZE), 50_000),
    Workload("get_10k", "GET 10 KB", ("-c", "50", "-r", BIG_R, "GET", "big:__rand_int__"),
             50_000),
    Workload("get_c500", "GET, 500 clients", ("-c", "500", "-r", R, "-t", "get"), 150_000),
    Workload("lrange_100", "LRANGE_100", ("-c", "50", "LRANGE", LIST_KEY, "0", "99"), 40_000),
)
BY_NAME = {w.name: w for w in WORKLOADS}


def select_workloads(names_csv: str, parser: argparse.ArgumentParser) -> list[Workload]:
    """The workloads a ``--workloads a,b`` argument names (all when empty), in WORKLOADS'
    order whatever the order given; an unknown name is the parser's usage error."""
    names = [n.strip() for n in names_csv.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(BY_NAME)}")
    return [w for w in WORKLOADS if not names or w.name in names]


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime (all threads) of ``pids`` from /proc/PID/stat, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def system_cpu_seconds() -> tuple[float, float]:
    """(user+nice+system, irq+softirq) of all cores from /proc/stat, in seconds. Loopback TCP
    is largely processed in softirq, which is not always charged to a process."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (v[0] + v[1] + v[2]) / CLK_TCK, (v[5] + v[6]) / CLK_TCK


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """redis-1, redis-2, nutcracker, pyproxy and (with a baseline checkout) a second pyproxy
    running that checkout's code, over the same two shards."""

    def __init__(self, proxy_args: list[str], logdir: Path, targets: tuple[str, ...],
                 baseline: Path | None = None):
        self.proxy_args = proxy_args
        self.logdir = logdir
        self.targets = targets
        self.baseline_path = baseline
        self.redis1: RedisServer | None = None
        self.redis2: RedisServer | None = None
        self.nutcracker: Nutcracker | None = None
        self.pyproxy: ProxyProcess | None = None
        self.baseline: ProxyProcess | None = None

    def start(self) -> None:
        # Each object is kept before start(), so close() stops it even if its start fails.
        self.redis1 = RedisServer(HOST, tmpdir=self.logdir / "redis-1")
        self.redis1.start()
        self.redis2 = RedisServer(HOST, tmpdir=self.logdir / "redis-2")
        self.redis2.start()
        r1, r2 = self.redis1.port, self.redis2.port
        if "nutcracker" in self.targets:
            # for_servers names them s0000, s0001: nutcracker sorts by name, so redis-1 gets
            # the first half of the md5 % 4096 space, as pyproxy's 0-2047 does.
            self.nutcracker = Nutcracker.for_servers(
                [f"{HOST}:{r1}:2048", f"{HOST}:{r2}:2048"],
                timeout=2000,
                tmpdir=self.logdir / "nutcracker",
            )
            self.nutcracker.start()
        if "pyproxy" in self.targets:
            self.pyproxy = ProxyProcess(
                lambda: self.proxy_config(r1, r2, free_port(HOST)),
                extra_args=self.proxy_args,
                tmpdir=self.logdir / "pyproxy",
            )
            self.pyproxy.start(timeout=20.0)
        if "baseline" in self.targets:
            assert self.baseline_path is not None
            # ProxyProcess._env puts this repo first on PYTHONPATH, then applies env=: so
            # PYTHONPATH is PATH alone and `python -m pyproxy` imports the checkout's code.
            self.baseline = ProxyProcess(
                lambda: self.proxy_config(r1, r2, free_port(HOST)),
                extra_args=self.proxy_args,
                tmpdir=self.logdir / "baseline",
                env={"PYTHONPATH": str(self.baseline_path)},
            )
            self.baseline.start(timeout=20.0)

    def pyproxy_origins(self) -> dict[str, str]:
        """Where each pyproxy target imports pyproxy from: ``import pyproxy`` run with the
        process's own interpreter, environment and working directory. Raises if ``pyproxy``
        does not come from this repository or ``baseline`` not from the baseline checkout."""
        want = {"pyproxy": REPO, "baseline": self.baseline_path}
        origins: dict[str, str] = {}
        for target, proc in (("pyproxy", self.pyproxy), ("baseline", self.baseline)):
            if proc is None:
                continue
            r = subprocess.run(
                [sys.executable, "-c", "import pyproxy; print(pyproxy.__file__)"],
                capture_output=True, text=True, timeout=30, env=proc._env(), cwd=proc.dir,
            )
            origin = r.stdout.strip()
            expected = want[target]
            assert expected is not None
            if r.returncode != 0 or not Path(origin).resolve().is_relative_to(expected):
                raise RuntimeError(f"{target} imports pyproxy from {origin or r.stderr.strip()!r}"
                                   f", not from {expected}")
            origins[target] = origin
        return origins

    @staticmethod
    def proxy_config(r1: int, r2: int, port: int) -> str:
        servers = [f"{HOST}:{r1}:0-2047", f"{HOST}:{r2}:2048-4095"]
        return pool_config(port, servers, host=HOST, timeout=2000)

    def close(self) -> None:
        for proc in (self.baseline, self.pyproxy, self.nutcracker, self.redis2, self.redis1):
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.close()

    # -- per target
    def _proc(self, target: str) -> RedisServer | Nutcracker | ProxyProcess | None:
        return {"direct": self.redis1, "nutcracker": self.nutcracker, "pyproxy": self.pyproxy,
                "baseline": self.baseline}[target]

    def port(self, target: str) -> int:
        p = self._proc(target)
        assert p is not None and p.port is not None
        return p.port

    def measured_pid(self, target: str) -> int:
        p = self._proc(target)
        assert p is not None and p.pid is not None
        return p.pid

    def alive(self, target: str) -> bool:
        procs = [self._proc(target)]
        if target != "direct":
            procs += [self.redis1, self.redis2]
        return all(p is not None and p.is_running() for p in procs)

    def redis_pids(self) -> list[int]:
        return [p.pid for p in (self.redis1, self.redis2) if p is not None and p.pid]

    def versions(self) -> dict[str, str]:
        def first_line(cmd: list[str]) -> str:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"? ({e})"
            return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr) else "?"

        return {
            "redis-server": first_line(["redis-server", "--version"]),
            "redis-benchmark": first_line(["redis-benchmark", "--version"]),
            "nutcracker": first_line([require_binary("nutcracker", "nutcracker"), "-V"]),
        }


def prefill(cluster: Cluster, timeout: float) -> dict[str, Any]:
    """Write every key the workloads read into *both* redises (whatever routes where), so GETs
    and MGETs always hit: key:* = 3 bytes, big:* = 10 KB, mylist = 100 elements."""
    buf = io.BytesIO()

    def cmd(*args: bytes) -> None:
        buf.write(b"*%d\r\n" % len(args))
        for a in args:
            buf.write(b"$%d\r\n%b\r\n" % (len(a), a))

    cmd(b"FLUSHALL")
    for i in range(KEYSPACE):
        cmd(b"SET", b"key:%012d" % i, SMALL_VALUE)
    big = b"v" * BIG_VALUE_SIZE
    for i in range(BIG_KEYSPACE):
        cmd(b"SET", b"big:%012d" % i, big)
    cmd(b"RPUSH", LIST_KEY.encode(), *[SMALL_VALUE] * 100)
    data = buf.getvalue()
    out: dict[str, Any] = {"commands": KEYSPACE + BIG_KEYSPACE + 2}
    for server in (cluster.redis1, cluster.redis2):
        assert server is not None
        t0 = time.monotonic()
        r = subprocess.run(
            ["redis-cli", "-h", HOST, "-p", str(server.port), "--pipe"],
            input=data, capture_output=True, timeout=timeout,
        )
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        if r.returncode != 0 or "errors: 0" not in text:
            raise RuntimeError(f"prefill of {server.address} failed: {text.strip()}")
        out[server.address] = round(time.monotonic() - t0, 2)
    return out


def sanity_check(cluster: Cluster) -> dict[str, Any]:
    """All proxies must place keys identically over both shards and answer a 10-key MGET."""
    r1 = redis_client(HOST, cluster.redis1.port)  # type: ignore[union-attr]
    r2 = redis_client(HOST, cluster.redis2.port)  # type: ignore[union-attr]
    placements: dict[str, list[int]] = {}
    report: dict[str, Any] = {}
    try:
        for target in ("nutcracker", *PROXIES):
            if target not in cluster.targets:
                continue
            c = redis_client(HOST, cluster.port(target))
            try:
                keys = [f"bench:probe:{i}" for i in range(64)]
                where = []
                for k in keys:
                    c.set(k, target)
                    on1, on2 = r1.get(k) is not None, r2.get(k) is not None
                    if on1 == on2:
                        raise RuntimeError(f"{target}: {k} landed on {int(on1) + int(on2)} "
                                           "servers")
                    where.append(1 if on1 else 2)
                    c.delete(k)
                placements[target] = where
                mkeys = [f"key:{i:012d}" for i in range(0, KEYSPACE, KEYSPACE // 10)]
                values = c.mget(mkeys)
                if values != [SMALL_VALUE] * len(mkeys):
                    raise RuntimeError(f"{target}: MGET of 10 prefilled keys gave {values!r}")
                if len(c.lrange(LIST_KEY, 0, 99)) != 100:
                    raise RuntimeError(f"{target}: LRANGE {LIST_KEY} 0 99 is not 100 long")
                report[target] = {"on_redis_1": where.count(1), "on_redis_2": where.count(2)}
            finally:
                c.close()
        names = list(placements)
        for other in names[1:]:
            if placements[other] != placements[names[0]]:
                raise RuntimeError(f"{names[0]} and {other} place keys differently: "
                                   f"{placements}")
        for target, where in placements.items():
            if set(where) != {1, 2}:
                raise RuntimeError(f"{target} used only one shard: {where}")
    finally:
        r1.close()
        r2.close()
    return report


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    workload: str
    target: str
    rep: int  # -1 = warm-up
    position: int
    requests: int
    ops: float | None = None
    avg_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    wall_s: float = 0.0
    target_cpu_s: float = 0.0  # the proxy process tree; redis-1 for direct
    redis_cpu_s: float = 0.0  # redis-1 + redis-2
    client_cpu_s: float = 0.0  # redis-benchmark
    softirq_cpu_s: float = 0.0  # irq+softirq, all cores (mostly loopback networking)
    foreign_cpu_s: float = 0.0  # user+system CPU of every other process meanwhile
    error: str | None = None


def parse_csv(text: str) -> dict[str, float] | None:
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    header = next((r for r in rows if r[0] == "test"), None)
    data = [r for r in rows if r[0] != "test"]
    if header is None or not data:
        return None
    row = dict(zip(header, data[-1], strict=False))
    try:
        return {k: float(v) for k, v in row.items() if k != "test"}
    except ValueError:
        return None


def run_one(cluster: Cluster, workload: Workload, target: str, requests: int, rep: int,
            position: int, timeout: float) -> Run:
    run = Run(workload.name, target, rep, position, requests)
    cmd = ["redis-benchmark", "-h", HOST, "-p", str(cluster.port(target)), "-n", str(requests),
           "--csv", *workload.args]
    pids = sorted(process_tree(cluster.measured_pid(target)))
    rpids = cluster.redis_pids()
    before = (cpu_seconds(pids), cpu_seconds(rpids), client_cpu_seconds(),
              *system_cpu_seconds())
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        stdout, stderr, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:  # subprocess.run killed it (by pid) and reaped it
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr, rc = f"timed out after {timeout:.0f}s", None
    run.wall_s = time.monotonic() - t0
    after = (cpu_seconds(pids), cpu_seconds(rpids), client_cpu_seconds(),
             *system_cpu_seconds())
    run.target_cpu_s, run.redis_cpu_s, run.client_cpu_s = (
        after[0] - before[0], after[1] - before[1], after[2] - before[2])
    ours = run.redis_cpu_s + run.client_cpu_s + (0 if target == "direct" else run.target_cpu_s)
    run.foreign_cpu_s = max(0.0, (after[3] - before[3]) - ours)
    run.softirq_cpu_s = after[4] - before[4]
    errors = [ln for ln in stderr.splitlines()
              if ln.strip() and "Could not fetch server CONFIG" not in ln]
    row = parse_csv(stdout)
    if rc != 0 or row is None or any(ln.startswith("Error") for ln in errors):
        run.error = ("; ".join(errors) or f"exit {rc}, no CSV row")[:300]
    if row is not None and run.error is None:
        run.ops = row.get("rps")
        run.avg_ms = row.get("avg_latency_ms")
        run.p50_ms = row.get("p50_latency_ms")
        run.p99_ms = row.get("p99_latency_ms")
        run.max_ms = row.get("max_latency_ms")
    return run


# --------------------------------------------------------------------------- summary


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[Run], workloads: list[Workload], targets: tuple[str, ...]
              ) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for w in workloads:
        entry: dict[str, Any] = {}
        for t in targets:
            ok = [r for r in runs if r.workload == w.name and r.target == t and r.rep >= 0
                  and r.ops is not None]
            failed = [r for r in runs if r.workload == w.name and r.target == t and r.rep >= 0
                      and r.ops is None]
            per_req = [(r.target_cpu_s / r.requests * 1e6, r.redis_cpu_s / r.requests * 1e6,
                        r.client_cpu_s / r.requests * 1e6) for r in ok]
            ops = [r.ops for r in ok if r.ops is not None]
            foreign = [100 * r.foreign_cpu_s / r.wall_s for r in ok if r.wall_s > 0]
            entry[t] = {
                "reps_ok": len(ok),
                "reps_failed": len(failed),
                "errors": sorted({r.error for r in failed if r.error}),
                "ops_median": _median(ops),
                "ops_min": min(ops) if ops else None,
                "ops_max": max(ops) if ops else None,
                "ops_all": ops,
                "p50_ms": _median([r.p50_ms for r in ok if r.p50_ms is not None]),
                "p99_ms": _median([r.p99_ms for r in ok if r.p99_ms is not None]),
                "cpu_us_per_req": _median([c[0] for c in per_req]),
                "redis_cpu_us_per_req": _median([c[1] for c in per_req]),
                "client_cpu_us_per_req": _median([c[2] for c in per_req]),
                "softirq_cpu_us_per_req": _median([r.softirq_cpu_s / r.requests * 1e6
                                                   for r in ok]),
                "foreign_cpu_pct": _median(foreign),
                "foreign_cpu_pct_max": max(foreign) if foreign else None,
            }
        ratios: dict[str, Any] = {}  # floats or None; the *_per_rep entries lists

        def ratio(a: str, b: str, key: str, e: dict[str, Any] = entry) -> float | None:
            if a not in e or b not in e:
                return None
            x, y = e[a][key], e[b][key]
            return x / y if x is not None and y else None

        ratios["ops_pyproxy_vs_nutcracker"] = ratio("pyproxy", "nutcracker", "ops_median")
        ratios["ops_pyproxy_vs_direct"] = ratio("pyproxy", "direct", "ops_median")
        ratios["ops_nutcracker_vs_direct"] = ratio("nutcracker", "direct", "ops_median")
        ratios["cpu_pyproxy_vs_nutcracker"] = ratio("pyproxy", "nutcracker", "cpu_us_per_req")
        # the same ratio per repetition (targets ran back to back): its spread shows the noise
        pn = []
        for rep in sorted({r.rep for r in runs if r.rep >= 0}):
            by_t = {r.target: r.ops for r in runs if r.workload == w.name and r.rep == rep}
            if by_t.get("pyproxy") and by_t.get("nutcracker"):
                pn.append(by_t["pyproxy"] / by_t["nutcracker"])
        ratios["ops_pyproxy_vs_nutcracker_per_rep"] = pn
        if "baseline" in targets:
            # before/after of a change: this checkout's pyproxy over the baseline checkout's
            ratios["ops_pyproxy_vs_baseline"] = ratio("pyproxy", "baseline", "ops_median")
            ratios["cpu_pyproxy_vs_baseline"] = ratio("pyproxy", "baseline", "cpu_us_per_req")
            ops_pb: list[float] = []
            cpu_pb: list[float] = []
            for rep in sorted({r.rep for r in runs if r.rep >= 0}):
                good = {r.target: r for r in runs if r.workload == w.name and r.rep == rep
                        and r.ops is not None}
                p, b = good.get("pyproxy"), good.get("baseline")
                if p is None or b is None:
                    continue
                if p.ops and b.ops:
                    ops_pb.append(p.ops / b.ops)
                if b.target_cpu_s > 0:
                    cpu_pb.append((p.target_cpu_s / p.requests) / (b.target_cpu_s / b.requests))
            ratios["ops_pyproxy_vs_baseline_per_rep"] = ops_pb
            ratios["cpu_pyproxy_vs_baseline_per_rep"] = cpu_pb
        entry["ratios"] = ratios
        summary[w.name] = entry
    return summary


def _fmt_ops(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _fmt(v: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{suffix}"


def markdown(meta: dict[str, Any], summary: dict[str, Any], workloads: list[Workload],
             targets: tuple[str, ...]) -> str:
    short = {"direct": "d", "nutcracker": "n", "pyproxy": "p", "baseline": "b"}
    trio = " / ".join(short[t] for t in targets)
    vs_b = "baseline" in targets
    lines = [
        f"# pyproxy benchmark {meta['started']}",
        "",
        f"`{meta['command']}`  ",
        f"commit {meta['git_commit']}, {meta['cpus']} CPUs, {meta['reps']} reps"
        f"{' (quick)' if meta['quick'] else ''}, proxy args `{meta['proxy_args'] or '-'}`, "
        f"load avg before {meta['loadavg_before']}",
        "",
        "direct = redis-1 alone (all keys on one server); nutcracker and pyproxy = 2 shards "
        "(redis-1 slots 0-2047, redis-2 2048-4095). Medians over repetitions. CPU µs/req = "
        "CPU of the process under test per request (redis-1's for direct), from /proc.",
        "",
    ]
    if vs_b:
        lines += [
            f"baseline = the same pyproxy (same config and proxy args) running the code of "
            f"`{meta['baseline']}` (commit {meta['baseline_commit']}); pyproxy/baseline > 1 "
            "means this checkout is faster, CPU pyproxy/baseline < 1 that it is cheaper.",
            "",
        ]
    lines += [
        f"| workload | direct ops/s | nutcracker ops/s | pyproxy ops/s "
        f"{'| baseline ops/s ' if vs_b else ''}| pyproxy/nutcracker "
        f"| pyproxy/direct {'| pyproxy/baseline ' if vs_b else ''}"
        f"| p50 ms ({trio}) | p99 ms ({trio}) | CPU µs/req ({trio}) "
        f"| CPU pyproxy/nutcracker {'| CPU pyproxy/baseline ' if vs_b else ''}|",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|--:|--:|" if vs_b else ""),
    ]
    for w in workloads:
        e = summary[w.name]
        r = e["ratios"]

        def col(t: str, key: str, e: dict[str, Any] = e) -> float | None:
            return e[t][key] if t in e else None

        def trip(key: str, spec: str, e: dict[str, Any] = e) -> str:
            return " / ".join(_fmt(e[t][key], spec) for t in targets)

        b_ops = f"| {_fmt_ops(col('baseline', 'ops_median'))} " if vs_b else ""
        b_ratio = f"| {_fmt(r.get('ops_pyproxy_vs_baseline'), '.2f', '×')} " if vs_b else ""
        b_cpu = f"| {_fmt(r.get('cpu_pyproxy_vs_baseline'), '.2f', '×')} " if vs_b else ""
        lines.append(
            f"| {w.label} | {_fmt_ops(col('direct', 'ops_median'))} "
            f"| {_fmt_ops(col('nutcracker', 'ops_median'))} "
            f"| {_fmt_ops(col('pyproxy', 'ops_median'))} {b_ops}"
            f"| {_fmt(r['ops_pyproxy_vs_nutcracker'], '.2f', '×')} "
            f"| {_fmt(r['ops_pyproxy_vs_direct'], '.2f', '×')} {b_ratio}"
            f"| {trip('p50_ms', '.3f')} | {trip('p99_ms', '.3f')} "
            f"| {trip('cpu_us_per_req', '.1f')} "
            f"| {_fmt(r['cpu_pyproxy_vs_nutcracker'], '.2f', '×')} {b_cpu}|"
        )
    lines += [
        "",
        "Spread and the rest of the CPU: ops/s min–max over repetitions, pyproxy/nutcracker "
        "per repetition, CPU µs/req of both redis-servers together, of redis-benchmark and "
        "of the kernel's irq+softirq (loopback TCP), and the CPU of unrelated processes "
        "during the runs in % of one core, median / max over repetitions (noise: other jobs "
        "on this machine).",
        "",
        "| workload | target | ops/s min–max | redis µs/req | client µs/req | softirq µs/req "
        "| foreign CPU % med / max | failed reps |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for w in workloads:
        e = summary[w.name]
        for t in targets:
            s = e[t]
            spread = (f"{_fmt_ops(s['ops_min'])}–{_fmt_ops(s['ops_max'])}"
                      if s["ops_min"] is not None else "–")
            lines.append(
                f"| {w.label} | {t} | {spread} | {_fmt(s['redis_cpu_us_per_req'], '.1f')} "
                f"| {_fmt(s['client_cpu_us_per_req'], '.1f')} "
                f"| {_fmt(s['softirq_cpu_us_per_req'], '.1f')} "
                f"| {_fmt(s['foreign_cpu_pct'], '.0f')} / {_fmt(s['foreign_cpu_pct_max'], '.0f')} "
                f"| {s['reps_failed']} |"
            )
    lines.append("")
    lines.append("pyproxy/nutcracker per repetition:")
    lines.append("")
    for w in workloads:
        per = summary[w.name]["ratios"]["ops_pyproxy_vs_nutcracker_per_rep"]
        lines.append(f"- {w.label}: " + (", ".join(f"{x:.2f}" for x in per) or "–"))
    if vs_b:
        lines += ["", "pyproxy/baseline per repetition, ops/s ratio | CPU µs/req ratio:", ""]
        for w in workloads:
            r = summary[w.name]["ratios"]
            ops = ", ".join(f"{x:.2f}" for x in r["ops_pyproxy_vs_baseline_per_rep"]) or "–"
            cpu = ", ".join(f"{x:.2f}" for x in r["cpu_pyproxy_vs_baseline_per_rep"]) or "–"
            lines.append(f"- {w.label}: {ops} | {cpu}")
    errors = [(w.label, t, err) for w in workloads for t in targets
              for err in summary[w.name][t]["errors"]]
    if errors:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {label} / {t}: {err}" for label, t, err in errors]
    if meta.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(lines) + "\n"


def chart(path: Path, summary: dict[str, Any], workloads: list[Workload],
          targets: tuple[str, ...]) -> str | None:
    """A PNG with ops/s relative to nutcracker and CPU µs/request; None if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not importable: no chart (pip install matplotlib)"
    labels = [w.label for w in workloads]
    x = list(range(len(workloads)))
    width = 0.8 / len(targets)
    colors = {"direct": "#7f7f7f", "nutcracker": "#1f77b4", "pyproxy": "#d62728",
              "baseline": "#ff9896"}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    base = "nutcracker" if "nutcracker" in targets else targets[0]
    for i, t in enumerate(targets):
        rel, cpu = [], []
        for w in workloads:
            e = summary[w.name]
            b = e[base]["ops_median"]
            v = e[t]["ops_median"]
            rel.append(v / b if v and b else 0)
            cpu.append(e[t]["cpu_us_per_req"] or 0)
        offs = [xi + (i - (len(targets) - 1) / 2) * width for xi in x]
        ax1.bar(offs, rel, width, label=t, color=colors[t])
        ax2.bar(offs, cpu, width, label=t, color=colors[t])
    ax1.axhline(1.0, color="black", linewidth=0.8)
    ax1.axhline(0.7, color="black", linewidth=0.8, linestyle="--")
    ax1.text(len(workloads) - 0.5, 0.72, "0.7×", ha="right", va="bottom", fontsize=8)
    ax1.set_ylabel(f"median ops/s relative to {base}")
    ax1.legend()
    ax1.set_title("pyproxy vs nutcracker vs direct redis-1"
                  f"{' vs baseline pyproxy' if 'baseline' in targets else ''}"
                  " (same run, interleaved)")
    ax2.set_ylabel("CPU µs per request (process under test)")
    ax2.set_xticks(x)
    ax2.set_xticklabels(labels, rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark pyproxy against nutcracker and direct Redis (127.0.0.1 only).",
        epilog="workloads: " + ", ".join(w.name for w in WORKLOADS),
    )
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1/10 of the requests, 3 reps (< 60 s)")
    p.add_argument("--reps", type=int, default=None,
                   help="measured repetitions per workload and target (default 5, quick 3)")
    p.add_argument("--scale", type=float, default=None,
                   help="multiply every workload's -n (default 1, quick 0.1)")
    p.add_argument("--out", type=Path, default=None,
                   help="output dir (default benchmarks/results/<timestamp>/)")
    p.add_argument("--workloads", default="",
                   help="comma-separated subset (default all), e.g. get,set,mset")
    p.add_argument("--targets", default=None,
                   help="comma-separated subset of direct,nutcracker,pyproxy (default all; "
                        "baseline is added with --baseline)")
    p.add_argument("--baseline", type=Path, default=None, metavar="PATH",
                   help="another checkout of this repository (e.g. a git worktree of the "
                        "commit before a change): adds the target baseline, the same pyproxy "
                        "running PATH's code, measured interleaved with the others")
    p.add_argument("--proxy-args", default="",
                   help="extra arguments for `python -m pyproxy`; use the = form: "
                        "--proxy-args='--workers 2'")
    p.add_argument("--run-timeout", type=float, default=60.0,
                   help="seconds before one redis-benchmark run is killed (default 60)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up pass")
    args = p.parse_args(argv)
    args.reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    args.scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    if args.reps < 1 or args.scale <= 0:
        p.error("--reps must be >= 1 and --scale > 0")
    args.workload_list = select_workloads(args.workloads, p)
    if args.baseline is not None:
        args.baseline = args.baseline.expanduser().resolve()
        if not (args.baseline / "pyproxy" / "__init__.py").is_file():
            # one line, exit status 2 like argparse's errors
            print(f"{p.prog}: error: --baseline {args.baseline}: no pyproxy/__init__.py there",
                  file=sys.stderr)
            sys.exit(2)
    known = TARGETS if args.baseline is not None else TARGETS[:-1]
    given = args.targets if args.targets is not None else ",".join(known)
    targets = tuple(t.strip() for t in given.split(",") if t.strip())
    if not targets or any(t not in known for t in targets):
        p.error(f"--targets must be a subset of {','.join(known)}"
                + ("" if args.baseline is not None else " (baseline needs --baseline PATH)"))
    if args.baseline is not None:
        targets += ("baseline",)  # the point of --baseline: always measured
    args.target_list = tuple(t for t in TARGETS if t in targets)
    return args


def _git_commit(repo: Path = REPO) -> str:
    try:
        r = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "pyproxy"],
                               capture_output=True, text=True, timeout=10)
        return r.stdout.strip() + (" (pyproxy/ modified)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads: list[Workload] = args.workload_list
    targets: tuple[str, ...] = args.target_list
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: Path = (args.out or REPO / "benchmarks" / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for binary in ("redis-benchmark", "redis-cli"):
        require_binary(binary, "redis-tools")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "python": sys.executable,
        "python_version": platform.python_version(),
        "git_commit": _git_commit(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "reps": args.reps,
        "scale": args.scale,
        "proxy_args": args.proxy_args,
        "targets": list(targets),
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "direct": "redis-1 alone: every key on one redis-server, no proxy",
        "cpu_source": "/proc/PID/stat utime+stime, process tree, "
                      f"{1000 / CLK_TCK:.0f} ms ticks",
        "notes": [],
    }
    if args.baseline is not None:
        meta["baseline"] = str(args.baseline)
        meta["baseline_commit"] = _git_commit(args.baseline) or "? (not a git checkout)"
    runs: list[Run] = []
    cluster = Cluster(shlex.split(args.proxy_args), out / "logs", targets, args.baseline)
    started = time.monotonic()
    interrupted = False
    try:
        _progress(f"starting redis x2, nutcracker, pyproxy"
                  f"{', baseline pyproxy' if args.baseline else ''} on {HOST}; output in {out}")
        cluster.start()
        if args.baseline is not None:
            meta["pyproxy_imported_from"] = cluster.pyproxy_origins()
            _progress(f"pyproxy imported from {meta['pyproxy_imported_from']}")
        meta["versions"] = cluster.versions()
        meta["ports"] = {t: cluster.port(t) for t in targets}
        meta["prefill_s"] = prefill(cluster, timeout=120)
        meta["sanity"] = sanity_check(cluster)
        _progress(f"ready in {time.monotonic() - started:.1f}s; placement check "
                  f"{meta['sanity']}")
        reps = ([-1] if not args.no_warmup else []) + list(range(args.reps))
        total = len(reps) * len(workloads) * len(targets)
        dead: set[str] = set()
        done = 0
        for rep in reps:
            for wi, w in enumerate(workloads):
                requests = max(1000, int(w.requests * args.scale))
                if rep < 0:
                    requests = max(1000, requests // 10)
                shift = (max(rep, 0) + wi) % len(targets)
                order = targets[shift:] + targets[:shift]
                for pos, t in enumerate(order):
                    done += 1
                    if t in dead:
                        continue
                    run = run_one(cluster, w, t, requests, rep, pos, args.run_timeout)
                    runs.append(run)
                    if not cluster.alive(t):
                        dead.add(t)
                        run.error = (run.error or "") + " [process died; target dropped]"
                        meta["notes"].append(f"{t} died during {w.name} rep {rep}")
                    cpu = run.target_cpu_s / run.requests * 1e6
                    status = (f"{run.ops:>10,.0f} ops/s p50 {run.p50_ms:.3f} p99 "
                              f"{run.p99_ms:.3f} ms cpu {cpu:5.1f} µs/req"
                              if run.ops is not None else f"FAILED: {run.error}")
                    _progress(f"[{done:3d}/{total}] {time.monotonic() - started:6.1f}s "
                              f"{'warm-up' if rep < 0 else f'rep {rep + 1}/{args.reps}'} "
                              f"{w.name:<10} {t:<10} n={requests:<7} {status}")
    except KeyboardInterrupt as e:
        interrupted = True
        meta["notes"].append(f"interrupted ({str(e) or 'Ctrl-C'}): partial results")
        _progress("interrupted: stopping servers, writing partial results")
    except (ServerError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        meta["notes"].append(f"aborted: {e}")
        _progress(f"aborted: {e}")
        interrupted = True
    finally:
        cluster.close()
        left = stop_all()
        if left:
            meta["notes"].append(f"stop_all() closed {left}")
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["requests"] = {w.name: max(1000, int(w.requests * args.scale)) for w in workloads}
    summary = summarize(runs, workloads, targets)
    note = chart(out / "chart.png", summary, workloads, targets) if runs else "no runs"
    if note:
        meta["notes"].append(note)
    md = markdown(meta, summary, workloads, targets)
    result = {
        "meta": meta,
        "workloads": [asdict(w) | {"requests": meta["requests"][w.name],
                                   "args": [a if len(a) < 64 else f"<{len(a)} bytes>"
                                            for a in w.args]} for w in workloads],
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(md)
    print(md)
    _progress(f"wrote {out}/results.json, results.md"
              f"{', chart.png' if (out / 'chart.png').exists() else ''} "
              f"in {meta['elapsed_s']}s")
    return 1 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
