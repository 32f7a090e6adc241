"""End-to-end failover of the seed's topology on loopback (issue 4, "Done when").

Two "servers", A = 127.0.0.2 and B = 127.0.0.3, with the same ports on both (PM and PR, like
the seed's 6379/6380, but picked free here)::

    shard redis-0000 (slots 0-2047):    master A:PM  -> replica B:PR
    shard redis-0001 (slots 2048-4095): master B:PM  -> replica A:PR
    proxy A:PP and proxy B:PP, ZooKeeper (a chroot on the session's server)

Replicas start with ``--replicaof``; ``pyproxy-admin init -c <proxy A's config>`` lays out
ZooKeeper; the four watchdogs (``python -m pyproxy.watchdog``, as in test_watchdog.py) start
masters first. Then, in order, on the same cluster:

1. layout: masters first in ZooKeeper, both proxies registered, keys on the right masters;
2. SIGKILL shard 0's master under a writer (proxy A): writes resume on its replica;
3. the killed master restarted empty rejoins as a replica of the new master and syncs;
4. SIGSTOP shard 1's master under a writer (proxy B): replaced, and after SIGCONT it steps
   down, acknowledging none of the writes sent to it after the failover (one sent before
   the failover is measured only: daemon.py documents that it may still run);
5. SIGKILL of a replica's watchdog: only its node goes, nobody notices;
6. SIGKILL of a master's watchdog (its redis fine): per daemon.py its node expires and the
   replica takes over by the handover sequence (fence, catch up, promote, demote): no
   acknowledged write is lost, never two writable masters.

A second test runs the same layout on a private ZooKeeper (issue 13) and SIGSTOPs it for 3×
the session timeout (the proxies' sessions set to the watchdogs' 2000 ms, so every session
expires): every shard must come back with the master it had (no redis but the two masters
ever answers ROLE "master"), no acknowledged write lost; what the writers saw is reported.

Settings: zkSessionTimeout 2000 ms, healthCheckInterval 150 ms, healthCheckTimeout 150 ms
(< T/12 as daemon.py requires), healthCheckFailures 3; proxy ``timeout`` 400 ms, shorter
than the watchdog's failure detection (F·I = 450 ms dead, ≈ 600 ms hung). Deadlines are
10 s; the only timing assertion is the issue's "within 10 s". The measured figures are
printed (prefix ``FAILOVER-E2E``) and written to ``failover_figures.json`` in the test's
tmp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyproxy.cluster import zkschema
from tests.cluster import (
    Record,
    RoleWatch,
    SwitchWatch,
    Writer,
    close_quietly,
    common_free_ports,
    error_tally,
    failover_figures,
    mget,
    missing_on,
    read_reply,
    readonly_replies,
    replicates,
    role,
    try_set,
)
from tests.keys import keys_for_shard
from tests.servers import REPO_ROOT, RedisServer, process_state, redis_client, wait_until
from tests.test_watchdog import Watchdog

A, B = "127.0.0.2", "127.0.0.3"
CLUSTER = "/redis/cluster/icd"
PROXIES = "/redis/proxy/icd"
SHARDS = (f"{CLUSTER}/redis-0000", f"{CLUSTER}/redis-0001")
WATCHDOG_CONF: dict[str, Any] = {"zkSessionTimeout": 2000, "healthCheckInterval": 150,
                 "healthCheckTimeout": 150, "healthCheckFailures": 3}
PROXY_TIMEOUT_MS = 400
DEADLINE = 10.0
WRITES = 10000  # per writer: far more than any phase needs (~400 writes/s)
PREFIX = "FAILOVER-E2E"


def proxy_config(host: str, port: int, master_port: int, zk_hosts: str,
                 zk_session_ms: int | None = None) -> str:
    """The seed's icd.yml with its addresses moved to loopback (and, if given, a
    ``zookeeper_session_timeout``)."""
    session = f"  zookeeper_session_timeout: {zk_session_ms}\n" if zk_session_ms else ""
    return f"""\
