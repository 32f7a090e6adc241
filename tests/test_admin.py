"""``pyproxy-admin`` as an operator reads it: ``slot`` without ZooKeeper, the words of
``init``, ``slot`` and ``check``. ZooKeeper is a real server (the session's, on a chroot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from pyproxy.cluster import zkschema
from pyproxy.routing.hashing import slot_of
from tests.servers import REPO_ROOT, free_port, pool_config

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
