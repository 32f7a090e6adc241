#!/usr/bin/env python3
"""The resharding mover's throughput: keys/s for values of a given size (1 KB by default).

    python benchmarks/reshard_mover.py [--keys 200000] [--value-bytes 1024] [--batch 100]
                                       [--proxies 1] [--load]

Starts ZooKeeper, two redis-servers and ``--proxies`` pyproxy processes on 127.0.0.1
(tests/servers.py classes, stopped by pid in a ``finally``), lays out one shard owning every
slot (``pyproxy-admin init``), writes ``--keys`` keys of ``--value-bytes`` straight to it,
adds a second, empty shard (``add-shard``) and moves half the slots to it (``reshard``),
timing the admin from start to end and reading the mover's own figure from its output.
With ``--load``, 8 clients keep reading and writing those keys through the proxies meanwhile
(their request count and errors are reported). Bounded: one run, 300 s at most per step.

For comparison, Codis users report about 500 keys/s for its slot migration (CodisLabs/codis
#508); Codis needs a forked redis-server, pyproxy moves keys with stock ``MIGRATE``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kazoo.client import KazooClient  # noqa: E402

from pyproxy.cluster import zkschema  # noqa: E402
from tests.servers import (  # noqa: E402
    ProxyProcess,
    RedisServer,
    ZooKeeperServer,
    free_port,
    pool_config,
    redis_client,
)

STEP = 300.0
CLUSTER = "/bench/cluster"
PROXIES = "/bench/proxy"


def admin(*args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pyproxy.admin", *args], capture_output=True,
                          text=True, timeout=STEP, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0:
        raise SystemExit(f"pyproxy-admin {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - started, done.stdout


def fill(server: RedisServer, keys: int, size: int) -> None:
    client = server.client()
    value = os.urandom(size // 2).hex().encode()[:size]
    for at in range(0, keys, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(at, min(at + 5000, keys)):
            pipe.set(f"key:{i}", value)
        pipe.execute()


class Load(threading.Thread):
    def __init__(self, address: str, keys: int, seed: int):
        super().__init__(daemon=True)
        self.address, self.keys = address, keys
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.requests = 0
        self.errors = 0

    def run(self) -> None:
        host, port = self.address.rsplit(":", 1)
        client = redis_client(host, int(port))
        deadline = time.monotonic() + STEP
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = f"key:{self.random.randrange(self.keys)}"
            try:
                if self.requests % 2:
                    client.set(key, b"x" * 100)
                else:
                    client.get(key)
            except Exception:  # noqa: BLE001 - counted
                self.errors += 1
            self.requests += 1
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--proxies", type=int, default=1)
    parser.add_argument("--load", action="store_true")
    args = parser.parse_args()
    made: list[object] = []
    with tempfile.TemporaryDirectory(prefix="pyproxy-mover-") as tmp:
        try:
            zk_server = ZooKeeperServer()
            made.append(zk_server)
            zk_server.start()
            hosts = zk_server.chroot_hosts("mover")
            a, b = RedisServer(), RedisServer()
            made += [a, b]
            a.start()
            b.start()
            ports = [free_port() for _ in range(args.proxies)]
            configs = [pool_config(port, [f"{a.address}:0-4095"], timeout=5000,
                                   zookeeper_host=hosts,
                                   zookeeper_path=f"{PROXIES}/127.0.0.1:{port}",
                                   zookeeper_redis_path=CLUSTER) for port in ports]
            conf = Path(tmp) / "mover.yml"
            conf.write_text(configs[0])
            admin("init", "-c", str(conf))
            zk = KazooClient(hosts=hosts, timeout=10.0)
            zk.start(timeout=10)
            zk.create(f"{CLUSTER}/redis-0000/{a.address}-", ephemeral=True, sequence=True)
            admin("add-shard", "-c", str(conf), "redis-0001")
            zk.create(f"{CLUSTER}/redis-0001/{b.address}-", ephemeral=True, sequence=True)
            for config in configs:
                proxy = ProxyProcess(config)
                made.append(proxy)
                proxy.start()
            fill(a, args.keys, args.value_bytes)
            loads = [Load(f"127.0.0.1:{ports[n % len(ports)]}", args.keys, n)
                     for n in range(8 if args.load else 0)]
            for load in loads:
                load.start()
            seconds, out = admin("reshard", "-c", str(conf), "--slots", "2048-4095",
                                 "--to", "redis-0001", "--yes", "--batch", str(args.batch))
            for load in loads:
                load.stop.set()
                load.join(10)
            moved = b.client().dbsize()
            mover = [line.strip() for line in out.splitlines() if "keys/s" in line]
            print(f"MOVER {args.keys} keys of {args.value_bytes} B, batch {args.batch}, "
                  f"{args.proxies} proxies{', under load' if args.load else ''}: "
                  f"{moved} keys moved; admin {seconds:.1f} s in all "
                  f"({moved / seconds:,.0f} keys/s end to end); mover: {'; '.join(mover)}")
            if loads:
                print(f"MOVER load: {sum(x.requests for x in loads)} requests, "
                      f"{sum(x.errors for x in loads)} errors")
            layout = zkschema.parse_shard(zk.get(f"{CLUSTER}/redis-0001")[0], "redis-0001")
            print(f"MOVER redis-0001 now owns {layout[0]}")
            zk.stop()
            zk.close()
        finally:
            for server in reversed(made):
                server.close()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