alpha:
  listen: {host}:{port}
  hash: md5
  distribution: modula
  zookeeper_host: {zk_hosts}
  zookeeper_path: {PROXIES}/{host}:{port}
  zookeeper_redis_path: {CLUSTER}
  auto_eject_hosts: false
  redis: true
  timeout: {PROXY_TIMEOUT_MS}
  server_retry_timeout: 2000
  server_failure_limit: 2
{session}  servers:
   - {A}:{master_port}:0-2047
   - {B}:{master_port}:2048-4095
"""


class Seed:
    """The running cluster: redis and watchdog by name, the proxies, a ZooKeeper client."""

    def __init__(self, zk: Any) -> None:
        self.zk = zk
        self.redis: dict[str, RedisServer] = {}
        self.dogs: dict[str, Watchdog] = {}
        self.proxies: list[str] = []  # "host:port" of proxy A, proxy B
        self.processes: list[Any] = []  # the proxies, for their logs
        self.figures: dict[str, Any] = {}
        self.shard0_acked: list[Record] = []  # acknowledged shard-0 writes, for later checks

    def addr(self, name: str) -> str:
        return self.redis[name].address

    def members(self, shard: int) -> list[str]:
        return [m.name for m in zkschema.order_members(self.zk.get_children(SHARDS[shard]))]

    def addresses(self, shard: int) -> list[str]:
        return [name.rsplit("-", 1)[0] for name in self.members(shard)]

    def node_of(self, shard: int, name: str) -> str | None:
        nodes = [n for n in self.members(shard) if n.rsplit("-", 1)[0] == self.addr(name)]
        return nodes[0] if nodes else None

    def writer(self, label: str, proxy: int, shard: int, prefix: str) -> Writer:
        w = Writer(label, self.proxies[proxy], keys_for_shard(shard, WRITES, prefix))
        w.start()
        return w

    def report(self, phase: str, figures: dict[str, Any]) -> None:
        self.figures[phase] = figures
        print(f"{PREFIX} {phase}: {json.dumps(figures)}", flush=True)


def seq(node: str | None) -> int:
    assert node is not None
    return int(node.rsplit("-", 1)[1])


def wait_acked_since(writer: Writer, since: float, what: str) -> Record:
    wait_until(lambda: bool(writer.acked(sent_from=since)), DEADLINE, what)
    return writer.acked(sent_from=since)[0]


def assert_writes_land_on_masters(seed: Seed, masters: tuple[str, str], tag: str) -> None:
    """Through each proxy, keys of each shard are on that shard's master (and only there);
    the other proxy reads them back."""
    for p, proxy in enumerate(seed.proxies):
        host, port = proxy.rsplit(":", 1)
        mine = redis_client(host, int(port))
        other_host, other_port = seed.proxies[1 - p].rsplit(":", 1)
        other = redis_client(other_host, int(other_port))
        try:
            for shard in (0, 1):
                keys = keys_for_shard(shard, 20, f"{tag}:p{p}s{shard}:")
                assert mine.mset({k: k for k in keys}) is True
                on_master = mget(seed.addr(masters[shard]), keys)
                on_other = mget(seed.addr(masters[1 - shard]), keys)
                assert on_master == [k.encode() for k in keys], (proxy, shard)
                assert on_other == [None] * len(keys), (proxy, shard)
                assert other.mget(keys) == [k.encode() for k in keys], (proxy, shard)
        finally:
            mine.close()
            other.close()


def assert_one_master_per_shard(seed: Seed, shards: tuple[tuple[str, str], ...]) -> None:
    for master, replica in shards:
        assert role(seed.addr(master))[0] == "master", master
        assert replicates(seed.addr(replica), seed.addr(master), synced=False), replica


# --------------------------------------------------------------------------- bring-up


def start_seed(seed: Seed, zk_hosts: str, redis_factory: Any, proxy_factory: Any,
               tmp_path: Path, proxy_zk_session_ms: int | None = None) -> None:
    pm, pr, pp = common_free_ports((A, B), 3)
    r = seed.redis
    r["a_m"] = redis_factory(host=A, port=pm)  # shard 0 master
    r["b_m"] = redis_factory(host=B, port=pm)  # shard 1 master
    r["b_r"] = redis_factory(host=B, port=pr, extra_args=("--replicaof", A, str(pm)))
    r["a_r"] = redis_factory(host=A, port=pr, extra_args=("--replicaof", B, str(pm)))

    configs = [proxy_config(host, pp, pm, zk_hosts, proxy_zk_session_ms) for host in (A, B)]
    conf_a = tmp_path / "icd-a.yml"
    conf_a.write_text(configs[0])
    init = subprocess.run([sys.executable, "-m", "pyproxy.admin", "init", "-c", str(conf_a)],
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert init.returncode == 0, init.stderr
    assert f"created {SHARDS[0]} weight 0-2047" in init.stdout, init.stdout
    assert f"created {SHARDS[1]} weight 2048-4095" in init.stdout, init.stdout

    for name, shard, count in (("a_m", 0, 1), ("b_m", 1, 1), ("b_r", 0, 2), ("a_r", 1, 2)):
        seed.dogs[name] = Watchdog(zk_hosts, r[name], shard=SHARDS[shard], **WATCHDOG_CONF)
        seed.dogs[name].start()

        def registered(s: int = shard, c: int = count) -> bool:
            return len(seed.members(s)) == c

        wait_until(registered, DEADLINE, f"the watchdog of {name} registered", seed.dogs[name])

    for config in configs:
        proxy = proxy_factory(config)
        seed.proxies.append(f"{proxy.host}:{proxy.port}")
        seed.processes.append(proxy)

    wait_until(lambda: replicates(seed.addr("b_r"), seed.addr("a_m"))
               and replicates(seed.addr("a_r"), seed.addr("b_m")), DEADLINE, "replicas synced")
    wait_until(lambda: try_set(seed.addr("a_m"), "ready") == "OK"
               and try_set(seed.addr("b_m"), "ready") == "OK", DEADLINE, "masters writable")


# --------------------------------------------------------------------------- phases


def phase_layout(seed: Seed) -> None:
    assert seed.members(0) == [f"{seed.addr('a_m')}-0000000000",
                               f"{seed.addr('b_r')}-0000000001"]
    assert seed.members(1) == [f"{seed.addr('b_m')}-0000000000",
                               f"{seed.addr('a_r')}-0000000001"]
    wait_until(lambda: sorted(seed.zk.get_children(PROXIES)) == sorted(seed.proxies),
               DEADLINE, "both proxies registered")

    def from_zookeeper(proxy: str) -> bool:
        host, port = proxy.rsplit(":", 1)
        c = redis_client(host, int(port))
        try:
            return bool(c.info("proxy")["pool_alpha"]["source"] == "zookeeper")
        finally:
            c.close()

    wait_until(lambda: all(from_zookeeper(p) for p in seed.proxies), DEADLINE,
               "both proxies route by ZooKeeper's table")
    assert_writes_land_on_masters(seed, ("a_m", "b_m"), "layout")


def phase_sigkill_master(seed: Seed) -> None:
    """SIGKILL shard 0's master (A:PM) under a writer through proxy A."""
    readonly_before = readonly_replies(seed.addr("b_r"))
    w0 = seed.writer("shard 0 via proxy A", 0, 0, "kill0:")
    w1 = seed.writer("shard 1 via proxy B", 1, 1, "kill1:")
    try:
        wait_until(lambda: len(w0.acked()) > 0, DEADLINE, "the writer's first ack")
        time.sleep(1.3)  # some writes acknowledged (and replicated) well before the kill
        watch = SwitchWatch(seed.proxies[0], "redis-0000", seed.addr("b_r"))
        watch.start()
        fault = time.monotonic()
        seed.redis["a_m"].kill()
        killed = time.monotonic()
        first = wait_acked_since(w0, killed, "acknowledged writes resume")
        time.sleep(0.5)
    finally:
        w0.stop()
        w1.stop()
    watch.stop()

    figures = failover_figures(w0.records, fault) | watch.figures(fault)
    assert first.done - fault < DEADLINE
    assert not w0.errors() or min(r.sent for r in w0.errors()) >= fault - 0.01
    assert seed.addresses(0) == [seed.addr("b_r")]  # a_m's node deleted by its watchdog
    assert role(seed.addr("b_r"))[0] == "master"
    new_master = seed.addr("b_r")
    after = w0.acked(sent_from=killed)
    assert after and missing_on(new_master, after) == [], "acked after the switch, not there"
    early = w0.acked(done_until=fault - 1.0)
    assert early and missing_on(new_master, early) == [], "replicated writes lost"
    last_second = [r for r in w0.acked() if fault - 1.0 < r.done and r.sent < killed]
    figures["acked_in_last_second_before_kill"] = len(last_second)
    figures["lost_of_those"] = len(missing_on(new_master, last_second))
    assert w1.errors() == [], f"shard 1 noticed: {w1.errors()[:5]}"
    assert len(w1.acked()) > 100
    figures["other_shard_writes_acked"] = len(w1.acked())
    figures["readonly_replies_by_heir"] = readonly_replies(new_master) - readonly_before
    seed.report("sigkill_master", figures)
    seed.shard0_acked = w0.acked()


