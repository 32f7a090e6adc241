"""--workers N: several processes share the listener; the proxy registers once."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from kazoo.client import KazooClient

from pyproxy.cluster import zkschema
from tests.servers import (
    free_port,
    pool_config,
    process_tree,
    redis_client,
    two_shards,
    wait_until,
)


def _children(pid: int) -> set[int]:
    return process_tree(pid) - {pid}


def test_two_workers_serve_register_each_and_stop_cleanly(
    redis_factory: Any, proxy_factory: Any, zk_hosts: str
) -> None:
    a, b = redis_factory(), redis_factory()
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    try:
        for i, (lo, hi) in enumerate([(0, 2047), (2048, 4095)]):
            zk.create(f"/c/{zkschema.shard_name(i)}", zkschema.weight_data(lo, hi), makepath=True)
        zk.create(f"/c/redis-0000/{a.address}-", ephemeral=True, sequence=True)
        zk.create(f"/c/redis-0001/{b.address}-", ephemeral=True, sequence=True)
        port = free_port()
        config = pool_config(port, two_shards(a, b), timeout=1000, zookeeper_host=zk_hosts,
                             zookeeper_path=f"/p/127.0.0.1:{port}", zookeeper_redis_path="/c")
        proxy = proxy_factory(config, extra_args=("--workers", "2"))
        wait_until(lambda: len(_children(proxy.pid)) == 2, timeout=10, what="two workers")
        workers_at_start = _children(proxy.pid)
        nodes = [f"127.0.0.1:{port}", f"127.0.0.1:{port}.worker1"]  # each acknowledges
        wait_until(lambda: sorted(zk.get_children("/p")) == nodes, timeout=10,
                   what="both workers registered")
        # many connections: the kernel spreads them over both workers; all must work
        clients = [redis_client("127.0.0.1", port) for _ in range(20)]
        served_by = set()
        for i, client in enumerate(clients):
            assert client.set(f"w{i}", i) and client.get(f"w{i}") == str(i).encode()
            served_by.add(client.info("proxy")["process_id"])
        assert a.client().dbsize() + b.client().dbsize() == 20
        for client in clients:
            client.close()
        workers = _children(proxy.pid)
        os.kill(proxy.pid, signal.SIGTERM)
        wait_until(lambda: not proxy.is_running(), timeout=20, what="supervisor exit")
        assert proxy.returncode == 0
        time.sleep(0.2)
        assert all(not os.path.exists(f"/proc/{w}") for w in workers)
        wait_until(lambda: zk.get_children("/p") == [], timeout=5, what="deregistration")
        assert served_by == workers_at_start  # SO_REUSEPORT spread 20 connections over both
    finally:
        zk.stop()
        zk.close()
