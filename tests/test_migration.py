"""Serving migrating slots (pyproxy/proxy/migration.py) against real redis-servers, ZooKeeper
and proxies, with the migration record written by the test as pyproxy-admin writes it.

Layout: redis-0000 owns 0-2047 on redis A, redis-0001 owns 2048-4095 on redis B; slots
1024-2047 migrate from redis-0000 to redis-0001. Keys in those slots are "moving" keys.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from pyproxy.cluster import zkschema
from pyproxy.routing.table import MOVING, PREPARE, Migration
from tests.cluster import call, encode
from tests.keys import keys_in_slots
from tests.servers import free_port, pool_config, wait_until
from tests.test_proxy import Raw

CLUSTER = "/redis/cluster/mig"
PROXIES = "/redis/proxy/mig"
DEADLINE = 10.0
MOVING_SLOTS = ((1024, 2047),)


class Layout:
    """The cluster's nodes, written by the test (standing in for pyproxy-admin)."""

    def __init__(self, hosts: str, a: Any, b: Any):
        self.zk = KazooClient(hosts=hosts, timeout=5.0)
        self.zk.start(timeout=10)
        self.zk.ensure_path(PROXIES)
        self.zk.create(f"{CLUSTER}/redis-0000", zkschema.weight_data(0, 2047), makepath=True)
        self.zk.create(f"{CLUSTER}/redis-0001", zkschema.weight_data(2048, 4095))
        self.zk.create(f"{CLUSTER}/redis-0000/{a.address}-", ephemeral=True, sequence=True)
        self.zk.create(f"{CLUSTER}/redis-0001/{b.address}-", ephemeral=True, sequence=True)

    def migrate(self, state: str, migration_id: str = "m1") -> str:
        """Record the migration of 1024-2047 to redis-0001; the layout digest proxies ack."""
        migration = Migration(MOVING_SLOTS, "redis-0001", migration_id, state)
        self.zk.set(f"{CLUSTER}/redis-0000", zkschema.shard_data(((0, 2047),), migration))
        return zkschema.layout_digest([("redis-0000", ((0, 2047),), migration),
                                       ("redis-0001", ((2048, 4095),), None)])

    def finish(self) -> str:
        transaction = self.zk.transaction()
        transaction.set_data(f"{CLUSTER}/redis-0000", zkschema.shard_data(((0, 1023),)))
        transaction.set_data(f"{CLUSTER}/redis-0001",
                             zkschema.shard_data(((1024, 4095),)))
        assert all(r is True or not isinstance(r, Exception) for r in transaction.commit())
        return zkschema.layout_digest([("redis-0000", ((0, 1023),), None),
                                       ("redis-0001", ((1024, 4095),), None)])

    def acknowledged(self, digest: str) -> bool:
        nodes = self.zk.get_children(PROXIES)
        infos = [zkschema.ProxyInfo.decode(self.zk.get(f"{PROXIES}/{n}")[0]) for n in nodes]
        return bool(infos) and all(info.layout == digest for info in infos)

    def wait_acknowledged(self, digest: str) -> None:
        wait_until(lambda: self.acknowledged(digest), DEADLINE, f"every proxy at {digest}")

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()


@pytest.fixture
def cluster(zk_hosts: str, redis_factory: Any,
            proxy_factory: Any) -> Iterator[tuple[Layout, Any, Any, list[str]]]:
    """(layout, redis A, redis B, [proxy addresses]) with two proxies on ZooKeeper's table."""
    a, b = redis_factory(), redis_factory()
    layout = Layout(zk_hosts, a, b)
    proxies = []
    for _ in range(2):
        port = free_port()
        proxy_factory(pool_config(
            port, [f"{a.address}:0-2047", f"{b.address}:2048-4095"], timeout=2000,
            zookeeper_host=zk_hosts, zookeeper_path=f"{PROXIES}/127.0.0.1:{port}",
            zookeeper_redis_path=CLUSTER))
        proxies.append(f"127.0.0.1:{port}")
    layout.wait_acknowledged(zkschema.layout_digest([("redis-0000", ((0, 2047),), None),
                                                     ("redis-0001", ((2048, 4095),), None)]))
    yield layout, a, b, proxies
    layout.close()


def moving_keys(count: int, prefix: str) -> list[str]:
    return keys_in_slots(1024, 2047, count, prefix)


def staying_keys(count: int, prefix: str) -> list[str]:
    return keys_in_slots(0, 1023, count, prefix)


def test_prepare_holds_requests_for_the_slots_until_they_move(cluster: Any) -> None:
    layout, a, b, proxies = cluster
    moving, staying = moving_keys(1, "p:")[0], staying_keys(1, "p:")[0]
    a.client().set(moving, "on-a")
    layout.wait_acknowledged(layout.migrate(PREPARE))
    with Raw(*tuple_of(proxies[0])) as held:
        held.cmd("GET", moving)
        assert call(proxies[1], "SET", staying, "now") == b"OK"  # other slots: served at once
        ready, _, _ = select.select([held.sock], [], [], 0.3)
        assert not ready, "a request for a slot being prepared was answered"
        assert a.client().get(moving) == b"on-a"  # and nothing ran anywhere
        layout.migrate(MOVING)
        assert held.reply() == b"$4\r\non-a\r\n"  # moved to the target, then read there
    assert a.client().exists(moving) == 0
    assert b.client().get(moving) == b"on-a"
    assert a.client().get(staying) == b"now"