def phase_restart_rejoins(seed: Seed) -> None:
    """The killed master restarted empty (same host:port) rejoins as a replica and syncs;
    shard 0's new master never notices (a writer through proxy B)."""
    master_node = seed.members(0)[0]
    w0 = seed.writer("shard 0 via proxy B", 1, 0, "rejoin0:")
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        seed.redis["a_m"].restart()  # empty: no persistence, its files removed
        restarted = time.monotonic()
        wait_until(lambda: seed.node_of(0, "a_m") is not None, DEADLINE,
                   "the restarted redis registered again", seed.dogs["a_m"])
        registered = time.monotonic()
        assert seed.members(0)[0] == master_node
        assert seq(seed.node_of(0, "a_m")) > seq(master_node)
        wait_until(lambda: replicates(seed.addr("a_m"), seed.addr("b_r")), DEADLINE,
                   "the restarted redis replicates the new master")
        linked = time.monotonic()
        wait_until(lambda: not missing_on(seed.addr("a_m"), seed.shard0_acked), DEADLINE,
                   "the restarted redis synced the writes of the failover")
        synced = time.monotonic()
        time.sleep(0.3)
    finally:
        w0.stop()
    acked = seed.shard0_acked + w0.acked()
    wait_until(lambda: not missing_on(seed.addr("a_m"), acked), DEADLINE,
               "the restarted redis has every acknowledged write")
    assert missing_on(seed.addr("b_r"), acked) == [], "the empty ex-master wiped its replica"
    assert try_set(seed.addr("a_m"), "direct").startswith("READONLY")
    assert w0.errors() == [], f"the new master noticed: {w0.errors()[:5]}"
    assert seed.addresses(0) == [seed.addr("b_r"), seed.addr("a_m")]
    seed.report("restart_rejoins", {
        "restart_ms": round((restarted - t0) * 1000),
        "registered_after_restart_ms": round((registered - restarted) * 1000),
        "replica_link_up_after_restart_ms": round((linked - restarted) * 1000),
        "synced_after_restart_ms": round((synced - restarted) * 1000),
        "keys_synced": len(acked), "writer_errors": 0,
    })


