"""``pyproxy-admin`` as an operator reads it: ``slot`` without ZooKeeper, the words of
``init``, ``slot`` and ``check``; ``hotkeys`` from live proxies. ZooKeeper is a real server
(the session's, on a chroot)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from pyproxy.cluster import zkschema
from pyproxy.routing.hashing import slot_of
from tests.servers import REPO_ROOT, free_port, free_ports_in_a_row, pool_config, wait_until

CLUSTER = "/redis/cluster/icd"
SERVERS = ["127.0.0.1:7001:0-2047", "127.0.0.1:7002:2048-4095"]  # never contacted


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyproxy.admin", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


def zk_config(tmp_path: Path, zk_hosts: str) -> Path:
    port = free_port()
    path = tmp_path / "icd.yml"
    path.write_text(pool_config(port, SERVERS, zookeeper_host=zk_hosts,
                                zookeeper_path=f"/redis/proxy/icd/127.0.0.1:{port}",
                                zookeeper_redis_path=CLUSTER))
    return path


def test_slot_offline_computes_slot_and_configured_shard(tmp_path: Path) -> None:
    conf = zk_config(tmp_path, f"127.0.0.1:{free_port()}")  # nothing listens there
    key = "user:42"
    slot = slot_of(key.encode())
    shard, master = ("redis-0000", "127.0.0.1:7001") if slot < 2048 else \
        ("redis-0001", "127.0.0.1:7002")
    offline = admin("slot", key, "-c", str(conf), "--offline")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == (f"key 'user:42' slot {slot} shard {shard} master {master} "
                              "(config only: ZooKeeper not asked (--offline); the live master "
                              "may differ)\n")
    # ZooKeeper asked but not answering: the same answer, and why
    unreachable = admin("slot", key, "-c", str(conf), "--json")
    assert unreachable.returncode == 0, unreachable.stderr
    result = json.loads(unreachable.stdout)
    assert (result["slot"], result["shard"], result["master"], result["source"]) == \
        (slot, shard, master, "config")
    assert result["note"].startswith("cannot reach ZooKeeper at 127.0.0.1:")


def test_slot_without_a_master_says_none(tmp_path: Path, zk_hosts: str) -> None:
    conf = zk_config(tmp_path, zk_hosts)
    assert admin("init", "-c", str(conf)).returncode == 0
    located = admin("slot", "k", "-c", str(conf))
    assert located.returncode == 0, located.stderr
    assert located.stdout.endswith(" master NONE (zookeeper)\n"), located.stdout
    status = admin("status", "-c", str(conf))
    assert "master NONE" in status.stdout  # the same word in both


def test_init_refusal_shows_the_data_as_text(tmp_path: Path, zk_hosts: str) -> None:
    conf = zk_config(tmp_path, zk_hosts)
    assert admin("init", "-c", str(conf)).returncode == 0
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    try:
        zk.set(f"{CLUSTER}/redis-0000", zkschema.weight_data(0, 1000))
        zk.set(f"{CLUSTER}/redis-0001", b"")
    finally:
        zk.stop()
        zk.close()
    refused = admin("init", "-c", str(conf))
    assert refused.returncode == 1
    assert (f'{CLUSTER}/redis-0000: has {{"weight":"0-1000"}}, config says 0-2047; '
            f"{CLUSTER}/redis-0001: has no data, config says 2048-4095") in refused.stderr
    assert "b'" not in refused.stderr


def test_check_counts_pools_in_words(tmp_path: Path) -> None:
    one = admin("check", "-c", str(REPO_ROOT / "conf" / "example.yml"))
    assert one.stdout.endswith(": ok (1 pool)\n"), one
    two = tmp_path / "two.yml"
    two.write_text(pool_config(free_port(), SERVERS)
                   + pool_config(free_port(), SERVERS).replace("alpha:", "beta:"))
    assert admin("check", "-c", str(two)).stdout.endswith(": ok (2 pools)\n")


def test_status_and_slot_agree_with_a_registered_master(tmp_path: Path, zk_hosts: str,
                                                        redis_factory: Any) -> None:
    r = redis_factory()
    conf = zk_config(tmp_path, zk_hosts)
    assert admin("init", "-c", str(conf)).returncode == 0
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    try:
        zk.create(f"{CLUSTER}/redis-0000/{r.address}-", ephemeral=True, sequence=True)
        key = next(k for k in (f"k{i}" for i in range(1000)) if slot_of(k.encode()) < 2048)
        located = admin("slot", key, "-c", str(conf))
        assert located.stdout.endswith(f" shard redis-0000 master {r.address} (zookeeper)\n")
    finally:
        zk.stop()
        zk.close()


def _gets(port: int, keys: list[bytes], connections: int = 8) -> None:
    """Every key GET once, pipelined, spread over ``connections`` (``--workers`` share them)."""
    for index in range(connections):
        part = keys[index::connections]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k)
                                  for k in part))
            data = b""
            while data.count(b"$-1\r\n") < len(part):  # every key is missing
                chunk = sock.recv(65536)
                assert chunk, "the proxy closed the connection"
                data += chunk


def _hot_workload() -> list[bytes]:
    """4,000 distinct keys, 5 times each, and hot:key as a quarter of all requests."""
    keys = [b"k:%d" % (i % 4000) for i in range(20_000)] + [b"hot:key"] * 6_700
    random.Random(18).shuffle(keys)
    return keys


def test_hotkeys_finds_every_worker_through_zookeeper(tmp_path: Path, zk_hosts: str,
                                                      redis_factory: Any,
                                                      proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port, metrics = free_port(), free_ports_in_a_row(2)
    conf = tmp_path / "hot.yml"
    conf.write_text(pool_config(port, [f"{a.address}:0-2047", f"{b.address}:2048-4095"],
                                zookeeper_host=zk_hosts,
                                zookeeper_path=f"/redis/proxy/hot/127.0.0.1:{port}",
                                zookeeper_redis_path="/redis/cluster/hot"))
    assert admin("init", "-c", str(conf)).returncode == 0
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    try:
        for shard, redis in (("redis-0000", a), ("redis-0001", b)):  # as watchdogs would
            zk.create(f"/redis/cluster/hot/{shard}/{redis.address}-", ephemeral=True,
                      sequence=True)
        proxy_factory(conf.read_text(),
                      extra_args=("--workers", "2", "--metrics", f"127.0.0.1:{metrics}"))
        _hotkeys_of_two_workers(conf, port, metrics)
    finally:
        zk.stop()
        zk.close()


def _hotkeys_of_two_workers(conf: Path, port: int, metrics: int) -> None:
    """Both workers' nodes name their metrics ports; their summaries are added up."""

    def both_registered() -> bool:
        listed = admin("hotkeys", "-c", str(conf), "--json")
        return listed.returncode == 0 and len(json.loads(listed.stdout)["pools"][0]
                                               ["proxies"]) == 2
    wait_until(both_registered, 30, "both workers registered with their metrics ports")
    _gets(port, _hot_workload(), connections=16)  # the kernel spreads them over both

    found = admin("hotkeys", "-c", str(conf), "--json")
    assert found.returncode == 0, found.stderr
    (pool,) = json.loads(found.stdout)["pools"]
    assert sorted(pool["proxies"]) == [f"127.0.0.1:{metrics}", f"127.0.0.1:{metrics + 1}"]
    hot = pool["keys"][0]
    assert hot["key"] == "hot:key", pool["keys"][:3]
    owner = "redis-0001" if slot_of(b"hot:key") >= 2048 else "redis-0000"
    assert hot["shard"] == owner and 0.1 < hot["share"] < 0.5
    each = [_worker_samples(f"127.0.0.1:{metrics + i}") for i in (0, 1)]
    assert pool["samples"] == sum(each) and min(each) > 0, each

    printed = admin("hotkeys", "-c", str(conf), "-n", "3")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0].startswith("pool alpha: ") and "from 2 proxies" in lines[0]
    assert lines[2].endswith(" hot:key") and f" {owner} " in lines[2] and len(lines) <= 5


