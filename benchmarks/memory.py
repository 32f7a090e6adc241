"""pyproxy's memory: RSS idle, with 1,000 idle clients, and over a bounded load run.

    python benchmarks/memory.py [--seconds 60] [--clients 1000] [--out FILE]

Starts two redis-servers and pyproxy on 127.0.0.1 (the process classes of tests/servers.py),
reads the proxy's VmRSS from /proc before and after 1,000 idle connections, then while
redis-benchmark drives GET/SET/MSET for ``--seconds`` (sampled every 5 s), and once more after
it. A steady RSS across the run's samples shows the proxy does not grow under load. Prints a
table and writes JSON. Everything started is stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import (  # noqa: E402
    ProxyProcess,
    RedisServer,
    free_port,
    pool_config,
    redis_client,
    two_shards,
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    a, b = RedisServer().start(), RedisServer().start()
    port = free_port()
    proxy = ProxyProcess(pool_config(port, two_shards(a, b), timeout=2000))
    idle: list[socket.socket] = []
    samples: list[tuple[str, float, int]] = []
    commands = 0
    try:
        proxy.start()
        assert proxy.pid is not None
        pid = proxy.pid
        samples.append(("started", 0.0, rss_kib(pid)))
        for _ in range(args.clients):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.0)
        samples.append((f"{args.clients} idle clients", 0.0, rss_kib(pid)))
        deadline = time.monotonic() + args.seconds
        start = time.monotonic()
        load = subprocess.Popen(
            ["redis-benchmark", "-p", str(port), "-t", "set,get,mset", "-c", "50", "-r",
             "100000", "-n", "100000000", "-l", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while time.monotonic() < deadline:
                time.sleep(5.0)
                samples.append(("under load", round(time.monotonic() - start, 1), rss_kib(pid)))
        finally:
            load.terminate()
            load.wait(timeout=10)
        time.sleep(1.0)
        samples.append(("after the run", round(time.monotonic() - start, 1), rss_kib(pid)))
        client = redis_client("127.0.0.1", port)
        commands = client.info()["total_commands_processed"]  # proof the load ran
        client.close()
    finally:
        for sock in idle:
            sock.close()
        proxy.close()
        a.close()
        b.close()
    print(f"{'phase':<22}{'t (s)':>8}{'RSS (MiB)':>12}")
    for phase, t, kib in samples:
        print(f"{phase:<22}{t:>8}{kib / 1024:>12.1f}")
    print(f"commands served during the run: {commands:,}")
    load_rss = [kib for phase, _, kib in samples if phase == "under load"]
    if len(load_rss) >= 2:
        print(f"growth during the load run: {(load_rss[-1] - load_rss[0]) / 1024:+.1f} MiB "
              f"(first to last sample)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"samples": samples, "commands": commands}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