def phase_sigstop_master(seed: Seed) -> None:
    """SIGSTOP shard 1's master (B:PM) under a writer through proxy B; SIGCONT: it steps down
    and acknowledges none of the writes sent to it after the failover."""
    hung, heir = seed.addr("b_m"), seed.addr("a_r")
    w1 = seed.writer("shard 1 via proxy B", 1, 1, "stop1:")
    w0 = seed.writer("shard 0 via proxy A", 0, 0, "stop0:")
    stale_sock: socket.socket | None = None
    early_sock: socket.socket | None = None
    hammer: list[str] = []
    try:
        wait_until(lambda: len(w1.acked()) > 0, DEADLINE, "the writer's first ack")
        time.sleep(1.3)
        watch = SwitchWatch(seed.proxies[1], "redis-0001", heir)
        watch.start()
        fault = time.monotonic()
        seed.redis["b_m"].pause()
        try:
            wait_until(lambda: process_state(seed.redis["b_m"].pid) == "T", DEADLINE,
                       "the master stopped")
            # sent before the failover: daemon.py says such a write may still run as it
            # wakes (the proxy has failed its own on its timeout) - measured, not asserted
            early_sock = socket.create_connection((B, seed.redis["b_m"].port), timeout=DEADLINE)
            early_sock.sendall(b"SET stop:early 1\r\n")
            first = wait_acked_since(w1, time.monotonic(), "acknowledged writes resume")
            wait_until(lambda: seed.addresses(1) == [heir], DEADLINE, "the hung one's node gone")
            assert role(heir)[0] == "master"
            # a client writing straight to the hung ex-master after the failover: its SET
            # waits in the socket and must not be acknowledged when the process wakes up
            stale_sock = socket.create_connection((B, seed.redis["b_m"].port), timeout=DEADLINE)
            stale_sock.sendall(b"SET stop:stale 1\r\n")
            time.sleep(0.5)
        finally:
            woken = time.monotonic()
            seed.redis["b_m"].resume()
        wait_until(lambda: replicates(hung, heir, synced=False), DEADLINE, "it steps down")
        stepped_down = time.monotonic()
        while time.monotonic() - woken < 1.0:  # direct writes while it wakes up: all refused
            hammer.append(try_set(hung, "stop:hammer", timeout=2.0))
            time.sleep(0.02)
        stale_reply = read_reply(stale_sock)
        early_reply = read_reply(early_sock)
        time.sleep(0.3)
    finally:
        close_quietly(stale_sock)
        close_quietly(early_sock)
        w1.stop()
        w0.stop()
    watch.stop()

    stale_text = stale_reply.decode() if isinstance(stale_reply, bytes) else str(stale_reply)
    early_text = early_reply.decode() if isinstance(early_reply, bytes) else str(early_reply)
    assert "OK" not in hammer, f"the woken ex-master acknowledged a write: {hammer}"
    assert stale_text != "OK", "the woken ex-master acknowledged a write sent while hung"
    assert replicates(hung, heir, synced=False)
    figures = failover_figures(w1.records, fault) | watch.figures(fault)
    assert first.done - fault < DEADLINE
    new_master = seed.addr("a_r")
    after = w1.acked(sent_from=first.sent)
    assert after and missing_on(new_master, after) == [], "acked after the switch, not there"
    before = w1.acked(done_until=fault - 1.0)
    assert before and missing_on(new_master, before) == [], "replicated writes lost"
    assert missing_on(new_master, w1.acked()) == [], "an acknowledged write was lost"
    assert w0.errors() == [], f"shard 0 noticed: {w0.errors()[:5]}"
    assert mget(new_master, ["stop:stale", "stop:hammer"]) == [None, None]

    wait_until(lambda: replicates(hung, heir), DEADLINE, "the ex-master synced from the heir")
    wait_until(lambda: seed.node_of(1, "b_m") is not None, DEADLINE,
               "the ex-master registered again", seed.dogs["b_m"])
    assert seed.addresses(1) == [heir, hung]
    wait_until(lambda: not missing_on(seed.addr("b_m"), w1.acked()), DEADLINE,
               "the ex-master has every acknowledged write")
    figures.update({
        "direct_writes_after_sigcont": dict(
            (text[:60], hammer.count(text)) for text in sorted(set(hammer))),
        "stale_write_reply": stale_text[:80],
        "write_sent_before_failover_reply": early_text[:80],
        "write_sent_before_failover_on_new_master": mget(new_master, ["stop:early"]) != [None],
        "step_down_after_sigcont_ms": round((stepped_down - woken) * 1000),
        "other_shard_writes_acked": len(w0.acked()),
    })
    seed.report("sigstop_master", figures)


