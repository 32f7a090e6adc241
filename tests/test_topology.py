"""Live topology from ZooKeeper (issue 3): registration, following masters and weights,
bad topologies, ZooKeeper outages — against a real ZooKeeper 3.8 and real redis-servers.

Shard layout written here is exactly what watchdogs and ``pyproxy-admin init`` write:
``<cluster>/redis-000N`` with ``{"weight":"a-b"}`` and ephemeral sequential members
``<ip:port>-`` (created by a kazoo client standing in for the watchdogs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from pyproxy.cluster import zkschema
from pyproxy.cluster.topology import build_table
from pyproxy.routing.hashing import slot_of
from pyproxy.routing.table import RoutingTable, Shard, build
from tests.keys import keys_for_shard
from tests.servers import (
    RedisServer,
    ZooKeeperServer,
    free_port,
    pool_config,
    redis_client,
    two_shards,
    wait_until,
)

CLUSTER = "/redis/cluster/icd"
PROXIES = "/redis/proxy/icd"


# ---------------------------------------------------------------- pure: build_table


def _table(*shards: tuple[str, int, int, str | None]) -> RoutingTable:
    return build([Shard.of(n, s, e, m) for n, s, e, m in shards], 4096, 1, "zookeeper")


CURRENT = _table(("redis-0000", 0, 2047, "127.0.0.11:1"),
                 ("redis-0001", 2048, 4095, "127.0.0.12:1"))


def _view(w0: bytes, w1: bytes, m0: list[str], m1: list[str]) -> dict[str, Any]:
    return {"redis-0000": (w0, m0), "redis-0001": (w1, m1)}


def test_lowest_sequence_is_master_numerically() -> None:
    view = _view(b'{"weight":"0-2047"}', b'{"weight":"2048-4095"}',
                 ["a:1-0000000010", "b:1-0000000009"], ["c:1-0000000100", "d:1-0000000002"])
    table, problems = build_table(CURRENT, view, 2)
    assert problems == [] and table is not None
    assert [s.master for s in table.shards] == ["b:1", "d:1"]
    assert table.shards[0].replicas == ("a:1",) and table.version == 2


def test_overlapping_weights_keep_ranges_but_follow_masters() -> None:
    view = _view(b'{"weight":"0-3000"}', b'{"weight":"2048-4095"}', ["x:1-0000000001"], [])
    table, problems = build_table(CURRENT, view, 2)
    assert any("overlap" in p for p in problems)
    assert table is not None
    assert [s.ranges for s in table.shards] == [((0, 2047),), ((2048, 4095),)]
    assert [s.master for s in table.shards] == ["x:1", None]


def test_non_json_weight_keeps_that_shards_range() -> None:
    view = _view(b"garbage", b'{"weight":"2048-4095"}', ["x:1-0000000001"], ["y:1-0000000001"])
    table, problems = build_table(CURRENT, view, 2)
    assert problems and "redis-0000" in problems[0]
    assert table is not None and table.shards[0].first == 0 and table.shards[0].master == "x:1"


def test_unknown_shard_with_bad_data_rejects_everything() -> None:
    view = _view(b'{"weight":"0-2047"}', b'{"weight":"2048-4095"}', [], [])
    view["redis-0002"] = (b"{}", [])
    table, problems = build_table(CURRENT, view, 2)
    assert table is None and problems


# ---------------------------------------------------------------- helpers


class Cluster:
    """A kazoo client laying out the cluster and standing in for the watchdogs."""

    def __init__(self, hosts: str):
        self.zk = KazooClient(hosts=hosts, timeout=5.0)
        self.zk.start(timeout=10)

    def layout(self, weights: list[tuple[int, int]]) -> None:
        self.zk.ensure_path(PROXIES)
        for i, (start, end) in enumerate(weights):
            self.zk.create(f"{CLUSTER}/{zkschema.shard_name(i)}", zkschema.weight_data(start, end),
                           makepath=True)

    def register(self, shard: int, address: str, ephemeral: bool = True) -> str:
        path = f"{CLUSTER}/{zkschema.shard_name(shard)}/{zkschema.member_prefix(address)}"
        return str(self.zk.create(path, b"", ephemeral=ephemeral, sequence=True))

    def two_shards(self, a: Any, b: Any) -> tuple[str, str]:
        """Lay out 0-2047 / 2048-4095 with ``a`` and ``b`` as their masters; their nodes."""
        self.layout([(0, 2047), (2048, 4095)])
        return self.register(0, a.address), self.register(1, b.address)

    def proxies(self) -> list[str]:
        return sorted(self.zk.get_children(PROXIES)) if self.zk.exists(PROXIES) else []

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()


@pytest.fixture
def cluster(zk_hosts: str) -> Iterator[Cluster]:
    c = Cluster(zk_hosts)
    yield c
    c.close()


def proxy_config(port: int, zk_hosts: str, servers: list[str], session_ms: int = 2000,
                 timeout_ms: int = 1000, hold_ms: int | None = None) -> str:
    hold = {} if hold_ms is None else {"failover_hold": hold_ms}
    return pool_config(
        port, servers, timeout=timeout_ms, server_retry_timeout=500, server_failure_limit=2,
        zookeeper_host=zk_hosts, zookeeper_path=f"{PROXIES}/127.0.0.1:{port}",
        zookeeper_redis_path=CLUSTER, zookeeper_session_timeout=session_ms, **hold,
    )


def table_source(client: Any) -> str:
    return str(client.info("proxy")["pool_alpha"]["source"])


def table_version(client: Any) -> int:
    return int(client.info("proxy")["pool_alpha"]["table_version"])


def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; return the seconds it took."""
    start = time.monotonic()
    wait_until(check, timeout=timeout, what=what)
    return time.monotonic() - start


