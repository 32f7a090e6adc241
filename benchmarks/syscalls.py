#!/usr/bin/env python3
"""Read and write system calls per request, nutcracker beside pyproxy, per workload.

    python benchmarks/syscalls.py [--workloads get,mget] [--scale X] [--proxy-args=...]

Starts run.py's cluster with the ``nutcracker`` and ``pyproxy`` targets (two redis-servers,
127.0.0.1 only, prefilled the same way), then for each workload runs its redis-benchmark
against each proxy and reads ``syscr``/``syscw`` of ``/proc/PID/io`` (read-like and
write-like calls: read, recv, write, writev, send, ...) before and after. On loopback most
of a proxy's CPU is spent inside those calls (py-spy ``--native``), so when both proxies
make as many calls per request, what one costs more than the other is its own user-space
work. A proxy's count is that of its process and its children (``--workers N``).

Everything started here is stopped by pid.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import run  # run.py beside this file: the cluster, the prefill, the workloads

from tests.servers import process_tree, stop_all  # (run.py put the repository on sys.path)

TARGETS = ("nutcracker", "pyproxy")


def system_calls(pid: int) -> tuple[int, int]:
    """(read-like, write-like) system calls made so far by ``pid`` and its children, from
    /proc/PID/io."""
    reads = writes = 0
    for member in process_tree(pid):
        fields = {}
        with open(f"/proc/{member}/io") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields[name] = int(value)
        reads, writes = reads + fields["syscr"], writes + fields["syscw"]
    return reads, writes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="", help="comma-separated subset of run.py's")
    p.add_argument("--scale", type=float, default=0.2, help="multiply every workload's -n")
    p.add_argument("--proxy-args", default="", help="extra arguments for `python -m pyproxy`")
    args = p.parse_args(argv)
    workloads = run.select_workloads(args.workloads, p)
    logs = run.REPO / "benchmarks" / "results" / f"syscalls-{time.strftime('%Y%m%d-%H%M%S')}"
    cluster = run.Cluster(args.proxy_args.split(), logs, TARGETS)
    try:
        cluster.start()
        run.prefill(cluster, timeout=120)
        print("| workload | " + " | ".join(f"{t} reads/req | {t} writes/req" for t in TARGETS)
              + " |")
        print("|---|" + "--:|" * 2 * len(TARGETS))
        for workload in workloads:
            requests = max(1000, int(workload.requests * args.scale))
            cells = []
            for target in TARGETS:
                pid = cluster.measured_pid(target)
                reads, writes = system_calls(pid)
                subprocess.run(["redis-benchmark", "-h", run.HOST, "-p", str(cluster.port(target)),
                                "-n", str(requests), "--csv", *workload.args],
                               capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                               check=True)
                reads_after, writes_after = system_calls(pid)
                cells += [f"{(reads_after - reads) / requests:.3f}",
                          f"{(writes_after - writes) / requests:.3f}"]
            print(f"| {workload.label} | " + " | ".join(cells) + " |", flush=True)
    finally:
        cluster.close()
        stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