def phase_replica_watchdog_crash(seed: Seed) -> None:
    """SIGKILL the watchdog of shard 0's replica (A:PM, its redis fine): only its node goes
    (after the session timeout); no master change, no error anywhere; restarted, it
    registers again as a replica."""
    master_node = seed.members(0)[0]
    master = seed.addr("b_r")
    w0 = seed.writer("shard 0 via proxy A", 0, 0, "rdog0:")
    w1 = seed.writer("shard 1 via proxy B", 1, 1, "rdog1:")
    flaps: list[Any] = []
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        seed.dogs["a_m"].kill()

        def node_gone() -> bool:
            members = seed.members(0)
            if members[0] != master_node or role(master)[0] != "master":
                flaps.append((members, role(master)))
            return seed.node_of(0, "a_m") is None

        wait_until(node_gone, DEADLINE, "the crashed watchdog's node expired")
        expired = time.monotonic()
        assert seed.members(0) == [master_node]
        seed.dogs["a_m"].start()
        wait_until(lambda: seed.node_of(0, "a_m") is not None, DEADLINE,
                   "registered again", seed.dogs["a_m"])
        back = time.monotonic()
        time.sleep(0.3)
    finally:
        w0.stop()
        w1.stop()
    assert flaps == [], f"the master flapped: {flaps[:3]}"
    assert seed.members(0)[0] == master_node and seq(seed.node_of(0, "a_m")) > seq(master_node)
    assert role(master)[0] == "master" and replicates(seed.addr("a_m"), master)
    assert w0.errors() == [] and w1.errors() == [], (w0.errors()[:3], w1.errors()[:3])
    seed.report("replica_watchdog_crash", {
        "node_expired_after_ms": round((expired - t0) * 1000),
        "registered_after_restart_ms": round((back - expired) * 1000),
        "writer_errors": 0, "writes_acked": len(w0.acked()) + len(w1.acked()),
    })


