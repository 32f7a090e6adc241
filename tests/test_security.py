"""Security against real ZooKeeper and redis-server: with ``zookeeper_auth``/``zkAuth`` an
anonymous ZooKeeper client can read every node pyproxy created but change none; no secret or
secret-derived value is published; the watchdog guards a redis that has a password."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kazoo.exceptions import NoAuthError

from pyproxy import config
from tests.keys import keys_for_shard
from tests.servers import REPO_ROOT, free_port, pool_config, wait_until
from tests.test_watchdog import Watchdog

CLUSTER = "/redis/cluster/sec"
PROXIES = "/redis/proxy/sec"
AUTH = "pyproxy:a-long-secret"


def secure_config(port: int, zk_hosts: str, servers: list[str]) -> str:
    return pool_config(port, servers, timeout=1000, zookeeper_host=zk_hosts,
                       zookeeper_path=f"{PROXIES}/127.0.0.1:{port}",
                       zookeeper_redis_path=CLUSTER, zookeeper_auth=AUTH,
                       redis_auth="redis-secret")


def test_an_anonymous_client_can_read_but_change_nothing(
        zk_server: Any, zk_hosts: str, redis_factory: Any, proxy_factory: Any,
        tmp_path: Path) -> None:
    a = redis_factory(extra_args=("--requirepass", "redis-secret"))
    b = redis_factory(extra_args=("--requirepass", "redis-secret"))
    port = free_port()
    text = secure_config(port, zk_hosts, [f"{a.address}:0-2047", f"{b.address}:2048-4095"])
    conf = tmp_path / "icd.yml"
    conf.write_text(text)
    init = subprocess.run([sys.executable, "-m", "pyproxy.admin", "init", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert init.returncode == 0, init.stderr
    dog = Watchdog(zk_hosts, a, shard=f"{CLUSTER}/redis-0000", zkAuth=AUTH,
                   redisPassword="redis-secret")
    dog.start()
    proxy = proxy_factory(text)
    anonymous = zk_server.client(hosts=zk_hosts)
    try:
        shard = f"{CLUSTER}/redis-0000"
        wait_until(lambda: anonymous.get_children(shard), 10, "the watchdog registered", dog)
        own = f"{PROXIES}/127.0.0.1:{port}"
        wait_until(lambda: anonymous.exists(own) is not None, 10, "the proxy registered")
        (member,) = anonymous.get_children(shard)
        nodes = [PROXIES, CLUSTER, shard, f"{shard}/{member}", own]
        for node in nodes:
            anonymous.get(node)  # anyone may read
            with pytest.raises(NoAuthError):
                anonymous.set(node, b'{"weight":"0-4095"}')
        for node in (CLUSTER, shard):
            with pytest.raises(NoAuthError):
                anonymous.create(f"{node}/intruder", b"")
        with pytest.raises(NoAuthError):
            anonymous.delete(f"{shard}/{member}")
        # the published proxy node: nothing derived from the file, which holds the passwords
        info = json.loads(anonymous.get(own)[0])
        file_hash = hashlib.sha256(conf.read_bytes()).hexdigest()
        assert info["config_digest"] == config.parse(text).digest != file_hash
        assert "secret" not in anonymous.get(own)[0].decode()
        # the watchdog reached its password-protected redis and made it the master
        wait_until(lambda: a.client(password="redis-secret").execute_command("ROLE")[0]
                   == b"master", 10, "the guarded redis is master", dog)
        key = keys_for_shard(0, 1, "sec:")[0]  # shard 0: the one with a watchdog
        with proxy.client(password="redis-secret") as client:
            assert client.set(key, "v") and client.get(key) == b"v"
    finally:
        anonymous.stop()
        anonymous.close()
        dog.close()