@pytest.fixture
def two_redis(redis_factory: Any) -> tuple[RedisServer, RedisServer, RedisServer]:
    """Three redis: two shard masters and one spare (a future replica / wrong address)."""
    return redis_factory(), redis_factory(), redis_factory()


def _start_proxy(proxy_factory: Any, zk_hosts: str, servers: list[str], **kw: Any) -> Any:
    port = free_port()
    return proxy_factory(proxy_config(port, zk_hosts, servers, **kw)), port


def _following(proxy_factory: Any, zk_hosts: str, servers: list[str],
               **kw: Any) -> tuple[Any, int, Any]:
    """A proxy over ``servers`` that already routes by ZooKeeper's table, and a client."""
    proxy, port = _start_proxy(proxy_factory, zk_hosts, servers, **kw)
    client = redis_client("127.0.0.1", port)
    eventually(lambda: table_source(client) == "zookeeper", 10, "first ZooKeeper table")
    return proxy, port, client


# ---------------------------------------------------------------- registration


def test_registers_ephemeral_node_and_removes_it_on_sigterm(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    a, b, _ = two_redis
    cluster.layout([(0, 2047), (2048, 4095)])
    proxy, port = _start_proxy(proxy_factory, zk_hosts,
                               two_shards(a, b))
    node = f"{PROXIES}/127.0.0.1:{port}"
    eventually(lambda: cluster.zk.exists(node) is not None, 10, "proxy registration")
    data, stat = cluster.zk.get(node)
    info = json.loads(data)
    assert stat.ephemeralOwner != 0
    assert info["pid"] == proxy.pid and info["listen"] == f"127.0.0.1:{port}"
    assert info["config_digest"] and info["version"]
    proxy.stop()
    assert proxy.returncode == 0
    # stop() waits for exit; the node must already be gone (closed session, not expiry)
    gone = eventually(lambda: cluster.zk.exists(node) is None, 1.0, "node removal")
    assert gone < 1.0


def test_registers_again_after_session_expiry_while_frozen(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    a, b, _ = two_redis
    cluster.two_shards(a, b)
    proxy, port = _start_proxy(proxy_factory, zk_hosts,
                               two_shards(a, b),
                               session_ms=1000)
    node = f"{PROXIES}/127.0.0.1:{port}"
    eventually(lambda: cluster.zk.exists(node) is not None, 10, "proxy registration")
    first_owner = cluster.zk.exists(node).ephemeralOwner
    proxy.pause()
    try:
        eventually(lambda: cluster.zk.exists(node) is None, 10, "expiry of the frozen proxy")
    finally:
        proxy.resume()
    eventually(lambda: cluster.zk.exists(node) is not None, 15, "re-registration")
    assert cluster.zk.exists(node).ephemeralOwner != first_owner
    client = redis_client("127.0.0.1", port)
    assert client.set("after-expiry", "1") and client.get("after-expiry") == b"1"
    client.close()


# ---------------------------------------------------------------- following the cluster


def test_zookeeper_masters_win_over_servers_list(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any, redis_factory: Any
) -> None:
    a, b, wrong = two_redis
    wrong2 = redis_factory()
    cluster.two_shards(a, b)
    # the servers list points both shards at the wrong redis servers
    proxy, port = _start_proxy(proxy_factory, zk_hosts,
                               [f"{wrong.address}:0-2047", f"{wrong2.address}:2048-4095"])
    client = redis_client("127.0.0.1", port)
    probe0, probe1 = keys_for_shard(0, 1, "probe")[0], keys_for_shard(1, 1, "probe")[0]

    def routed() -> bool:
        client.set(probe0, "x")
        client.set(probe1, "x")
        return a.client().exists(probe0) == 1 and b.client().exists(probe1) == 1

    eventually(routed, 10, "routing by ZooKeeper's masters")
    for key in keys_for_shard(0, 50):
        client.set(key, key)
    for key in keys_for_shard(1, 50):
        client.set(key, key)
    assert all(a.client().get(k) == k.encode() for k in keys_for_shard(0, 50))
    assert all(b.client().get(k) == k.encode() for k in keys_for_shard(1, 50))
    everything = [*keys_for_shard(0, 50), *keys_for_shard(1, 50)]
    assert wrong.client().exists(*everything) == 0 and wrong2.client().exists(*everything) == 0
    client.close()


def test_master_node_deleted_moves_writes_to_replica_on_same_connection(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    a, b, replica = two_redis
    cluster.layout([(0, 2047), (2048, 4095)])
    master_node = cluster.register(0, a.address)
    cluster.register(0, replica.address)
    cluster.register(1, b.address)
    _, _, client = _following(proxy_factory, zk_hosts, two_shards(a, b))
    key = keys_for_shard(0, 1, "fo")[0]
    client.set(key, "before")
    assert a.client().get(key) == b"before"
    cluster.zk.delete(master_node)

    def on_replica() -> bool:
        client.set(key, "after")
        return replica.client().get(key) == b"after"

    took = eventually(on_replica, 2.0, "writes on the replica")
    assert took < 2.0
    client.set(key, "final")  # once moved, nothing more reaches the old master
    assert replica.client().get(key) == b"final" and a.client().get(key) != b"final"
    client.close()


def test_two_weights_changed_in_one_transaction_move_slots(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    a, b, _ = two_redis
    cluster.two_shards(a, b)
    _, _, client = _following(proxy_factory, zk_hosts, two_shards(a, b))
    moving = [k for k in keys_for_shard(1, 400, "w") if slot_of(k.encode()) <= 3071][:20]
    assert moving
    tx = cluster.zk.transaction()
    tx.set_data(f"{CLUSTER}/redis-0000", zkschema.weight_data(0, 3071))
    tx.set_data(f"{CLUSTER}/redis-0001", zkschema.weight_data(3072, 4095))
    assert not any(isinstance(r, Exception) for r in tx.commit())

    def moved() -> bool:
        client.set(moving[0], "moved")
        return a.client().get(moving[0]) == b"moved"

    assert eventually(moved, 2.0, "slots 2048-3071 on shard 0") < 2.0
    for key in moving:
        client.set(key, "v")
    assert a.client().exists(*moving) == len(moving)
    client.close()


def test_bad_topologies_keep_routing_and_masterless_shard_errors_fast(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    a, b, _ = two_redis
    _, b_node = cluster.two_shards(a, b)
    # failover_hold 0: today's prompt error for a masterless shard (holding is tested below)
    proxy, _, client = _following(proxy_factory, zk_hosts, two_shards(a, b), hold_ms=0)
    k0, k1 = keys_for_shard(0, 1, "bad")[0], keys_for_shard(1, 1, "bad")[0]
    before = table_version(client)
    cluster.zk.set(f"{CLUSTER}/redis-0000", b'{"weight":"0-3000"}')  # overlaps shard 1
    cluster.zk.set(f"{CLUSTER}/redis-0001", b"not json at all")
    time.sleep(1.0)  # give a wrong implementation time to misbehave
    assert table_version(client) == before
    client.set(k0, "0")
    client.set(k1, "1")
    assert a.client().get(k0) == b"0" and b.client().get(k1) == b"1"
    assert proxy.is_running()
    # restore, then take shard 1's only member away: its keys fail fast, shard 0 unaffected
    cluster.zk.set(f"{CLUSTER}/redis-0000", zkschema.weight_data(0, 2047))
    cluster.zk.set(f"{CLUSTER}/redis-0001", zkschema.weight_data(2048, 4095))
    cluster.zk.delete(b_node)

    eventually(lambda: _no_master_at_once(client, k1), 5,
               "prompt error for the masterless shard")
    assert client.get(k0) == b"0"
    client.close()


def _no_master_at_once(client: Any, key: str) -> bool:
    """Whether a GET of ``key`` is answered within 0.5 s with the no-master error."""
    started = time.monotonic()
    try:
        client.get(key)
    except Exception as exc:  # redis.ResponseError
        return "no master" in str(exc) and time.monotonic() - started < 0.5
    return False


def test_a_member_no_one_can_connect_to_errors_at_once_without_a_traceback(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    """Issue 15, finding 6: a member whose host has a label over 63 characters used to kill
    the connect task (an uncaught UnicodeError from the IDNA codec) — every request to its
    shard then waited the full timeout, with a traceback in the log. Such a name is no
    member: its shard has no master and says so at once; the other shard never notices."""
    a, b, _ = two_redis
    a_node, _ = cluster.two_shards(a, b)
    proxy, _, client = _following(proxy_factory, zk_hosts, two_shards(a, b), hold_ms=0)
    k0, k1 = keys_for_shard(0, 1, "label")[0], keys_for_shard(1, 1, "label")[0]
    client.set(k0, "0")
    cluster.register(0, f"{'x' * 64}.example:6379")
    cluster.zk.delete(a_node)

    eventually(lambda: _no_master_at_once(client, k0), 5,
               "a prompt error for the shard whose member has a bad name")
    client.set(k1, "1")
    assert b.client().get(k1) == b"1"
    cluster.register(0, a.address)  # a usable master again: served

    def served() -> bool:
        try:
            return bool(client.get(k0) == b"0")
        except Exception:  # redis.ResponseError: no master yet
            return False

    eventually(served, 5, "shard 0 served by its master again")
    assert "Traceback" not in proxy.log_text()
    client.close()


def test_a_masterless_shard_holds_its_requests_until_zookeeper_names_one(
    cluster: Cluster, zk_hosts: str, two_redis: Any, proxy_factory: Any
) -> None:
    """ZooKeeper pools hold (failover_hold, 5000 ms by default): while shard 1 has no member,
    its requests wait, in order, and go to the master ZooKeeper names next; none fails."""
    a, b, c = two_redis
    _, b_node = cluster.two_shards(a, b)
    proxy, port, client = _following(proxy_factory, zk_hosts, two_shards(a, b))
    key = keys_for_shard(1, 1, "held")[0]
    results: list[Any] = []

    def pipeline() -> None:
        with redis_client("127.0.0.1", port, socket_timeout=10) as other:
            results.extend(other.pipeline(transaction=False).set(key, "1").incr(key)
                           .get(key).execute(raise_on_error=False))

    cluster.zk.delete(b_node)
    eventually(lambda: "-" in client.info("proxy")["pool_alpha_masters"].values(), 5,
               "shard 1 without a master")
    started = time.monotonic()
    worker = threading.Thread(target=pipeline)
    worker.start()
    time.sleep(0.5)
    assert not results  # held, not failed
    cluster.register(1, c.address)  # a new master for shard 1
    worker.join(10)
    assert results == [True, 2, b"2"] and time.monotonic() - started < 5.0
    assert c.client().get(key) == b"2" and b.client().get(key) is None
    client.close()


def test_zookeeper_down_at_start_then_appears_then_dies(
    zk_factory: Any, two_redis: Any, proxy_factory: Any
) -> None:
    a, b, _ = two_redis
    zk_port = free_port()
    port = free_port()
    hosts = f"127.0.0.1:{zk_port}"
    proxy = proxy_factory(proxy_config(port, hosts,
                                       two_shards(a, b)))
    client = redis_client("127.0.0.1", port)
    keys = keys_for_shard(0, 20) + keys_for_shard(1, 20)
    for key in keys:  # served from the servers list while ZooKeeper is absent
        assert client.set(key, key)
    assert a.client().exists(*keys_for_shard(0, 20)) == 20
    zk: ZooKeeperServer = zk_factory(port=zk_port)
    watcher = Cluster(zk.hosts)
    try:
        watcher.layout([(0, 2047), (2048, 4095)])
        # persistent members: closing this client must not take the masters away
        watcher.register(0, a.address, ephemeral=False)
        watcher.register(1, b.address, ephemeral=False)
        eventually(lambda: watcher.proxies() == [f"127.0.0.1:{port}"], 15,
                   "registration once ZooKeeper appears")
        eventually(lambda: table_source(client) == "zookeeper"
                   and "-" not in client.info("proxy")["pool_alpha_masters"].values(), 10,
                   "both masters from ZooKeeper")
    finally:
        watcher.close()
    zk.kill()
    ok = 0
    for i in range(300):
        key = keys[i % len(keys)]
        client.set(key, i)
        assert client.get(key) == str(i).encode()
        ok += 1
    assert ok == 300 and proxy.is_running()
    client.close()


# ---------------------------------------------------------------- pyproxy-admin


def _admin(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "pyproxy.admin", *args], capture_output=True,
                          text=True, timeout=30, env=env)


def test_admin_init_twice_status_and_slot(
    tmp_path: Any, cluster: Cluster, zk_hosts: str, two_redis: Any
) -> None:
    a, b, _ = two_redis
    conf = tmp_path / "icd.yml"
    conf.write_text(proxy_config(free_port(), zk_hosts,
                                 two_shards(a, b)))
    first = _admin("init", "-c", str(conf))
    assert first.returncode == 0, first.stderr
    assert "redis-0000" in first.stdout and "redis-0001" in first.stdout
    again = _admin("init", "-c", str(conf))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert zkschema.parse_shard(cluster.zk.get(f"{CLUSTER}/redis-0001")[0], "x") == (
        ((2048, 4095),), None)
    cluster.register(0, a.address)
    cluster.register(1, b.address)
    status = _admin("status", "-c", str(conf), "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert [s["master"] for s in view["shards"]] == [a.address, b.address]
    assert view["shards"][0]["members"][0]["role"] == "master"
    key = keys_for_shard(1, 1, "slotkey")[0]
    located = _admin("slot", key, "-c", str(conf), "--json")
    assert located.returncode == 0, located.stderr
    assert json.loads(located.stdout)["master"] == b.address
    # a different weight in ZooKeeper is refused without --force
    cluster.zk.set(f"{CLUSTER}/redis-0000", zkschema.weight_data(0, 1000))
    refused = _admin("init", "-c", str(conf))
    assert refused.returncode == 1 and "--force" in refused.stderr
    forced = _admin("init", "-c", str(conf), "--force")
    assert forced.returncode == 0
    assert zkschema.parse_shard(cluster.zk.get(f"{CLUSTER}/redis-0000")[0], "x") == (
        ((0, 2047),), None)


def test_admin_reports_unreachable_zookeeper_in_one_line(tmp_path: Any) -> None:
    conf = tmp_path / "icd.yml"
    conf.write_text(proxy_config(free_port(), f"127.0.0.1:{free_port()}",
                                 ["127.0.0.1:1:0-2047", "127.0.0.1:2:2048-4095"]))
    result = _admin("status", "-c", str(conf))
    assert result.returncode == 3
    assert "cannot reach ZooKeeper" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_register_adopts_the_node_its_own_session_created(zk_hosts: str) -> None:
    """A create whose reply was lost leaves our node behind: registering again must see it
    is this session's and stop, not retry forever."""
    import asyncio

    from pyproxy import config
    from pyproxy.cluster.topology import Topology
    from pyproxy.server import static_table

    pool = config.parse(proxy_config(free_port(), zk_hosts, ["127.0.0.1:1:0-2047",
                                                             "127.0.0.1:2:2048-4095"])).pools[0]
    table = static_table(pool)

    async def drained(_: object) -> bool:
        return True

    async def scenario() -> int:
        topology = Topology(pool, "digest", lambda: table, lambda _: None, drained)
        topology.start()
        try:
            for _ in range(200):
                if topology.stats.registrations:
                    break
                await asyncio.sleep(0.05)
            assert topology.stats.registrations == 1
            topology._registered = None  # as if the create's reply had been lost
            await asyncio.wait_for(topology._register(), timeout=5)
            return topology.stats.registrations
        finally:
            await topology.stop()

    assert asyncio.run(scenario()) == 1  # adopted, not created twice


def test_proxy_info_round_trips_and_leaves_out_what_a_newer_proxy_adds() -> None:
    info = zkschema.ProxyInfo("127.0.0.1:22121", "0.1.0", 42, 1.5, "d", 3, "alpha",
                              metrics="127.0.0.1:22123")
    assert zkschema.ProxyInfo.decode(info.encode()) == info
    newer = json.loads(info.encode()) | {"shiny": True}
    assert zkschema.ProxyInfo.decode(json.dumps(newer).encode()) == info
    with pytest.raises(zkschema.SchemaError):
        zkschema.ProxyInfo.decode(b"[1, 2]")
    with pytest.raises(zkschema.SchemaError):
        zkschema.ProxyInfo.decode(b'{"listen": "127.0.0.1:1"}')  # the required ones missing
