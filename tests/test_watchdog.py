"""The watchdog against a real ZooKeeper and real redis-servers (127.0.0.1 only).

Each watchdog is a subprocess (``python -m pyproxy.watchdog``) so SIGKILL/SIGSTOP are real.
Settings: zkSessionTimeout 1500 ms, healthCheckInterval 100 ms, healthCheckTimeout 200 ms,
healthCheckFailures 3. Deadlines are generous (10 s); speeds are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyproxy.cluster import zkschema
from tests.cluster import read_reply
from tests.servers import (
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    TcpRelay,
    ZooKeeperServer,
    free_port,
    wait_until,
)

SHARD = "/redis/cluster/icd/redis-0000"
SESSION_MS = 1500
DEADLINE = 10.0
CONF = {
    "zkSessionTimeout": SESSION_MS,
    "healthCheckInterval": 100,
    "healthCheckTimeout": 200,
    "healthCheckFailures": 3,
    "logLevel": "INFO",
}


class Watchdog(ManagedProcess):
    """``python -m pyproxy.watchdog -f zoo-watchdog.conf -dc ADDRESS SHARD``; log in
    watchdog.log. Ready once it logged its ZooKeeper session."""

    name = "watchdog"
    log_name = "watchdog.log"

    def __init__(self, zk_hosts: str, redis: RedisServer, shard: str = SHARD,
                 extra_args: tuple[str, ...] = (), **conf: Any) -> None:
        super().__init__()
        self.redis = redis
        self.shard = shard
        self.extra_args = extra_args
        self.conf = {"zkServersList": zk_hosts, **CONF, **conf}

    def _where(self) -> str:
        return self.redis.address

    def _prepare(self) -> None:
        assert self.dir is not None
        (self.dir / "zoo-watchdog.conf").write_text(
            "".join(f"{k} = {v}\n" for k, v in self.conf.items()))

    def _env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "pyproxy.watchdog", "-f", "zoo-watchdog.conf",
                "-dc", self.redis.address, self.shard, *self.extra_args]

    def _wait_ready(self, timeout: float) -> None:
        wait_until(lambda: "ZooKeeper connected" in self.log_text(), timeout,
                   f"watchdog of {self.redis.address} to connect", self)


@pytest.fixture
def zk(zk_server: ZooKeeperServer, zk_hosts: str) -> Iterator[Any]:
    client = zk_server.client(hosts=zk_hosts)
    client.ensure_path(SHARD.rsplit("/", 1)[0])
    client.create(SHARD, zkschema.weight_data(0, 2047))
    yield client
    client.stop()
    client.close()


@pytest.fixture
def watchdog_factory(zk_hosts: str) -> Iterator[Callable[..., Watchdog]]:
    made: list[Watchdog] = []

    def make(redis: RedisServer, hosts: str | None = None, **kw: Any) -> Watchdog:
        w = Watchdog(hosts or zk_hosts, redis, **kw)
        made.append(w)
        w.start()
        return w

    yield make
    for w in made:  # shown by pytest when the test failed
        print(f"--- {w!r} ---\n{w.log_tail(80)}")
    for w in reversed(made):
        w.close()


# --------------------------------------------------------------------------- helpers


def members(zk: Any, shard: str = SHARD) -> list[str]:
    return [m.name for m in zkschema.order_members(zk.get_children(shard))]


def addresses(zk: Any) -> list[str]:
    return [name.rsplit("-", 1)[0] for name in members(zk)]


def role(r: RedisServer) -> list[Any]:
    with socket.create_connection((r.host, r.port), timeout=2) as s:
        s.sendall(b"ROLE\r\n")
        return read_reply(s)


def is_master(r: RedisServer) -> bool:
    try:
        return bool(role(r)[0] == b"master")
    except OSError:
        return False


def replicates(r: RedisServer, master: RedisServer, synced: bool = True) -> bool:
    try:
        rl = role(r)
    except OSError:
        return False
    return (rl[0] == b"slave" and rl[1].decode() == master.host and rl[2] == master.port
            and (not synced or rl[3] == b"connected"))


def try_set(r: RedisServer, key: str, timeout: float = 1.0) -> bytes | str:
    """SET key on a fresh connection: the raw reply (b"OK"), an error text, or "timeout"."""
    try:
        with socket.create_connection((r.host, r.port), timeout=timeout) as s:
            s.sendall(f"SET {key} 1\r\n".encode())
            reply = read_reply(s)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc}"
    return reply if isinstance(reply, bytes) else str(reply)


def start_pair(redis_factory: Any, watchdog_factory: Any, zk: Any,
               n: int = 2) -> tuple[list[RedisServer], list[Watchdog]]:
    """``n`` redis + watchdogs, started in order, each registered before the next."""
    servers: list[RedisServer] = []
    dogs: list[Watchdog] = []
    for i in range(n):
        r = redis_factory()
        servers.append(r)
        dogs.append(watchdog_factory(r))
        wait_until(lambda: len(members(zk)) == len(servers), DEADLINE, f"member {i} registered")
    master, replicas = servers[0], servers[1:]
    wait_until(lambda: all(replicates(r, master) for r in replicas), DEADLINE, "replicas synced")
    wait_until(lambda: try_set(master, "ready") == b"OK", DEADLINE, "master writable")
    return servers, dogs


def readonly(reply: bytes | str) -> bool:
    return isinstance(reply, str) and reply.startswith("READONLY")


def node_of(zk: Any, r: RedisServer) -> str | None:
    names = [n for n in members(zk) if n.rsplit("-", 1)[0] == r.address]
    return names[0] if names else None


# --------------------------------------------------------------------------- tests


def test_registration_order_roles_and_metrics(zk: Any, redis_factory: Any,
                                              watchdog_factory: Any) -> None:
    metrics_port = free_port()
    a, b, c = redis_factory(), redis_factory(), redis_factory()
    watchdog_factory(a, extra_args=("--metrics", f"127.0.0.1:{metrics_port}"))
    wait_until(lambda: len(members(zk)) == 1, DEADLINE, "a registered")
    watchdog_factory(b)
    wait_until(lambda: len(members(zk)) == 2, DEADLINE, "b registered")
    watchdog_factory(c)
    wait_until(lambda: len(members(zk)) == 3, DEADLINE, "c registered")

    assert members(zk) == [f"{a.address}-0000000000", f"{b.address}-0000000001",
                           f"{c.address}-0000000002"]
    wait_until(lambda: replicates(b, a) and replicates(c, a), DEADLINE, "b, c replicate a")
    wait_until(lambda: try_set(a, "k") == b"OK", DEADLINE, "a writable")
    assert readonly(try_set(b, "k"))
    wait_until(lambda: b.client().get("k") == b"1" == c.client().get("k"), DEADLINE,
               "the write replicated")

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "pyproxy_watchdog_master 1.0" in text
    assert "pyproxy_watchdog_registered 1.0" in text
    assert 'pyproxy_watchdog_health_checks_total{result="ok"}' in text


def watchdog_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as page:
        return dict(json.loads(page.read()))


def test_status_page_shows_the_members_and_a_promotion(zk: Any, redis_factory: Any,
                                                      watchdog_factory: Any) -> None:
    """The watchdog's metrics port serves a status page too: its redis, its node, the shard's
    members in order, and what it did (the replica's watchdog, across a failover)."""
    a, b = redis_factory(), redis_factory()
    port_a, port_b = free_port(), free_port()
    watchdog_factory(a, extra_args=("--metrics", f"127.0.0.1:{port_a}"))
    wait_until(lambda: len(members(zk)) == 1, DEADLINE, "a registered")
    watchdog_factory(b, extra_args=("--metrics", f"127.0.0.1:{port_b}"))
    wait_until(lambda: replicates(b, a), DEADLINE, "b replicates a")
    node_a, node_b = members(zk)

    def seen(port: int, master: str) -> bool:
        listed = watchdog_status(port)["zookeeper"]["members"] or []
        return bool(listed) and listed[0]["node"] == master
    wait_until(lambda: seen(port_b, node_a) and len(watchdog_status(port_b)["zookeeper"]
                                                    ["members"]) == 2, DEADLINE, "b's view")
    before = watchdog_status(port_b)
    assert before["redis"] == b.address and before["shard"] == SHARD
    assert before["health"]["role"] == "slave" and before["health"]["follows"] == a.address
    assert before["zookeeper"]["connected"] and before["zookeeper"]["node"] == node_b
    assert [(m["address"], m["master"], m["me"]) for m in before["zookeeper"]["members"]] == [
        (a.address, True, False), (b.address, False, True)]
    assert f"made a replica of {a.address}" in [e["text"] for e in before["events"]]
    assert not before["fenced"] and before["promotions"] == 0

    a.kill()
    wait_until(lambda: seen(port_b, node_b) and watchdog_status(port_b)["promotions"] == 1,
               DEADLINE, "b promoted, as its page says")
    after = watchdog_status(port_b)
    assert after["health"]["role"] == "master" and after["zookeeper"]["members"] == [
        {"node": node_b, "address": b.address, "master": True, "me": True}]
    assert f"promoted to master (previous master {a.address})" in [
        e["text"] for e in after["events"]]
    with urllib.request.urlopen(f"http://127.0.0.1:{port_b}/", timeout=5) as page:
        assert page.headers["Content-Type"].startswith("text/html")
        html = page.read().decode()
    assert "<table class=\"members\">" in html and node_b in html and node_a not in html
    assert "promoted to master" in html and "connected, session 0x" in html
    gone = watchdog_status(port_a)  # a's watchdog still answers, its redis gone
    assert gone["health"]["ok"] is False and gone["health"]["failures"] >= 1


def test_killed_master_replaced_then_rejoins_as_replica(zk: Any, redis_factory: Any,
                                                        watchdog_factory: Any) -> None:
    (a, b, c), _ = start_pair(redis_factory, watchdog_factory, zk, n=3)
    a.client().mset({f"key{i}": i for i in range(100)})
    wait_until(lambda: b.client().dbsize() == 101 == c.client().dbsize(), DEADLINE,
               "replicated")

    t0 = time.monotonic()
    a.kill()
    wait_until(lambda: is_master(b), DEADLINE, "b promoted")
    failover = time.monotonic() - t0
    wait_until(lambda: try_set(b, "after") == b"OK", DEADLINE, "b writable")
    writable = time.monotonic() - t0
    print(f"\nSIGKILL master -> replica is master (REPLICAOF NO ONE): {failover * 1000:.0f} ms;"
          f" -> a write acknowledged: {writable * 1000:.0f} ms")

    assert addresses(zk) == [b.address, c.address]
    wait_until(lambda: replicates(c, b), DEADLINE, "c follows the new lowest node (b)")
    assert b.client().get("key99") == b"99"
    wait_until(lambda: c.client().get("after") == b"1", DEADLINE, "c gets b's writes")

    a.restart()  # empty
    wait_until(lambda: node_of(zk, a) is not None, DEADLINE, "a registered again")
    assert members(zk)[-1] == f"{a.address}-0000000003"  # a higher sequence: a replica
    wait_until(lambda: replicates(a, b), DEADLINE, "a replicates b")
    wait_until(lambda: a.client().get("after") == b"1", DEADLINE, "a synced from b")
    assert a.client().get("key42") == b"42"
    assert is_master(b) and readonly(try_set(a, "x"))


def test_hung_master_replaced_and_steps_down(zk: Any, redis_factory: Any,
                                             watchdog_factory: Any) -> None:
    (a, b), _ = start_pair(redis_factory, watchdog_factory, zk)
    a.client().set("before", "1")
    wait_until(lambda: b.client().get("before") == b"1", DEADLINE, "replicated")

    t0 = time.monotonic()
    a.pause()
    try:
        wait_until(lambda: is_master(b), DEADLINE, "b promoted")
        print(f"\nSIGSTOP master -> replica is master: {(time.monotonic() - t0) * 1000:.0f} ms")
        wait_until(lambda: addresses(zk) == [b.address], DEADLINE, "a's node deleted")
        assert try_set(b, "after") == b"OK"
        # A client that writes to the hung ex-master after the failover: its SET waits in
        # a's socket and must not be accepted when a wakes up.
        stale = socket.create_connection((a.host, a.port), timeout=DEADLINE)
        stale.sendall(b"SET stale 1\r\n")
    finally:
        a.resume()

    replies: list[Any] = []

    def hammer() -> None:  # fresh writers while a wakes up: none may succeed
        while not replicates(a, b) and len(replies) < 200:
            replies.append(try_set(a, "hammer", timeout=DEADLINE))
            time.sleep(0.02)

    writer = threading.Thread(target=hammer)
    writer.start()
    stale_reply = read_reply(stale)
    stale.close()
    writer.join(DEADLINE * 2)
    assert not isinstance(stale_reply, bytes), stale_reply
    assert str(stale_reply).startswith("READONLY")
    assert b"OK" not in replies, replies

    wait_until(lambda: replicates(a, b), DEADLINE, "a replicates b")
    wait_until(lambda: node_of(zk, a) is not None, DEADLINE, "a registered again")
    assert addresses(zk) == [b.address, a.address]
    wait_until(lambda: a.client().get("after") == b"1", DEADLINE, "a synced from b")
    assert b.client().get("stale") is None and b.client().get("hammer") is None
    assert a.client().get("stale") is None
    assert is_master(b)


def test_replica_watchdog_crash_removes_only_its_node(zk: Any, redis_factory: Any,
                                                      watchdog_factory: Any) -> None:
    (a, b), (wa, wb) = start_pair(redis_factory, watchdog_factory, zk)
    a_node = node_of(zk, a)
    wb.kill()
    t0 = time.monotonic()
    writes: list[Any] = []
    while node_of(zk, b) is not None:
        assert time.monotonic() - t0 < DEADLINE, "b's node did not expire"
        writes.append(try_set(a, "w"))
        time.sleep(0.05)
    print(f"\nwatchdog SIGKILL -> its node gone: {(time.monotonic() - t0) * 1000:.0f} ms")
    assert set(writes) == {b"OK"}, "the master was disturbed"
    assert members(zk) == [a_node]
    assert replicates(b, a)

    wb.start()
    wait_until(lambda: node_of(zk, b) is not None, DEADLINE, "b registered again")
    assert members(zk) == [a_node, f"{b.address}-0000000002"]
    assert is_master(a) and try_set(a, "w2") == b"OK" and replicates(b, a)


def test_sigterm_unregisters_at_once_and_logs_to_log_file(zk: Any, redis_factory: Any,
                                                          watchdog_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    watchdog_factory(a)
    wait_until(lambda: len(members(zk)) == 1, DEADLINE, "a registered")
    wb = watchdog_factory(b, logFile="wd.log", logLevel="DEBUG")
    wait_until(lambda: len(members(zk)) == 2, DEADLINE, "b registered")
    assert wb.stop() is True, "did not exit on SIGTERM"
    assert wb.returncode == 0
    assert addresses(zk) == [a.address]  # deleted before the session closed, not expired
    assert wb.dir is not None
    text = (wb.dir / "wd.log").read_text()
    assert f"[{b.address}]" in text and "deleted node" in text and "shutting down" in text
    assert "shutting down" in wb.log_text()  # -d (of -dc): stderr gets a copy


def test_master_watchdog_crash_hands_over_without_two_masters(
        zk: Any, redis_factory: Any, watchdog_factory: Any) -> None:
    (a, b), (wa, wb) = start_pair(redis_factory, watchdog_factory, zk)
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            if try_set(a, f"w{i}", timeout=0.5) == b"OK":
                acked.append(i)
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        wa.kill()  # a keeps running, unwatched; its node expires after the session timeout
        wait_until(lambda: is_master(b), DEADLINE, "b promoted")
        print(f"\nSIGKILL of the master's watchdog -> replica is master: "
              f"{(time.monotonic() - t0) * 1000:.0f} ms ({len(acked)} writes acknowledged)")
        wait_until(lambda: replicates(a, b, synced=False), DEADLINE, "a demoted by b")
    finally:
        stop.set()
        thread.join()
    assert acked, "no write reached a before the handover"
    rb = b.client()
    missing = [i for i in acked if rb.get(f"w{i}") is None]
    assert not missing, f"writes acknowledged by a but lost: {missing[:10]}"
    assert readonly(try_set(a, "late"))

    wa.start()
    wait_until(lambda: node_of(zk, a) is not None, DEADLINE, "a registered again")
    assert addresses(zk) == [b.address, a.address]
    assert is_master(b) and replicates(a, b, synced=False)


def test_frozen_watchdog_reregisters_without_flapping(zk: Any, redis_factory: Any,
                                                      watchdog_factory: Any) -> None:
    """SIGSTOP a watchdog past its session timeout: its session expires. The replica's
    watchdog simply re-registers; the master's wakes up with a stale view and must not take
    the master role back (its redis was handed over meanwhile)."""
    (a, b), (wa, wb) = start_pair(redis_factory, watchdog_factory, zk)
    wb.pause()
    wait_until(lambda: node_of(zk, b) is None, DEADLINE, "b's session expired")
    wb.resume()
    wait_until(lambda: node_of(zk, b) is not None, DEADLINE, "b registered again")
    assert addresses(zk) == [a.address, b.address] and replicates(b, a)

    wa.pause()
    wait_until(lambda: is_master(b), DEADLINE, "b promoted")
    wait_until(lambda: replicates(a, b, synced=False), DEADLINE, "a demoted by b")
    wa.resume()
    wait_until(lambda: node_of(zk, a) is not None, DEADLINE, "a registered again")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:  # a stable cluster, no ping-pong
        assert addresses(zk) == [b.address, a.address]
        assert is_master(b) and not is_master(a)
        time.sleep(0.05)
    assert "promoted" not in wa.log_text()


def test_quick_restart_of_master_counts_as_failure(zk: Any, redis_factory: Any,
                                                   watchdog_factory: Any) -> None:
    """Restarted (empty) faster than healthCheckFailures checks: the new run_id gives it
    away; it must rejoin as a replica, not stay master."""
    (a, b), _ = start_pair(redis_factory, watchdog_factory, zk)
    a.kill()
    a.restart()
    wait_until(lambda: is_master(b), DEADLINE, "b promoted")
    wait_until(lambda: replicates(a, b), DEADLINE, "a replicates b")
    wait_until(lambda: addresses(zk) == [b.address, a.address], DEADLINE, "a re-registered")
    assert int(members(zk)[1].rsplit("-", 1)[1]) >= 2


def replica_watchdog_waiting(redis_factory: Any, watchdog_factory: Any, zk: Any,
                             session_ms: int = SESSION_MS
                             ) -> tuple[RedisServer, RedisServer, Watchdog]:
    """Master a without a watchdog, b ``--replicaof a``; b's watchdog finds the shard empty
    with b's link up (what every replica's watchdog finds after a ZooKeeper-wide session
    loss) and waits for a's node instead of registering, for ``session_ms``."""
    a = redis_factory()
    b = redis_factory(extra_args=("--replicaof", a.host, str(a.port)))
    wait_until(lambda: replicates(b, a), DEADLINE, "b replicates a")
    wb = watchdog_factory(b, zkSessionTimeout=session_ms)
    wait_until(lambda: "waiting up to" in wb.log_text(), DEADLINE, "b's watchdog waits", wb)
    assert members(zk) == []
    return a, b, wb


def test_linked_replica_registers_behind_its_master(zk: Any, redis_factory: Any,
                                                    watchdog_factory: Any) -> None:
    """The master's watchdog registers within the wait: the replica registers behind it.
    (The wait, b's session, is long here: a's watchdog has to start within it, and a Python
    process took 1.9 s to start on a busy box.)"""
    a, b, wb = replica_watchdog_waiting(redis_factory, watchdog_factory, zk, session_ms=6000)
    watchdog_factory(a)
    wait_until(lambda: len(members(zk)) == 2, DEADLINE, "both registered")
    assert addresses(zk) == [a.address, b.address]
    assert is_master(a) and replicates(b, a) and try_set(a, "k") == b"OK"
    assert "promoted" not in wb.log_text()


def test_linked_replica_registers_after_the_wait_and_takes_over(
        zk: Any, redis_factory: Any, watchdog_factory: Any) -> None:
    """No node for the master within one session timeout (its watchdog is dead): the replica
    registers anyway and takes over by the handover sequence (fence a, catch up, promote,
    demote a): the master's writes are kept."""
    t0 = time.monotonic()
    a, b, wb = replica_watchdog_waiting(redis_factory, watchdog_factory, zk)
    a.client().mset({f"w{i}": i for i in range(100)})
    wait_until(lambda: node_of(zk, b) is not None, DEADLINE, "b registered after the wait")
    print(f"\nthe replica registered {(time.monotonic() - t0) * 1000:.0f} ms after its "
          f"watchdog started (session timeout {SESSION_MS} ms)")
    wait_until(lambda: is_master(b), DEADLINE, "b promoted")
    wait_until(lambda: replicates(a, b, synced=False), DEADLINE, "a demoted by b")
    assert "previous master" in wb.log_text() and "fenced" in wb.log_text()
    assert b.client().mget([f"w{i}" for i in range(100)]) == [str(i).encode() for i in range(100)]
    assert readonly(try_set(a, "late"))


def test_zookeeper_restart_pauses_master_then_resumes(zk_factory: Any, redis_factory: Any,
                                                      watchdog_factory: Any) -> None:
    """While the watchdogs cannot reach ZooKeeper the master is fenced (its writes wait);
    ZooKeeper back with the same sessions: same nodes, same master, writes resume.
    (A longer session timeout here: the sessions must survive the restart, i.e. every
    watchdog must reconnect within it after ZooKeeper serves again, even on a busy box.)"""
    server = zk_factory()
    client = server.client()
    client.ensure_path(SHARD)
    try:
        a, b = redis_factory(), redis_factory()
        watchdog_factory(a, hosts=server.hosts, zkSessionTimeout=4000)
        wait_until(lambda: len(members(client)) == 1, DEADLINE, "a registered")
        watchdog_factory(b, hosts=server.hosts, zkSessionTimeout=4000)
        wait_until(lambda: len(members(client)) == 2, DEADLINE, "b registered")
        wait_until(lambda: replicates(b, a) and try_set(a, "k") == b"OK", DEADLINE, "ready")
        before = members(client)
        client.stop()
        server.stop()
        wait_until(lambda: try_set(a, "k", timeout=0.3) == "timeout", DEADLINE,
                   "a's writes paused while ZooKeeper is away")
        server.start()
        client.start(timeout=10)
        wait_until(lambda: try_set(a, "k", timeout=0.3) == b"OK", DEADLINE, "a writable again")
        assert members(client) == before
        assert is_master(a) and replicates(b, a)
    finally:
        client.stop()
        client.close()


class MasterWatch:
    """Polls ROLE of each of ``servers`` in every ``wait`` of a test and records which of them
    was ever a master."""

    def __init__(self, *servers: RedisServer) -> None:
        self.servers = servers
        self.seen: set[str] = set()

    def wait(self, predicate: Callable[[], bool], what: str, *logs: Any) -> None:
        def polled() -> bool:
            self.seen.update(r.address for r in self.servers if is_master(r))
            return predicate()

        wait_until(polled, DEADLINE, what, *logs)


@pytest.fixture
def zk_relay(zk_server: ZooKeeperServer) -> Iterator[TcpRelay]:
    relay = TcpRelay(zk_server.hosts)
    yield relay
    relay.close()


REPLICA_SESSION_MS = 6000  # and so how long a replica may hold


def replicas_holding(zk: Any, zk_hosts: str, relay: TcpRelay, redis_factory: Any,
                     watchdog_factory: Any, replicas: int = 1
                     ) -> tuple[RedisServer, list[RedisServer], Watchdog, list[Watchdog],
                                MasterWatch]:
    """Master a and ``replicas`` replicas, their watchdogs; then only a's session expires and
    the replicas' survive, their watchdogs having just reconnected — what a paused ZooKeeper
    can do as it resumes, by timing — made deterministic: the replicas' watchdogs reach
    ZooKeeper through ``relay``, cut while a's watchdog is frozen (SIGSTOP) until a's session
    (1500 ms) has expired, then mended (their sessions, REPLICA_SESSION_MS, outlive the cut).
    Returns once the first replica's watchdog (the lowest node's) says it holds; a's
    watchdog is still frozen. The MasterWatch on the replicas has watched every wait."""
    a = redis_factory()
    wa = watchdog_factory(a)
    wait_until(lambda: len(members(zk)) == 1, DEADLINE, "a registered")
    hosts = relay.address + zk_hosts[zk_hosts.index("/"):]  # the same chroot
    servers: list[RedisServer] = []
    dogs: list[Watchdog] = []
    for registered in range(2, 2 + replicas):
        servers.append(redis_factory())
        dogs.append(watchdog_factory(servers[-1], hosts=hosts,
                                     zkSessionTimeout=REPLICA_SESSION_MS))
        wait_until(lambda n=registered: len(members(zk)) == n, DEADLINE, "a replica registered")
    wait_until(lambda: all(replicates(r, a) for r in servers) and try_set(a, "k") == b"OK",
               DEADLINE, "ready")
    survivors = members(zk)[1:]
    watch = MasterWatch(*servers)
    wa.pause()
    relay.cut()
    watch.wait(lambda: all("connection lost" in w.log_text() for w in dogs),
               "the replicas' watchdogs cut off")
    watch.wait(lambda: members(zk) == survivors, "a's session expired, the replicas' survived")
    relay.mend()
    watch.wait(lambda: all(w.log_text().count("ZooKeeper connected") == 2 for w in dogs),
               "the replicas' watchdogs reconnected")
    watch.wait(lambda: "holding" in dogs[0].log_text(), "the lowest replica's watchdog holds")
    return a, servers, wa, dogs, watch


@pytest.mark.parametrize("replicas", [1, 2])
def test_replicas_holding_after_a_reconnection_step_back(
        zk: Any, zk_hosts: str, zk_relay: TcpRelay, redis_factory: Any,
        watchdog_factory: Any, replicas: int) -> None:
    """Only the master's session expired and its replicas' survived: a replica's node is the
    lowest, just after its watchdog reconnected. None may take over, and the master must not
    follow one: the lowest holds, another keeps replicating the master (not the lowest); once
    the master's watchdog has registered again (behind them, without following the lowest)
    they step back in turn, so the master stays master."""
    a, servers, wa, dogs, watch = replicas_holding(zk, zk_hosts, zk_relay, redis_factory,
                                                   watchdog_factory, replicas)
    resumed = len(wa.log_text())
    t_resume = time.monotonic()
    wa.resume()
    watch.wait(lambda: addresses(zk)[0] == a.address and len(addresses(zk)) == 1 + replicas,
               "the replicas stepped back behind a", wa)
    watch.wait(lambda: try_set(a, "k2") == b"OK", "a writable again", wa)
    print(f"\nwith {replicas} replica(s) holding, the master was writable again "
          f"{(time.monotonic() - t_resume) * 1000:.0f} ms after its watchdog resumed")
    t0 = time.monotonic()
    watch.wait(lambda: time.monotonic() - t0 > 1.0, "a late promotion (none expected)")
    assert watch.seen == set()
    assert is_master(a) and all(replicates(r, a) for r in servers)
    after = wa.log_text()[resumed:]
    assert "not following it" in after and "now a replica" not in after
    assert "stepping back" in dogs[0].log_text()
    for w in dogs:  # no replica was promoted, or followed anything but a
        log = w.log_text()
        assert "promoted" not in log
        assert log.count("now a replica of") == log.count(f"now a replica of {a.address} ")


def test_replica_holding_the_only_node_takes_over_when_the_master_does_not_come_back(
        zk: Any, zk_hosts: str, zk_relay: TcpRelay, redis_factory: Any,
        watchdog_factory: Any) -> None:
    """As above, but the master's watchdog never comes back (killed while frozen): the
    replica holds for at most its session timeout, then takes over by the handover
    sequence — fence, catch up, promote, demote — keeping the master's writes."""
    a, (b,), wa, (wb,), _ = replicas_holding(zk, zk_hosts, zk_relay, redis_factory,
                                             watchdog_factory)
    held = time.monotonic()
    wa.kill()
    a.client().mset({f"w{i}": i for i in range(100)})  # a was never fenced: frozen
    wait_until(lambda: is_master(b), DEADLINE, "b promoted after holding", wb)
    print(f"\nthe replica promoted {(time.monotonic() - held) * 1000:.0f} ms after it began "
          f"to hold (its session timeout: {REPLICA_SESSION_MS} ms)")
    wait_until(lambda: replicates(a, b, synced=False), DEADLINE, "a demoted by b", wb)
    assert "previous master" in wb.log_text() and "fenced" in wb.log_text()
    assert b.client().mget([f"w{i}" for i in range(100)]) == [str(i).encode()
                                                              for i in range(100)]
    assert readonly(try_set(a, "late"))


def test_registrar_tells_orphans_from_ghosts(zk: Any, zk_hosts: str) -> None:
    """A node of our address created by our own session but not recorded (a create whose
    reply was lost) is an orphan; one from another session is a ghost (a previous watchdog
    of the same redis); ordinary members are neither."""
    from pyproxy.watchdog.registrar import Registrar

    me = "127.0.0.1:7001"
    events: list[Any] = []
    reg = Registrar(zk_hosts, SESSION_MS / 1000, SHARD, me, lambda *e: events.append(e))
    reg.start()
    try:
        wait_until(lambda: reg.connected, DEADLINE, "registrar connected")
        ghost = zk.create(f"{SHARD}/{me}-", ephemeral=True, sequence=True).rsplit("/", 1)[1]
        other = zk.create(f"{SHARD}/127.0.0.1:7002-", ephemeral=True,
                          sequence=True).rsplit("/", 1)[1]
        mine = reg.create()
        orphan = reg.zk.create(reg.path(f"{me}-"), ephemeral=True,
                               sequence=True).rsplit("/", 1)[1]
        listing = reg.list(mine)
        assert [m.name for m in listing.members] == [ghost, other, mine, orphan]
        assert listing.orphans == (orphan,) and listing.ghosts == (ghost,)
        assert not [e for e in events if e[0] == "zk-children"]
        reg.delete(orphan)  # the listing armed the watch: this change is delivered
        wait_until(lambda: any(e[0] == "zk-children" for e in events), DEADLINE, "watch event")
        reg.delete(orphan)  # already gone: not an error
        assert reg.list(mine).orphans == ()
    finally:
        reg.stop()


def test_missing_shard_path_is_waited_for(zk: Any, redis_factory: Any,
                                          watchdog_factory: Any) -> None:
    r = redis_factory()
    shard = "/redis/cluster/icd/redis-0001"
    w = watchdog_factory(r, shard=shard)
    wait_until(lambda: "does not exist" in w.log_text(), DEADLINE, "the missing path logged")
    zk.create(shard, zkschema.weight_data(2048, 4095))
    wait_until(lambda: zk.get_children(shard) == [f"{r.address}-0000000000"], DEADLINE,
               "registered once the path exists")
    wait_until(lambda: try_set(r, "k") == b"OK", DEADLINE, "the sole member is a writable master")


def test_bad_conf_lines_are_one_line_errors(tmp_path: Path, redis_factory: Any) -> None:
    r = redis_factory()
    cases = {
        "zkServersList = 127.0.0.1:2181\nbogus = 1\n": (2, ":2: unknown key 'bogus'"),
        "zkServersList = 127.0.0.1:2181\nhealthCheckFailures = -1\n":
            (2, ":2: bad healthCheckFailures"),
        "logLevel = INFO\n": (2, ": zkServersList is required"),
    }
    for text, (code, message) in cases.items():
        path = tmp_path / "zoo-watchdog.conf"
        path.write_text(text)
        proc = subprocess.run(
            [sys.executable, "-m", "pyproxy.watchdog", "-f", str(path), "-dc", r.address, SHARD],
            capture_output=True, text=True, timeout=30, env=dict(os.environ,
                                                                 PYTHONPATH=str(REPO_ROOT)))
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    path.write_text("zkServersList = 127.0.0.1:2181\nredisStartTimeout = 0\n")
    r.kill()
    proc = subprocess.run(
        [sys.executable, "-m", "pyproxy.watchdog", "-f", str(path), "-dc", r.address, SHARD],
        capture_output=True, text=True, timeout=30, env=dict(os.environ,
                                                             PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "does not answer" in proc.stderr