def test_moving_keys_go_to_the_target_with_their_ttl_and_type(cluster: Any) -> None:
    layout, a, b, proxies = cluster
    k_str, k_hash, k_list, k_ttl, k_new = moving_keys(5, "m:")
    source = a.client()
    source.set(k_str, "v")
    source.hset(k_hash, mapping={"f": "1", "g": "2"})
    source.rpush(k_list, "x", "y")
    source.set(k_ttl, "t", ex=3600)
    layout.wait_acknowledged(layout.migrate(MOVING))
    proxy = proxies[0]
    assert call(proxy, "GET", k_str) == b"v"
    assert sorted(call(proxy, "HGETALL", k_hash)) == [b"1", b"2", b"f", b"g"]
    assert call(proxy, "LRANGE", k_list, 0, -1) == [b"x", b"y"]
    assert call(proxy, "INCR", k_new) == 1
    assert 3500 < call(proxy, "TTL", k_ttl) <= 3600
    target = b.client()
    for key in (k_str, k_hash, k_list, k_ttl, k_new):
        assert source.exists(key) == 0 and target.exists(key) == 1, key
    assert 3500 < target.ttl(k_ttl) <= 3600


def test_multi_key_commands_transactions_scripts_and_blocking_while_moving(
        cluster: Any) -> None:
    layout, a, b, proxies = cluster
    m1, m2, m3, m4 = moving_keys(4, "x:")
    s1 = staying_keys(1, "x:")[0]
    on_b = keys_in_slots(2048, 4095, 1, "x:")[0]
    source = a.client()
    source.mset({m1: "1", m2: "2", s1: "s"})
    source.rpush(m4, "popped")
    b.client().set(on_b, "b")
    layout.wait_acknowledged(layout.migrate(MOVING))
    proxy = proxies[1]
    assert call(proxy, "MGET", m1, s1, on_b, m2) == [b"1", b"s", b"b", b"2"]
    assert call(proxy, "MSET", m1, "10", s1, "20") == b"OK"
    assert a.client().get(s1) == b"20" and b.client().get(m1) == b"10"
    with Raw(*tuple_of(proxy)) as conn:
        for command in (("MULTI",), ("SET", m3, "a"), ("INCR", m2), ("EXEC",)):
            conn.cmd(*command)
        assert conn.replies(4) == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n",
                                   b"*2\r\n+OK\r\n:3\r\n"]
    assert b.client().get(m3) == b"a" and b.client().get(m2) == b"3"
    assert a.client().exists(m2, m3) == 0
    script = "return redis.call('GET', KEYS[1])"
    assert call(proxy, "EVAL", script, 1, m1) == b"10"
    assert call(proxy, "BLPOP", m4, 1) == [m4.encode(), b"popped"]  # moved, then popped
    mixed = call(proxy, "EVAL", "return 1", 2, m1, s1)
    assert str(mixed).startswith("TRYAGAIN pyproxy: some keys of 'EVAL' are in slots "
                                 "migrating"), mixed


def test_watch_on_a_moving_key_sees_another_proxys_write(cluster: Any) -> None:
    layout, a, b, proxies = cluster
    key = moving_keys(1, "w:")[0]
    a.client().set(key, "0")
    layout.wait_acknowledged(layout.migrate(MOVING))
    with Raw(*tuple_of(proxies[0])) as conn:
        assert conn.call("WATCH", key) == b"+OK\r\n"
        assert call(proxies[1], "SET", key, "other") == b"OK"  # through the other proxy
        for command in (("MULTI",), ("SET", key, "mine"), ("EXEC",)):
            conn.cmd(*command)
        assert conn.replies(3) == [b"+OK\r\n", b"+QUEUED\r\n", b"*-1\r\n"]
    assert b.client().get(key) == b"other"


def test_a_key_on_both_sides_resolves_for_the_target(cluster: Any) -> None:
    """The source failed over and lost a MIGRATE's delete: the target's copy is newer."""
    layout, a, b, proxies = cluster
    key = moving_keys(1, "busy:")[0]
    a.client().set(key, "stale")
    b.client().set(key, "newer")
    layout.wait_acknowledged(layout.migrate(MOVING))
    assert call(proxies[0], "GET", key) == b"newer"
    assert a.client().exists(key) == 0


def migration_counters(proxy: str) -> dict[str, int]:
    """``INFO proxy``'s ``pool_alpha_migration`` line as a dict."""
    info = call(proxy, "INFO", "proxy").decode()
    line = next(x for x in info.splitlines() if x.startswith("pool_alpha_migration:"))
    return {name: int(value) for name, value in
            (pair.split("=") for pair in line.partition(":")[2].split(","))}