def phase_master_watchdog_crash(seed: Seed) -> None:
    """SIGKILL the watchdog of shard 0's master (B:PR, its redis fine). daemon.py: its node
    expires after the session timeout and the replica (A:PM) takes over by fencing the old
    master, catching up with it, promoting itself and demoting it: a handover in which no
    acknowledged write is lost and the old master never takes a write after it."""
    old, heir = seed.addr("b_r"), seed.addr("a_m")
    readonly_before = {a: readonly_replies(a) for a in (old, heir)}
    w0 = seed.writer("shard 0 via proxy A", 0, 0, "mdog0:")
    w1 = seed.writer("shard 1 via proxy B", 1, 1, "mdog1:")
    try:
        time.sleep(0.5)
        watch = SwitchWatch(seed.proxies[0], "redis-0000", heir)
        watch.start()
        fault = time.monotonic()
        seed.dogs["b_r"].kill()
        wait_until(lambda: role(heir)[0] == "master", DEADLINE, "the replica promoted")
        promoted = time.monotonic()
        wait_until(lambda: seed.addresses(0) == [heir], DEADLINE, "the old node expired")
        wait_until(lambda: replicates(old, heir, synced=False), DEADLINE, "old master demoted")
        first = wait_acked_since(w0, promoted, "acknowledged writes go on")
        time.sleep(0.3)
    finally:
        w0.stop()
        w1.stop()
    watch.stop()
    figures = failover_figures(w0.records, fault) | watch.figures(fault)
    del figures["writes_resumed_after_fault_ms"]  # writes never stopped: just the longest gap
    figures["readonly_replies_by"] = {  # the heir before its promotion / the old master after
        "heir": readonly_replies(heir) - readonly_before[heir],
        "old_master": readonly_replies(old) - readonly_before[old]}
    assert first.done - fault < DEADLINE
    assert missing_on(heir, w0.acked()) == [], "an acknowledged write was lost"
    assert try_set(old, "direct").startswith("READONLY")
    assert w1.errors() == [], f"shard 1 noticed: {w1.errors()[:5]}"

    seed.dogs["b_r"].start()
    wait_until(lambda: seed.node_of(0, "b_r") is not None, DEADLINE, "registered again",
               seed.dogs["b_r"])
    assert seed.addresses(0) == [heir, old]
    wait_until(lambda: replicates(old, heir), DEADLINE, "the old master follows the heir")
    figures.update({
        "promoted_after_ms": round((promoted - fault) * 1000),
        "other_shard_writes_acked": len(w1.acked()),
    })
    seed.report("master_watchdog_crash", figures)