def _worker_samples(where: str) -> int:
    with urllib.request.urlopen(f"http://{where}/status.json", timeout=10) as page:
        return int(json.loads(page.read())["pools"][0]["hot_keys"]["samples"])


def test_hotkeys_at_a_given_metrics_address_and_its_refusals(tmp_path: Path,
                                                             redis_factory: Any,
                                                             proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port, metrics = free_port(), free_port()
    conf = tmp_path / "static.yml"
    conf.write_text(pool_config(port, [f"{a.address}:0-2047", f"{b.address}:2048-4095"]))
    proxy_factory(conf.read_text(), extra_args=("--metrics", f"127.0.0.1:{metrics}"))
    _gets(port, _hot_workload(), connections=1)
    found = admin("hotkeys", "--metrics", str(metrics), "--json")  # no config: a bare port
    assert found.returncode == 0, found.stderr
    (pool,) = json.loads(found.stdout)["pools"]
    assert pool["proxies"] == [f"127.0.0.1:{metrics}"] and pool["keys"][0]["key"] == "hot:key"

    static = admin("hotkeys", "-c", str(conf))  # nothing in ZooKeeper to find it by
    assert static.returncode == 1
    assert "has no zookeeper_* keys: give --metrics HOST:PORT" in static.stderr
    assert admin("hotkeys").returncode == 2
    wrong = admin("hotkeys", "--metrics", str(metrics), "--pool", "beta")
    assert wrong.returncode == 1 and "no pool named 'beta'" in wrong.stderr
    closed = admin("hotkeys", "--metrics", str(free_port()))
    assert closed.returncode == 1 and "/status.json: " in closed.stderr
