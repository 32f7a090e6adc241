#!/usr/bin/env python3
"""A soak: mixed traffic for ``--minutes`` (10) through two proxies over the seed's topology,
with a backend killed and restarted and a master failover every minute.

    python benchmarks/soak.py [--minutes 10] [--clients 40] [--fuzzers 2] [--logs DIR]

The cluster is tests/test_failover_e2e.py's (``start_seed``: ZooKeeper, ``pyproxy-admin
init``, two shards of a master and a replica on 127.0.0.2 / 127.0.0.3, a watchdog beside each
redis, proxy A and proxy B), its proxies with ``preconnect: true`` (and ``allow_flush: false``:
the garbage clients send FLUSHALL too). Traffic, all of it bounded in time:

* ``--clients`` checked clients (tests/checked.py), half through each proxy, pipelining rounds
  of SET, MSET, GET and MGET over keys on both shards with values unique per client, key and
  round; every reply is checked against its own request. One in ten writes 256 KB values, one
  in ten reconnects every third round (connects and disconnects);
* ``--fuzzers`` garbage clients (tests/fuzz.py), a new seed each minute;
* in the 20th second of minute m: shard m % 2's master is SIGKILLed; its watchdog's replica
  takes over (the proxies follow ZooKeeper and hold the shard's requests meanwhile); once both
  proxies write to the new master the killed redis is restarted, empty, on its port and
  rejoins as the replica.

Every 5 s: each proxy's RSS and its descriptors by kind (clients, backend links, ZooKeeper,
listeners, other). At the end: mismatched replies (a reply that is not its own request's),
stale reads (an acknowledged write read back older: lost in a failover, not a pairing error),
errors by kind, RSS per minute, descriptors once the clients are gone (backend links only to
the masters of now, every client socket closed). Exit 0 when: 0 mismatches, RSS flat (the last
minute's mean within 10 % of the second's), no descriptor leak; else 1.

Every process it starts is stopped by pid in a ``finally``; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.checked import CheckedClient, Tally  # noqa: E402
from tests.cluster import call, replicates, role  # noqa: E402
from tests.fuzz import Fuzzer  # noqa: E402
from tests.keys import keys_for_shard  # noqa: E402
from tests.servers import ProxyProcess, RedisServer, ZooKeeperServer, wait_until  # noqa: E402
from tests.test_failover_e2e import Seed, phase_layout, start_seed  # noqa: E402

SAMPLE_EVERY = 5.0  # seconds
FAULT_AT = 20.0  # seconds into each minute
DEADLINE = 30.0  # for each step of a failover, and for the clients to be gone at the end
BIG_VALUE = 256 * 1024
RSS_TOLERANCE = 0.10


def soak_config(text: str) -> str:
    """The seed's proxy config with preconnect (what the issue soaks) and no FLUSH."""
    return text.replace("  redis: true\n", "  redis: true\n  preconnect: true\n"
                        "  allow_flush: false\n", 1)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def _tcp_sockets() -> dict[str, tuple[int, str, str]]:
    """inode -> (local port, remote ip:port, state) of every IPv4 TCP socket."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            ip_hex, port_hex = remote.split(":")
            ip = ".".join(str(b) for b in reversed(bytes.fromhex(ip_hex)))
            out[inode] = (int(local.split(":")[1], 16), f"{ip}:{int(port_hex, 16)}", state)
    return out


def census(pid: int, listen_port: int, redis_ports: set[int], zk_port: int
           ) -> tuple[Counter[str], Counter[str]]:
    """A process's descriptors by kind, and its backend links by remote address."""
    tcp = _tcp_sockets()
    kinds: Counter[str] = Counter()
    links: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if not target.startswith("socket:["):
            kinds["other"] += 1
            continue
        entry = tcp.get(target[8:-1])
        if entry is None:
            kinds["unix socket"] += 1
            continue
        local_port, remote, state = entry
        remote_port = int(remote.rsplit(":", 1)[1])
        if state == "0A":
            kinds["listening"] += 1
        elif local_port == listen_port:
            kinds["client"] += 1
        elif remote_port in redis_ports:
            kinds["backend"] += 1
            links[remote] += 1
        elif remote_port == zk_port:
            kinds["zookeeper"] += 1
        else:
            kinds["tcp other"] += 1
    return kinds, links


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.started: list[Any] = []  # every process this soak started, to stop by pid
        self.zk: ZooKeeperServer | None = None
        self.seed: Seed | None = None
        self.clients: list[CheckedClient] = []
        self.fuzzers: list[Fuzzer] = []
        self.fuzz_outcomes: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.minutes: list[dict[str, Any]] = []

    # ------------------------------------------------------------ bring-up

    def _redis(self, **kwargs: Any) -> RedisServer:
        server = RedisServer(**kwargs)
        self.started.append(server)
        return server.start()

    def _proxy(self, config: str) -> ProxyProcess:
        proxy = ProxyProcess(soak_config(config))
        self.started.append(proxy)
        return proxy.start(timeout=20.0)

    def bring_up(self) -> None:
        self.zk = ZooKeeperServer()
        self.started.append(self.zk)
        self.zk.start()
        hosts = self.zk.chroot_hosts("soak")
        self.seed = Seed(self.zk.client(hosts=hosts))
        start_seed(self.seed, hosts, self._redis, self._proxy, self.tmp)
        phase_layout(self.seed)

    @property
    def proxies(self) -> list[ProxyProcess]:
        assert self.seed is not None
        return self.seed.processes

    def _census(self, proxy: ProxyProcess) -> tuple[Counter[str], Counter[str]]:
        assert self.seed is not None and self.zk is not None
        ports = {server.port for server in self.seed.redis.values()}
        assert proxy.pid is not None
        return census(proxy.pid, proxy.port, ports, self.zk.port)

    # ------------------------------------------------------------ traffic

    def start_clients(self) -> None:
        args = self.args
        seconds = args.minutes * 60 + 120
        for n in range(args.clients):
            proxy = self.proxies[n % 2]
            keys = [k.encode() for pair in zip(keys_for_shard(0, 2, f"soak{n}:"),
                                               keys_for_shard(1, 2, f"soak{n}:"), strict=True)
                    for k in pair]
            client = CheckedClient(f"soak{n}", proxy.port, keys, host=proxy.host,
                                   value_size=BIG_VALUE if n % 10 == 0 else 100,
                                   reconnect_every=3 if n % 10 == 1 else 0, pause=0.02,
                                   max_seconds=seconds, reply_timeout=15.0)
            self.clients.append(client)
            client.start()

    def refresh_fuzzers(self, minute: int) -> None:
        for fuzzer in self.fuzzers:
            fuzzer.stop()
            self.fuzz_outcomes.update(fuzzer.outcomes)
        self.fuzzers = []
        for n in range(self.args.fuzzers):
            proxy = self.proxies[n % 2]
            fuzzer = Fuzzer(proxy.port, 15_000 + minute * 100 + n, host=proxy.host,
                            connections=100_000, max_seconds=58.0, pause=0.05)
            self.fuzzers.append(fuzzer)
            fuzzer.start()

    def tally(self) -> Tally:
        total = Tally()
        for client in self.clients:
            copy = client.tally
            total.add(Tally(copy.ok, copy.rounds, Counter(dict(copy.errors)), copy.mismatches,
                            copy.stale, list(copy.examples)))
        return total

    # ------------------------------------------------------------ faults

    def fail_over(self, shard: int) -> dict[str, Any]:
        """SIGKILL the shard's master; wait for its replica to take over and for both proxies
        to write to it; restart the killed redis empty; wait until it replicates."""
        seed = self.seed
        assert seed is not None
        master, heir = seed.addresses(shard)[:2]
        name = next(n for n, server in seed.redis.items() if server.address == master)
        killed = time.monotonic()
        seed.redis[name].kill()
        wait_until(lambda: seed.addresses(shard)[:1] == [heir] and role(heir)[0] == "master",
                   DEADLINE, f"{heir} to take over shard {shard}")
        promoted = time.monotonic()
        key = keys_for_shard(shard, 1, "soak-probe:")[0]

        def writes_to_heir(proxy: str) -> bool:
            try:
                return bool(call(proxy, "SET", key, "1") == b"OK")
            except OSError:
                return False

        for proxy in seed.proxies:
            wait_until(lambda p=proxy: writes_to_heir(p), DEADLINE, f"{proxy} to write to {heir}")
        served = time.monotonic()
        seed.redis[name].restart()
        wait_until(lambda: replicates(master, heir) and master in seed.addresses(shard),
                   DEADLINE, f"{master} to rejoin as {heir}'s replica")
        return {"shard": shard, "killed": master, "new_master": heir,
                "promoted_ms": round((promoted - killed) * 1000),
                "both_proxies_write_ms": round((served - killed) * 1000),
                "rejoined_ms": round((time.monotonic() - killed) * 1000)}

    # ------------------------------------------------------------ the run

    def sample(self, started: float) -> None:
        row: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
        for i, proxy in enumerate(self.proxies):
            assert proxy.pid is not None
            kinds, _ = self._census(proxy)
            row[f"proxy{i}"] = {"rss_mib": round(rss_mib(proxy.pid), 1), "fds": dict(kinds)}
        self.samples.append(row)

    def run(self) -> dict[str, Any]:
        self.bring_up()
        before = [self._census(p)[0] for p in self.proxies]
        self.start_clients()
        started = time.monotonic()
        last = self.tally()
        for minute in range(self.args.minutes):
            self.refresh_fuzzers(minute)
            minute_start = started + minute * 60
            faulted = False
            next_sample = minute_start
            while time.monotonic() < minute_start + 60:
                now = time.monotonic()
                if now >= next_sample:
                    self.sample(started)
                    next_sample += SAMPLE_EVERY
                if not faulted and now >= minute_start + FAULT_AT:
                    faulted = True
                    self.faults.append(self.fail_over(minute % 2))
                time.sleep(max(0.0, min(next_sample, minute_start + 60) - time.monotonic()))
            total = self.tally()
            errors = total.errors - last.errors
            row = {"minute": minute + 1, "rounds": total.rounds - last.rounds,
                   "mismatches": total.mismatches - last.mismatches,
                   "stale": total.stale - last.stale, "errors": dict(errors),
                   "rss_mib": [self._minute_rss(minute, i) for i in range(2)],
                   "failover": self.faults[-1] if faulted else None}
            self.minutes.append(row)
            print(f"minute {minute + 1}: {json.dumps(row)}", flush=True)
            last = total
        for fuzzer in self.fuzzers:
            fuzzer.stop()
            self.fuzz_outcomes.update(fuzzer.outcomes)
        tallies = [client.stop() for client in self.clients]
        total = Tally()
        for tally in tallies:
            total.add(tally)
        return self.verdict(total, before)

    def _minute_rss(self, minute: int, proxy: int) -> float:
        values = [s[f"proxy{proxy}"]["rss_mib"] for s in self.samples
                  if minute * 60 <= s["t"] < (minute + 1) * 60]
        return round(statistics.mean(values), 1) if values else 0.0

    def verdict(self, total: Tally, before: list[Counter[str]]) -> dict[str, Any]:
        seed = self.seed
        assert seed is not None
        masters = {seed.addresses(shard)[0] for shard in (0, 1)}
        after = []
        for proxy in self.proxies:
            wait_until(lambda p=proxy: self._census(p)[0]["client"] == 0, DEADLINE,
                       f"every client of {proxy!r} gone")
            kinds, links = self._census(proxy)
            after.append({"fds": dict(kinds), "backend_links": dict(links)})
        leaks = []
        for i, (start, end) in enumerate(zip(before, after, strict=True)):
            for kind in ("other", "unix socket", "listening", "zookeeper", "tcp other"):
                if end["fds"].get(kind, 0) > start.get(kind, 0):
                    leaks.append(f"proxy{i}: {kind} {start.get(kind, 0)} -> {end['fds'][kind]}")
            stray = {a: n for a, n in end["backend_links"].items() if a not in masters}
            if stray:
                leaks.append(f"proxy{i}: links to redis that are no master: {stray}")
        rss_flat = []
        for i in range(2):
            second, final = self.minutes[1]["rss_mib"][i], self.minutes[-1]["rss_mib"][i]
            rss_flat.append(abs(final - second) <= RSS_TOLERANCE * second)
        tracebacks = {repr(p): p.log_text().count("Traceback")
                      for p in [*self.proxies, *seed.dogs.values()]}
        return {
            "minutes": self.args.minutes, "clients": self.args.clients,
            "fuzzers": self.args.fuzzers, "checked": total.summary(),
            "mismatches": total.mismatches, "stale": total.stale,
            "errors": dict(total.errors.most_common()), "examples": total.examples,
            "fuzz_connections": dict(self.fuzz_outcomes),
            "failovers": self.faults, "rss_mib_per_minute": [m["rss_mib"] for m in self.minutes],
            "rss_flat": rss_flat, "fds_before": [dict(b) for b in before], "fds_after": after,
            "leaks": leaks, "tracebacks": tracebacks,
            "ok": total.mismatches == 0 and all(rss_flat) and not leaks
            and not any(tracebacks.values()),
        }

    def close(self, logs: Path | None) -> None:
        for thread in [*self.fuzzers, *self.clients]:
            if thread.is_alive():  # a run that failed half-way
                with contextlib.suppress(AssertionError):
                    thread.stop()
        seed = self.seed
        if logs is not None and seed is not None:
            logs.mkdir(parents=True, exist_ok=True)
            named = [(f"watchdog-{n}", p) for n, p in seed.dogs.items()]
            named += [(f"proxy-{i}", p) for i, p in enumerate(seed.processes)]
            for name, process in named:
                (logs / f"{name}.log").write_text(process.log_text())
        if seed is not None:
            for dog in seed.dogs.values():
                dog.close()
            seed.zk.stop()
            seed.zk.close()
        for process in reversed(self.started):
            process.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--clients", type=int, default=40, help="checked clients (default 40)")
    p.add_argument("--fuzzers", type=int, default=2, help="garbage clients (default 2)")
    p.add_argument("--logs", type=Path, help="copy every proxy's and watchdog's log here")
    p.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = p.parse_args(argv)
    if args.minutes < 2:
        p.error("--minutes must be at least 2 (RSS is compared between the 2nd and last)")
    tmp = Path(tempfile.mkdtemp(prefix="pyproxy-soak-"))
    soak = Soak(args, tmp)
    try:
        summary = soak.run()
    finally:
        soak.close(args.logs)
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    print("SOAK " + ("OK" if summary["ok"] else "FAILED") + f": {summary['checked']}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