def phase_zookeeper_pause(seed: Seed, server: Any) -> None:
    """SIGSTOP ZooKeeper for 3× the session timeout under a writer on each shard, then SIGCONT.
    Every session expires (ZooKeeper's clock ran on); every watchdog registers again, and
    daemon.py's rule (a replica linked to its master waits for the master's node) must bring
    each shard back with the master it had: no other redis is ever a master, no acknowledged
    write is lost. What the writers saw while ZooKeeper was away and after is reported."""
    session = WATCHDOG_CONF["zkSessionTimeout"] / 1000.0
    masters = (seed.addr("a_m"), seed.addr("b_m"))
    logged = {name: len(dog.log_text()) for name, dog in seed.dogs.items()}
    roles = RoleWatch([r.address for r in seed.redis.values()])
    roles.start()
    w0 = seed.writer("shard 0 via proxy A", 0, 0, "zkpause0:")
    w1 = seed.writer("shard 1 via proxy B", 1, 1, "zkpause1:")
    try:
        wait_until(lambda: bool(w0.acked() and w1.acked()), DEADLINE, "the writers' first acks")
        time.sleep(0.5)
        fault = time.monotonic()
        server.pause()
        try:
            time.sleep(3 * session)
        finally:
            resumed = time.monotonic()
            server.resume()
        firsts = [wait_acked_since(w, resumed, "writes acknowledged again") for w in (w0, w1)]

        def registered_again() -> bool:
            return all(len(seed.members(s)) == 2 for s in (0, 1))

        wait_until(registered_again, DEADLINE, "every watchdog registered again")
        settled = time.monotonic()
        time.sleep(1.0)  # a late flap would show here
    finally:
        w0.stop()
        w1.stop()
        roles.stop()
    assert roles.ever_master() == set(masters), f"a master moved: {roles.changes}"
    for shard, (master, replica) in enumerate((("a_m", "b_r"), ("b_m", "a_r"))):
        assert seed.addresses(shard) == [seed.addr(master), seed.addr(replica)]
    assert_one_master_per_shard(seed, (("a_m", "b_r"), ("b_m", "a_r")))
    for master, writer in zip(masters, (w0, w1), strict=True):
        assert missing_on(master, writer.acked()) == [], "an acknowledged write was lost"
    assert_writes_land_on_masters(seed, ("a_m", "b_m"), "zkpause")
    since_pause = {name: dog.log_text()[logged[name]:] for name, dog in seed.dogs.items()}
    figures: dict[str, Any] = {
        "pause_ms": round((resumed - fault) * 1000),
        "sessions_expired": sum("session expired" in log for log in since_pause.values()),
        # a replica that held the lowest node, its master's session expired, and stepped back
        "replicas_stepped_back": sum("stepping back" in log for log in since_pause.values()),
        "registered_again_after_resume_ms": round((settled - resumed) * 1000),
    }
    for label, writer, first in (("shard0", w0, firsts[0]), ("shard1", w1, firsts[1])):
        acks = [r.done for r in writer.acked(done_until=resumed)]
        figures[label] = failover_figures(writer.records, fault) | {
            "last_ack_during_pause_ms": round((max(acks) - fault) * 1000) if acks else None,
            "writes_acked_again_after_resume_ms": round((first.done - resumed) * 1000),
            "errors_while_paused": error_tally(writer.records, fault, resumed),
            "errors_after_resume": error_tally(writer.records, resumed, float("inf")),
        }
    seed.report("zookeeper_pause", figures)