def test_info_counts_what_serving_the_migration_did(cluster: Any) -> None:
    layout, a, b, proxies = cluster
    proxy, other = proxies
    assert migration_counters(proxy) == dict(moves=0, busy=0, move_errors=0, paused=0,
                                             pause_expired=0)
    held_key, both_key, moved_key = moving_keys(3, "count:")
    a.client().set(both_key, "stale")
    b.client().set(both_key, "newer")
    layout.wait_acknowledged(layout.migrate(PREPARE))
    with Raw(*tuple_of(proxy)) as held:
        held.cmd("GET", held_key)
        wait_until(lambda: migration_counters(proxy)["paused"] == 1, DEADLINE, "held")
        layout.migrate(MOVING)
        assert held.reply() == b"$-1\r\n"
    assert call(proxy, "GET", both_key) == b"newer"  # BUSYKEY: the source's copy deleted
    assert call(proxy, "SET", moved_key, "1") == b"OK"
    counted = migration_counters(proxy)
    # the held GET's key, the key on both sides and the SET's each took one MIGRATE
    assert counted == dict(moves=3, busy=1, move_errors=0, paused=1, pause_expired=0), counted
    assert migration_counters(other)["moves"] == 0  # per proxy: the other one served nothing


def test_finishing_routes_the_slots_to_the_target_directly(cluster: Any) -> None:
    layout, a, b, proxies = cluster
    key = moving_keys(1, "f:")[0]
    layout.wait_acknowledged(layout.migrate(MOVING))
    assert call(proxies[0], "SET", key, "1") == b"OK"
    layout.wait_acknowledged(layout.finish())
    assert call(proxies[1], "GET", key) == b"1"
    assert b.client().get(key) == b"1" and a.client().exists(key) == 0


def test_requests_sent_before_prepare_are_answered_before_the_acknowledgement(
        cluster: Any) -> None:
    """The acknowledgement waits for every request already on its way to the source: a
    pipeline in flight when prepare arrives has all landed on the source by then."""
    layout, a, b, proxies = cluster
    keys = moving_keys(200, "inflight:")
    stop = threading.Event()
    sent: list[str] = []

    def pipeline() -> None:
        with Raw(*tuple_of(proxies[0])) as conn:
            for round_ in range(1000):
                if stop.is_set():
                    return
                conn.send(b"".join(encode("SET", key, round_) for key in keys))
                if all(reply == b"+OK\r\n" for reply in conn.replies(len(keys))):
                    sent.append(str(round_))

    writer = threading.Thread(target=pipeline, daemon=True)
    writer.start()
    wait_until(lambda: len(sent) > 2, DEADLINE, "the pipeline running")
    digest = layout.migrate(PREPARE)
    layout.wait_acknowledged(digest)
    on_source = a.client().mget(keys)  # nothing can change them on the source from now on
    time.sleep(0.3)
    assert a.client().mget(keys) == on_source
    layout.migrate(MOVING)
    wait_until(lambda: a.client().exists(*keys) < len(keys), DEADLINE, "keys moving")
    stop.set()
    writer.join(DEADLINE)
    last = sent[-1].encode()  # every round was acknowledged whole: each key holds the last
    for key, on_a, on_b in zip(keys, a.client().mget(keys), b.client().mget(keys), strict=True):
        assert (on_a is None) != (on_b is None), key  # on exactly one side
        assert (on_a or on_b) == last, key


def tuple_of(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def test_a_blocked_pop_follows_its_key_to_the_target(cluster: Any) -> None:
    """BLPOP waiting on the source when its slot starts to migrate is taken back (CLIENT
    UNBLOCK ... TIMEOUT) and waits on the target, where the next push goes; one sent while
    the slot is being prepared waits for it to move."""
    layout, a, b, proxies = cluster
    early, late = moving_keys(2, "q:")
    with Raw(*tuple_of(proxies[0])) as waiting, Raw(*tuple_of(proxies[0])) as parked:
        waiting.cmd("BLPOP", early, 0)
        wait_until(lambda: a.client().info("clients")["blocked_clients"] == 1, DEADLINE,
                   "BLPOP blocked on the source")
        layout.wait_acknowledged(layout.migrate(PREPARE))
        parked.cmd("BLPOP", late, 0)
        layout.wait_acknowledged(layout.migrate(MOVING))
        wait_until(lambda: b.client().info("clients")["blocked_clients"] == 2, DEADLINE,
                   "both BLPOPs waiting on the target")
        assert a.client().info("clients")["blocked_clients"] == 0
        assert call(proxies[1], "RPUSH", early, "job-1") == 1
        assert call(proxies[1], "RPUSH", late, "job-2") == 1
        assert waiting.reply() == b"*2\r\n$%d\r\n%s\r\n$5\r\njob-1\r\n" % (len(early),
                                                                           early.encode())
        assert parked.reply() == b"*2\r\n$%d\r\n%s\r\n$5\r\njob-2\r\n" % (len(late),
                                                                          late.encode())
