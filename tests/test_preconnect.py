"""Issue 15, finding 1: with ``preconnect: true`` every table swap used to start another
connection to each backend, and the old one went on feeding replies into the same FIFO —
replies went to the wrong client (more so with ``redis_auth``, whose prelude went in front of
requests in flight). 200 topology changes under 50 pipelining clients: not one wrong reply,
and one connection per backend afterwards."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.servers import free_port, pool_config
from tests.test_proxy import Raw, key_on
from tests.test_topology import CLUSTER, PROXIES, Cluster

PASSWORD = "pw-preconnect"


def proxy_connections(server: Any) -> int:
    """Connections the backend has open from the proxy (every client but this one)."""
    listing = server.client(password=PASSWORD).execute_command("CLIENT", "LIST").decode()
    return sum(1 for line in listing.splitlines() if "cmd=client|list" not in line)


def test_topology_changes_never_cross_replies(zk_hosts: str, redis_factory: Any,
                                              proxy_factory: Any) -> None:
    a = redis_factory(extra_args=("--requirepass", PASSWORD))
    b = redis_factory(extra_args=("--requirepass", PASSWORD))
    cluster = Cluster(zk_hosts)
    cluster.layout([(0, 2047), (2048, 4095)])
    cluster.register(0, a.address)
    cluster.register(1, b.address)
    port = free_port()
    proxy = proxy_factory(pool_config(port, [f"{a.address}:0-2047", f"{b.address}:2048-4095"],
                              preconnect="true", redis_auth=PASSWORD, timeout=2000,
                              zookeeper_host=zk_hosts,
                              zookeeper_path=f"{PROXIES}/127.0.0.1:{port}",
                              zookeeper_redis_path=CLUSTER))
    stop = threading.Event()
    wrong: list[str] = []
    done = [0]

    def client(n: int) -> None:
        keys = [key_on(i % 2, b"pc%d" % n, i) for i in range(8)]
        with Raw("127.0.0.1", port) as conn:
            assert conn.call("AUTH", PASSWORD) == b"+OK\r\n"
            round_ = 0
            while not stop.is_set():
                values = [b"%d-%d-%d" % (n, round_, i) for i in range(len(keys))]
                conn.send(b"".join(b"SET %s %s\r\nGET %s\r\n" % (k, v, k)
                                   for k, v in zip(keys, values, strict=True)))
                replies = conn.replies(2 * len(keys))
                for i, value in enumerate(values):
                    if replies[2 * i + 1] != b"$%d\r\n%s\r\n" % (len(value), value):
                        wrong.append(f"client {n}: {replies[2 * i + 1]!r} for {value!r}")
                done[0] += 1
                round_ += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    def version() -> int:
        with Raw("127.0.0.1", port) as conn:
            assert conn.call("AUTH", PASSWORD) == b"+OK\r\n"
            info = conn.call("INFO", "proxy").decode()
        return int(info.split("table_version=")[1].split(",")[0])

    try:
        # replicas join and leave until the proxy has applied 200 new tables (it coalesces
        # changes that come quicker than it reads them); bounded in events and time
        deadline = time.monotonic() + 180
        for i in range(6000):
            if i % 20 == 0 and (version() >= 200 or time.monotonic() > deadline):
                break
            node = cluster.register(i % 2, f"127.0.0.1:{free_port()}")
            time.sleep(0.01)
            cluster.zk.delete(node)
            time.sleep(0.01)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    try:
        assert wrong == [], wrong[:5]
        assert done[0] > 200
        assert version() >= 200  # that many swaps (20 used to reach 84 connections)
        for server in (a, b):
            assert proxy_connections(server) == 1, proxy.log_tail(20)
    finally:
        cluster.close()  # (its session holds the masters' nodes)
