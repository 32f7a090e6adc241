#!/usr/bin/env python3
"""Where pyproxy spends its CPU, per workload: run.py's workloads under py-spy.

    python benchmarks/profile.py [--workloads get,mget] [--scale X] [--native] [--top N]

Starts the cluster of ``run.py`` with only the ``pyproxy`` target (two redis-servers and
pyproxy over them, 127.0.0.1 only, prefilled the same way), then for each workload runs its
redis-benchmark while ``py-spy record --format raw`` samples the proxy process. From each
profile it prints the top functions by *self* time (the leaf of a sample) and by *total*
time (a sample counts once for every function on its stack), in % of the samples, and writes
``<workload>.txt`` (py-spy's collapsed stacks, for flamegraph tools) in ``--out``.
``--native`` adds the C frames (uvloop, hiredis, the interpreter's own C functions).

py-spy samples only while the proxy's thread is busy (not while it waits in epoll), so the
percentages are of the proxy's CPU time. It is the ``dev`` extra's (``pip install -e
'.[dev]'``), and needs ptrace rights on the proxy (root, or a ptrace_scope of 0).

Everything started here (servers, py-spy, redis-benchmark) is stopped by pid.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import run  # run.py beside this file: the cluster, the prefill, the workloads

from tests.servers import stop_all  # (run.py put the repository on sys.path)

REPO = run.REPO


def top(stacks: dict[tuple[str, ...], int], count: int) -> tuple[list[tuple[str, float]],
                                                                   list[tuple[str, float]]]:
    """The ``count`` functions with the most self and the most total samples, in %."""
    total = sum(stacks.values()) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, samples in stacks.items():
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return ([(f, 100 * n / total) for f, n in own.most_common(count)],
            [(f, 100 * n / total) for f, n in inclusive.most_common(count)])


def read_collapsed(path: Path) -> dict[tuple[str, ...], int]:
    """py-spy's raw format: ``frame;frame;...;leaf count`` per line; frames without the
    line number (``function (file:line)`` -> ``function (file)``) so a function is one row."""
    stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        frames = tuple(_function(frame) for frame in stack.split(";"))
        stacks[frames] += int(samples)
    return stacks


def _function(frame: str) -> str:
    name, paren, where = frame.partition(" (")
    if not paren:
        return frame
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})"


def profile_one(cluster: run.Cluster, workload: run.Workload, requests: int, out: Path,
                native: bool, timeout: float) -> Path:
    pid = cluster.measured_pid("pyproxy")
    path = out / f"{workload.name}.txt"
    spy_cmd = [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
               "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
               "--output", str(path)]
    # Without --native the proxy runs on while it is sampled; native stacks need it paused.
    spy_cmd.append("--native" if native else "--nonblocking")
    spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # py-spy attaches
        bench = ["redis-benchmark", "-h", run.HOST, "-p", str(cluster.port("pyproxy")),
                 "-n", str(requests), "--csv", *workload.args]
        subprocess.run(bench, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       check=True)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate(timeout=10)
    if not path.exists():
        raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace').strip()}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="", help="comma-separated subset of run.py's")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every workload's -n")
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--top", type=int, default=12, help="functions listed per table")
    p.add_argument("--proxy-args", default="", help="extra arguments for `python -m pyproxy`")
    p.add_argument("--out", type=Path, default=None,
                   help="output dir (default benchmarks/results/profile-<timestamp>/)")
    args = p.parse_args(argv)
    workloads = run.select_workloads(args.workloads, p)
    out = (args.out or REPO / "benchmarks" / "results" /
           f"profile-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cluster = run.Cluster(args.proxy_args.split(), out / "logs", ("pyproxy",))
    try:
        cluster.start()
        run.prefill(cluster, timeout=120)
        for workload in workloads:
            requests = max(1000, int(workload.requests * args.scale))
            path = profile_one(cluster, workload, requests, out, args.native, timeout=120)
            own, inclusive = top(read_collapsed(path), args.top)
            print(f"\n## {workload.label} ({workload.name}, n={requests})\n")
            print("| self % | function | | total % | function |")
            print("|--:|---|---|--:|---|")
            for (f1, p1), (f2, p2) in zip(own, inclusive, strict=False):
                print(f"| {p1:.1f} | `{f1}` | | {p2:.1f} | `{f2}` |")
            sys.stdout.flush()
    finally:
        cluster.close()
        stop_all()
    print(f"\nprofiles in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
