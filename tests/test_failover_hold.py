"""Invisible failover on the seed's topology (issue 13's "Done when"): 50 writers and 50
readers on both shards through both proxies while a master is SIGKILLed, then another is
SIGSTOPped, then a master's watchdog is SIGKILLed.

For each fault: no client error for a request sent after the fault except the unknown-outcome
answer to a write already in flight (for a killed master: sent before the proxy could read
that its connection died, ``NOTICE_GRACE`` after the kill; for a hung master: sent before the
gate saw it stall, ``STALL_WINDOW``); readers see no error at all; no READONLY reaches a
client; no acknowledged write is lost (checked on the new master); the other shard's clients
see nothing. The figures (worst latency, unknown outcomes, the proxies' hold counters) are
printed as phases ``hold_*`` with the prefix ``FAILOVER-E2E`` and written to
``failover_figures.json`` in the test's tmp dir.

The cluster comes from tests/test_failover_e2e.py (its bring-up and settings: proxy timeout
400 ms, so a stall is seen after 200 ms; failover_hold is the ZooKeeper default, 5000 ms).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from tests.cluster import Reader, Record, Writer, call, missing_on, role
from tests.keys import keys_for_shard
from tests.servers import wait_until
from tests.test_failover_e2e import (
    DEADLINE,
    Seed,
    phase_layout,
    replicates,
    running,
    start_seed,
)
from tests.test_proxy import Raw

CLIENTS = 25  # writers per shard, and readers per shard: 50 + 50 in all
PAUSE = 0.02  # between two requests of one client: ~5,000 requests/s in all
STALL_WINDOW = 0.5  # a write sent this soon after a master hangs may still be in flight
NOTICE_GRACE = 0.05  # a SIGKILLed master's dead connection is noticed within this
UNKNOWN = "may or may not have been applied"


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


class Load:
    """The writers and readers of one phase, on both shards, through both proxies."""

    def __init__(self, seed: Seed, tag: str) -> None:
        self.writers: dict[int, list[Writer]] = {0: [], 1: []}
        self.readers: dict[int, list[Reader]] = {0: [], 1: []}
        for shard in (0, 1):
            read_keys = keys_for_shard(shard, CLIENTS, f"{tag}:r{shard}:")
            for key in read_keys:  # through a proxy, so on the shard's master
                assert call(seed.proxies[0], "SET", key, f"v-{key}") == b"OK"
            for n in range(CLIENTS):
                proxy = seed.proxies[n % 2]
                keys = keys_for_shard(shard, 2000, f"{tag}:w{shard}:{n}:")
                self.writers[shard].append(Writer(f"w{shard}.{n}", proxy, keys, pause=PAUSE,
                                                  reply_timeout=DEADLINE))
                key = read_keys[n]
                self.readers[shard].append(Reader(f"r{shard}.{n}", proxy, {key: f"v-{key}"},
                                                  pause=PAUSE, reply_timeout=DEADLINE))
        for thread in self.all():
            thread.start()

    def all(self) -> list[Writer]:
        return [t for group in (self.writers, self.readers) for s in (0, 1) for t in group[s]]

    def stop(self) -> None:
        for thread in self.all():
            thread.stop()

    def records(self, kind: str, shard: int) -> list[Record]:
        group = self.writers if kind == "write" else self.readers
        return [r for t in group[shard] for r in t.records]


def check(seed: Seed, load: Load, shard: int, fault: float, in_flight_until: float,
          new_master: str, phase: str) -> dict[str, Any]:
    """The assertions every fault shares; returns the phase's figures."""
    writes, reads = load.records("write", shard), load.records("read", shard)
    bad_writes = [r for r in writes if not r.ok]
    unknown = [r for r in bad_writes if UNKNOWN in r.reply]
    other = [r for r in bad_writes if UNKNOWN not in r.reply]
    assert other == [], f"{phase}: write errors {[r.reply for r in other[:5]]}"
    late = [r for r in unknown if r.sent > in_flight_until]
    assert late == [], f"{phase}: unknown outcomes for writes sent after the fault: {late[:3]}"
    assert [r for r in reads if not r.ok] == [], f"{phase}: read errors"
    assert not any("READONLY" in r.reply for r in writes + reads)
    acked = [r for r in writes if r.ok]
    assert missing_on(new_master, acked) == [], f"{phase}: an acknowledged write was lost"
    for kind in ("write", "read"):  # the other shard never noticed
        assert all(r.ok for r in load.records(kind, 1 - shard)), f"{phase}: other shard"
    after = [r for r in writes + reads if r.sent >= fault]
    worst = max((r.done - r.sent for r in after), default=0.0)
    counters = {}
    for proxy in seed.proxies:
        info = call(proxy, "INFO", "proxy").decode()
        line = next(x for x in info.splitlines() if x.startswith("pool_alpha_failover:"))
        counters[proxy] = line.split(":", 1)[1]
    return {
        "requests_after_fault": len(after),
        "writes_acked": len(acked),
        "unknown_outcome_writes": len(unknown),
        "client_errors_for_requests_sent_after_fault": len(
            [r for r in bad_writes if r.sent > in_flight_until]),
        "worst_request_after_fault_ms": round(worst * 1000),
        "proxy_hold_counters": counters,
    }