# --------------------------------------------------------------------------- the test


@contextlib.contextmanager
def running(seed: Seed, tmp_path: Path) -> Iterator[None]:
    """Around a test on ``seed``: on failure print every process's log tail; always write the
    figures (and, with FAILOVER_E2E_LOGS set, every log) to ``tmp_path``; close the
    watchdogs and the ZooKeeper client (the factories close the rest)."""
    try:
        yield
        for process in [*seed.dogs.values(), *seed.processes]:
            text = process.log_text()
            assert "Traceback" not in text and "unexpected error" not in text, process
    except BaseException:
        for name, dog in seed.dogs.items():
            print(f"--- watchdog {name} {dog!r} ---\n{dog.log_tail(60)}")
        for proxy in seed.processes:
            print(f"--- {proxy!r} ---\n{proxy.log_tail(60)}")
        raise
    finally:
        if os.environ.get("FAILOVER_E2E_LOGS"):  # keep the logs for a look
            logs = [(f"watchdog-{n}", p) for n, p in seed.dogs.items()]
            logs += [(f"proxy-{i}", p) for i, p in enumerate(seed.processes)]
            for name, process in logs:
                (tmp_path / f"{name}.log").write_text(process.log_text())
        out = tmp_path / "failover_figures.json"
        out.write_text(json.dumps(seed.figures, indent=2))
        print(f"{PREFIX} figures written to {out}")
        for dog in seed.dogs.values():
            dog.close()
        seed.zk.stop()
        seed.zk.close()


def test_seed_topology_fails_over_end_to_end(zk_server: Any, zk_hosts: str, redis_factory: Any,
                                             proxy_factory: Any, tmp_path: Path) -> None:
    seed = Seed(zk_server.client(hosts=zk_hosts))
    with running(seed, tmp_path):
        start_seed(seed, zk_hosts, redis_factory, proxy_factory, tmp_path)
        phase_layout(seed)
        phase_sigkill_master(seed)
        phase_restart_rejoins(seed)
        phase_sigstop_master(seed)
        phase_replica_watchdog_crash(seed)
        phase_master_watchdog_crash(seed)
        # the end state: shard 0 back on A:PM, shard 1 on A:PR; one writable master each
        assert_one_master_per_shard(seed, (("a_m", "b_r"), ("a_r", "b_m")))
        assert_writes_land_on_masters(seed, ("a_m", "a_r"), "final")


def test_zookeeper_pause_moves_no_master(zk_factory: Any, redis_factory: Any,
                                         proxy_factory: Any, tmp_path: Path) -> None:
    """ZooKeeper SIGSTOPped for 3× the session timeout, then SIGCONT (issue 13)."""
    server = zk_factory()
    zk_hosts = server.chroot_hosts("zookeeper-pause")
    seed = Seed(server.client(hosts=zk_hosts, timeout=30.0))  # the test's session outlives it
    with running(seed, tmp_path):
        start_seed(seed, zk_hosts, redis_factory, proxy_factory, tmp_path,
                   proxy_zk_session_ms=WATCHDOG_CONF["zkSessionTimeout"])
        phase_layout(seed)
        phase_zookeeper_pause(seed, server)
