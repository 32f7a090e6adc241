"""Non-Python clients from npm with their defaults: ioredis (multi, defineCommand, scanStream)
and node-redis (multi, scanIterator) against the proxy over two real redis-servers.

The clients are pinned in tests/node/package.json (and its lock file); ``npm ci`` installs
them into tests/node/node_modules the first time this module runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ProxyProcess
from tests.test_proxy import Cluster, key_on, two_shard_cluster, two_shard_config

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_clients() -> Path:
    """tests/node with its npm packages installed (``npm ci`` when they are missing)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian: apt-get install nodejs npm)",
                        pytrace=False)
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}",
                        pytrace=False)
    return NODE_DIR


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_shard_cluster() as running:
        yield running


def run_clients(port: int, prefix: str, cross: tuple[bytes, bytes]) -> dict[str, Any]:
    directory = node_clients()
    command = ["node", "clients.js", str(port), prefix, *(k.decode() for k in cross)]
    done = subprocess.run(command, cwd=directory,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_ioredis_and_node_redis_defaults(cluster: Cluster) -> None:
    scan_keys = sorted(f"npm:scan:{i}" for i in range(300))
    for key in scan_keys:
        cluster.backend(key.encode()).client().set(key, "v")
    assert {cluster.backend(k.encode()) for k in scan_keys} == {cluster.a, cluster.b}
    cross = key_on(0, b"npm:x"), key_on(1, b"npm:y")  # on different shards
    out = run_clients(cluster.port, "npm", cross)
    io, nr = out["ioredis"], out["noderedis"]
    assert io["exec"] == [[None, "OK"], [None, 1], [None, "1"]]
    assert io["added"] == [2, 4]
    assert io["scanned"] == scan_keys and nr["scanned"] == scan_keys
    assert nr["exec"] == ["OK", 1, "1"]
    assert "EXECABORT" in (io["failedTransaction"] or "")  # refused, and nothing written
    for server in (cluster.a, cluster.b):
        assert server.client().exists(*cross) == 0
    assert cluster.backend(b"npm:{io}a").client().get("npm:{io}a") == b"1"


def test_ioredis_subscriber_hears_what_a_second_proxy_publishes(cluster: Cluster) -> None:
    with ProxyProcess(two_shard_config(cluster.a, cluster.b, timeout=5000)) as second:
        channels = [key_on(0, b"npm:ch").decode(), key_on(1, b"npm:ch").decode()]
        done = subprocess.run(["node", "pubsub.js", str(cluster.port), str(second.port),
                               *channels], cwd=node_clients(), capture_output=True, text=True,
                              timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    heard = json.loads(done.stdout)
    for channel in channels:  # every message, in order, on both shards' channels
        assert [m for c, m in heard if c == channel] == [f"{channel}#{i}" for i in range(5)]