def test_clients_see_a_slower_request_not_an_error(zk_server: Any, zk_hosts: str,
                                                   redis_factory: Any, proxy_factory: Any,
                                                   tmp_path: Path) -> None:
    seed = Seed(zk_server.client(hosts=zk_hosts))
    with running(seed, tmp_path), contextlib.ExitStack() as stack:
        start_seed(seed, zk_hosts, redis_factory, proxy_factory, tmp_path)
        phase_layout(seed)

        # 1. SIGKILL shard 0's master (A:PM): its replica B:PR takes over; a subscriber of a
        # shard-0 channel (through proxy A) keeps hearing what proxy B publishes
        channel = keys_for_shard(0, 1, "news:")[0]
        subscriber = Raw(*_host_port(seed.proxies[0]))
        stack.callback(subscriber.close)  # (closed below too; on a failure, here)
        subscriber.cmd("SUBSCRIBE", channel)
        subscriber.reply()
        assert call(seed.proxies[1], "PUBLISH", channel, "before") == 1
        assert subscriber.reply().endswith(b"$6\r\nbefore\r\n")
        load = Load(seed, "kill")
        time.sleep(1.0)
        fault = time.monotonic()
        seed.redis["a_m"].kill()
        # the proxy learns of the dead master on its next read of that connection; a write
        # it forwarded meanwhile went into a dead socket and has an unknown outcome too
        killed = time.monotonic() + NOTICE_GRACE
        wait_until(lambda: role(seed.addr("b_r"))[0] == "master", DEADLINE, "promoted")
        time.sleep(1.0)
        load.stop()
        seed.report("hold_sigkill_master", check(seed, load, 0, fault, killed,
                                                 seed.addr("b_r"), "sigkill"))
        # the proxies followed the new master: subscribed there again, no resubscription
        wait_until(lambda: call(seed.proxies[1], "PUBLISH", channel, "after") == 1, DEADLINE,
                   "the subscription moved to the new master")
        assert subscriber.reply().endswith(b"$5\r\nafter\r\n")
        subscriber.close()
        seed.redis["a_m"].restart()  # it rejoins as a replica of B:PR
        wait_until(lambda: replicates(seed.addr("a_m"), seed.addr("b_r")), DEADLINE,
                   "the old master rejoined")

        # 2. SIGSTOP shard 1's master (B:PM): A:PR takes over; then SIGCONT
        load = Load(seed, "stop")
        time.sleep(1.0)
        fault = time.monotonic()
        seed.redis["b_m"].pause()
        try:
            wait_until(lambda: role(seed.addr("a_r"))[0] == "master", DEADLINE, "promoted")
            time.sleep(1.0)
        finally:
            seed.redis["b_m"].resume()
        time.sleep(0.5)
        load.stop()
        seed.report("hold_sigstop_master", check(seed, load, 1, fault, fault + STALL_WINDOW,
                                                 seed.addr("a_r"), "sigstop"))
        wait_until(lambda: replicates(seed.addr("b_m"), seed.addr("a_r")), DEADLINE,
                   "the hung one steps down")

        # 3. SIGKILL the watchdog of shard 0's master (B:PR): A:PM takes over by handover
        wait_until(lambda: seed.node_of(0, "a_m") is not None, DEADLINE, "A:PM registered")
        load = Load(seed, "dog")
        time.sleep(1.0)
        fault = time.monotonic()
        seed.dogs["b_r"].kill()
        wait_until(lambda: role(seed.addr("a_m"))[0] == "master", DEADLINE, "handed over")
        wait_until(lambda: replicates(seed.addr("b_r"), seed.addr("a_m"), synced=False),
                   DEADLINE, "the old master demoted")
        time.sleep(1.0)
        load.stop()
        seed.report("hold_master_watchdog_crash", check(seed, load, 0, fault, fault,
                                                        seed.addr("a_m"), "watchdog"))
