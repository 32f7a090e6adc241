"""Online resharding (issue 14's "Done when"): ``pyproxy-admin add-shard`` + ``rebalance``
2 -> 3 shards and ``reshard`` + ``remove-shard`` 3 -> 2, against real redis-servers,
ZooKeeper, a watchdog beside every redis and two proxies, while clients write and read
through both proxies.

Every key has one writer (a client thread owns the keys ``i % CLIENTS == n``), so its last
acknowledged value is known: afterwards each key is checked on the master that owns its slot
(and absent from every other master), and the TTL keys (never written by the clients) kept
their TTL. Readers check read-your-writes all along. Client errors are counted by kind and
must be 0; p99 latency before / during / after is printed (prefix ``RESHARD``).

Variants of the 2 -> 3 move: plain; the admin SIGKILLed while keys move, then run again;
the source shard's master SIGKILLed while keys move (its replica promoted by the watchdogs).
Plans, slot arguments and layout changes are unit-tested at the top (no servers).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pyproxy.cluster import zkschema
from pyproxy.cluster.layout import (
    Layout,
    LayoutError,
    ShardState,
    Step,
    plan_rebalance,
    plan_reshard,
)
from pyproxy.reshard import ReshardError, slots_argument
from pyproxy.routing.hashing import slot_of
from pyproxy.routing.table import PREPARE, slot_set
from tests.servers import REPO_ROOT, RedisServer, free_port, pool_config, redis_client, wait_until
from tests.test_watchdog import Watchdog

# ---------------------------------------------------------------- plans (no servers)


def _layout(*shards: tuple[str, tuple[tuple[int, int], ...], bool]) -> Layout:
    return Layout({name: ShardState(name, ranges, None, ("127.0.0.1:1",) if live else ())
                   for name, ranges, live in shards})


def _apply(layout: Layout, steps: list[Step]) -> Layout:
    for number, step in enumerate(steps):
        started = layout.start(step, f"m{number}")
        layout = started.finish(step.source)
        assert not layout.errors()
    return layout


def test_rebalance_two_to_three_moves_a_third_with_two_steps() -> None:
    layout = _layout(("a", ((0, 2047),), True), ("b", ((2048, 4095),), True), ("c", (), True))
    steps = plan_rebalance(layout)
    assert [(s.source, s.target) for s in steps] == [("a", "c"), ("b", "c")]
    assert sum(s.count for s in steps) == 4096 - 2 * 1366 + 1  # only what must move
    after = _apply(layout, steps)
    assert sorted(s.slots for s in after.shards.values()) == [1365, 1365, 1366]
    assert plan_rebalance(after) == []  # balanced: nothing more to do


def test_rebalance_resumed_halfway_needs_one_step_more_at_most() -> None:
    """After the first step of 2 -> 3 (as after an admin killed and run again)."""
    layout = _layout(("a", ((0, 1365),), True), ("b", ((2048, 4095),), True),
                     ("c", ((1366, 2047),), True))
    steps = plan_rebalance(layout)
    assert [(s.source, s.target, s.count) for s in steps] == [("b", "c", 683)]


def test_rebalance_empties_a_shard_without_master() -> None:
    layout = _layout(("a", ((0, 1365),), True), ("b", ((1366, 2730),), True),
                     ("c", ((2731, 4095),), False))
    after = _apply(layout, plan_rebalance(layout))
    assert after.shards["c"].ranges == ()
    assert sorted(s.slots for s in after.shards.values()) == [0, 2048, 2048]


def test_reshard_takes_slots_from_each_owner() -> None:
    layout = _layout(("a", ((0, 2047),), True), ("b", ((2048, 4095),), True), ("c", (), True))
    steps = plan_reshard(layout, ((2000, 2100),), "c")
    assert [(s.source, s.slots) for s in steps] == [("a", ((2000, 2047),)),
                                                    ("b", ((2048, 2100),))]
    after = _apply(layout, steps)
    assert after.shards["a"].ranges == ((0, 1999),)
    assert after.shards["b"].ranges == ((2101, 4095),)
    with pytest.raises(LayoutError, match="no shard named"):
        plan_reshard(layout, ((1, 2),), "nope")


def test_one_migration_at_a_time_and_only_own_slots() -> None:
    layout = _layout(("a", ((0, 2047),), True), ("b", ((2048, 4095),), True))
    started = layout.start(Step("a", "b", ((0, 9),)), "m")
    assert started.migration() is not None and started.migration()[1].state == PREPARE
    with pytest.raises(LayoutError, match="in progress"):
        started.start(Step("b", "a", ((3000, 3001),)), "n")
    with pytest.raises(LayoutError, match="does not own"):
        layout.start(Step("a", "b", ((2040, 2050),)), "m")
    assert started.digest() != layout.digest() != started.moving("a").digest()


def test_slots_argument() -> None:
    assert slots_argument("5,0-3,4") == ((0, 5),)
    assert slots_argument("100-200, 300") == ((100, 200), (300, 300))
    for bad in ("", "a-b", "5-3"):
        with pytest.raises(ReshardError):
            slots_argument(bad)


def test_shard_data_round_trip() -> None:
    from pyproxy.routing.table import Migration

    migration = Migration(((10, 20),), "redis-0002", "abc", PREPARE)
    for ranges, moving in ((((0, 9), (21, 99)), migration), ((), None), (((0, 4095),), None)):
        data = zkschema.shard_data(ranges, moving)
        assert zkschema.parse_shard(data, "x") == (ranges, moving)
    assert zkschema.parse_shard(b'{"weight":"0-2047"}', "x") == (((0, 2047),), None)
    for bad in (b'{"weight":"5-1"}', b'{"weight":"0-9,5-20"}', b'{"weight":3}',
                b'{"weight":"0-1","migrating":{"slots":"0-1"}}'):
        with pytest.raises(zkschema.SchemaError):
            zkschema.parse_shard(bad, "x")


# ---------------------------------------------------------------- the cluster

CLUSTER = "/redis/cluster/grow"
PROXIES = "/redis/proxy/grow"
DEADLINE = 20.0
KEYS = 100_000
TTL_KEYS = 1000
CLIENTS = 50
PAUSE = 0.005  # between two operations of one client
WATCHDOG_CONF: dict[str, Any] = {"zkSessionTimeout": 2000, "healthCheckInterval": 150,
                                 "healthCheckTimeout": 150, "healthCheckFailures": 3}
PREFIX = "RESHARD"


def admin(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyproxy.admin", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


def admin_process(*args: str, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "pyproxy.admin", *args], stdout=sink,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


class Grow:
    """Shards redis-0000 (A) and redis-0001 (B), a watchdog beside each redis, two proxies;
    ``add`` brings up redis-0002 (C) with its watchdog."""

    def __init__(self, zk_hosts: str, zk: Any, redis_factory: Any, proxy_factory: Any,
                 tmp_path: Path, replica_of_a: bool = False) -> None:
        self.zk, self.zk_hosts, self.redis_factory = zk, zk_hosts, redis_factory
        self.redis: dict[str, RedisServer] = {"a": redis_factory(), "b": redis_factory()}
        self.dogs: list[Watchdog] = []
        servers = [f"{self.redis['a'].address}:0-2047", f"{self.redis['b'].address}:2048-4095"]
        ports = [free_port(), free_port()]
        configs = [pool_config(port, servers, timeout=2000, zookeeper_host=zk_hosts,
                               zookeeper_path=f"{PROXIES}/127.0.0.1:{port}",
                               zookeeper_redis_path=CLUSTER) for port in ports]
        self.conf = tmp_path / "grow.yml"
        self.conf.write_text(configs[0])
        done = admin("init", "-c", str(self.conf))
        assert done.returncode == 0, done.stderr
        self._watch("a", "redis-0000")
        self._watch("b", "redis-0001")
        if replica_of_a:
            a = self.redis["a"]
            self.redis["a2"] = redis_factory(extra_args=("--replicaof", a.host, str(a.port)))
            self._watch("a2", "redis-0000")
        self.proxies = [proxy_factory(config) for config in configs]
        self.addresses = [f"127.0.0.1:{port}" for port in ports]
        wait_until(lambda: self.layout_acknowledged(), DEADLINE, "both proxies on ZooKeeper")

    def _watch(self, name: str, shard: str) -> None:
        dog = Watchdog(self.zk_hosts, self.redis[name], shard=f"{CLUSTER}/{shard}",
                       **WATCHDOG_CONF)
        dog.start()
        self.dogs.append(dog)
        address = self.redis[name].address
        wait_until(lambda: any(m.address == address for m in zkschema.order_members(
            self.zk.get_children(f"{CLUSTER}/{shard}"))), DEADLINE, f"{name} registered", dog)

    def add(self) -> None:
        done = admin("add-shard", "-c", str(self.conf), "redis-0002")
        assert done.returncode == 0 and "with no slots" in done.stdout, done.stdout + done.stderr
        self.redis["c"] = self.redis_factory()
        self._watch("c", "redis-0002")
        wait_until(self.layout_acknowledged, DEADLINE, "the proxies know redis-0002")

    def weights(self) -> dict[str, tuple[tuple[int, int], ...]]:
        out = {}
        for name in self.zk.get_children(CLUSTER):
            ranges, migration = zkschema.parse_shard(self.zk.get(f"{CLUSTER}/{name}")[0], name)
            out[name] = ranges
        return out

    def migration(self) -> Any:
        for name in self.zk.get_children(CLUSTER):
            _, migration = zkschema.parse_shard(self.zk.get(f"{CLUSTER}/{name}")[0], name)
            if migration is not None:
                return migration
        return None

    def layout_acknowledged(self) -> bool:
        digest = zkschema.layout_digest(
            (name, *zkschema.parse_shard(self.zk.get(f"{CLUSTER}/{name}")[0], name))
            for name in self.zk.get_children(CLUSTER))
        nodes = self.zk.get_children(PROXIES) if self.zk.exists(PROXIES) else []
        return len(nodes) == 2 and all(zkschema.ProxyInfo.decode(
            self.zk.get(f"{PROXIES}/{n}")[0]).layout == digest for n in nodes)

    def masters(self) -> dict[str, str]:
        """shard -> its master's address, as ZooKeeper has it."""
        out = {}
        for name in self.zk.get_children(CLUSTER):
            members = zkschema.order_members(self.zk.get_children(f"{CLUSTER}/{name}"))
            if members:
                out[name] = members[0].address
        return out

    def close(self) -> None:
        for dog in self.dogs:
            dog.close()


def _client(address: str) -> Any:
    host, port = address.rsplit(":", 1)
    return redis_client(host, int(port))


def preload(grow: Grow) -> tuple[list[str], list[str]]:
    """KEYS keys valued "init" and TTL_KEYS keys with a one-hour TTL, on their masters."""
    keys = [f"key:{i}" for i in range(KEYS)]
    ttl_keys = [f"ttl:{i}" for i in range(TTL_KEYS)]
    by_master: dict[str, list[str]] = {"a": [], "b": []}
    for key in keys + ttl_keys:
        by_master["a" if slot_of(key.encode()) < 2048 else "b"].append(key)
    for name, owned in by_master.items():
        client = grow.redis[name].client()
        for at in range(0, len(owned), 5000):
            pipe = client.pipeline(transaction=False)
            for key in owned[at:at + 5000]:
                if key.startswith("ttl:"):
                    pipe.set(key, "t", ex=3600)
                else:
                    pipe.set(key, "init")
            pipe.execute()
    return keys, ttl_keys


class Client(threading.Thread):
    """Writes and reads its own keys through one proxy; records every acknowledged value,
    latency by time, and errors by kind. Bounded: ``stop()`` or MAX_SECONDS."""

    MAX_SECONDS = 240.0

    def __init__(self, number: int, address: str, keys: list[str],
                 only: set[int] | None = None) -> None:
        super().__init__(name=f"client {number}", daemon=True)
        self.address = address
        self.keys = [k for k in keys[number::CLIENTS]
                     if only is None or slot_of(k.encode()) in only]
        self.value: dict[str, str] = {}  # last acknowledged value
        self.unknown: set[str] = set()  # keys whose last write's outcome is unknown
        self.errors: Counter[str] = Counter()
        self.latency: list[tuple[float, float]] = []  # (done at, seconds)
        self.stopping = threading.Event()
        self.random = random.Random(number)
        self.number = number

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        client = _client(self.address)
        deadline = time.monotonic() + self.MAX_SECONDS
        n = 0
        while not self.stopping.is_set() and time.monotonic() < deadline and self.keys:
            n += 1
            key = self.random.choice(self.keys)
            value = f"c{self.number}:{n}"
            started = time.monotonic()
            try:
                if n % 3 == 0:
                    if client.set(key, value):
                        self.value[key] = value
                        self.unknown.discard(key)
                elif n % 3 == 1:
                    expected = self.value.get(key, "init")
                    got = client.get(key)
                    if key not in self.unknown and got != expected.encode():
                        self.errors[f"read {key}: {got!r} != {expected!r}"] += 1
                else:
                    some = self.random.sample(self.keys, min(3, len(self.keys)))
                    got = client.mget(some)
                    for k, v in zip(some, got, strict=True):
                        if k not in self.unknown and v != self.value.get(k, "init").encode():
                            self.errors[f"mget {k}: {v!r}"] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
                self.errors[type(exc).__name__ + ": " + str(exc)[:120]] += 1
                if n % 3 == 0:
                    self.unknown.add(key)
                client.close()
                client = _client(self.address)
            self.latency.append((time.monotonic(), time.monotonic() - started))
            time.sleep(PAUSE)
        client.close()


def p99(clients: list[Client], start: float, end: float) -> float | None:
    values = sorted(s for c in clients for at, s in c.latency if start <= at < end)
    if not values:
        return None
    return values[int(len(values) * 0.99)] * 1000


def verify(grow: Grow, keys: list[str], ttl_keys: list[str], clients: list[Client]) -> int:
    """Every key on its owner with its last acknowledged value, on no other master; TTLs kept.
    Returns how many keys were checked."""
    weights = grow.weights()
    owner_of_slot = {}
    for name, ranges in weights.items():
        for slot in slot_set(ranges):
            owner_of_slot[slot] = name
    assert len(owner_of_slot) == 4096
    masters = grow.masters()
    expected = {key: "init" for key in keys}
    for client in clients:
        expected.update(client.value)
    unknown = set().union(*(c.unknown for c in clients))
    conns = {name: _client(address) for name, address in masters.items()}
    by_owner: dict[str, list[str]] = {}
    for key in keys + ttl_keys:
        by_owner.setdefault(owner_of_slot[slot_of(key.encode())], []).append(key)
    wrong, doubled = [], []
    for owner, owned in by_owner.items():
        values = []
        for at in range(0, len(owned), 10000):
            values += conns[owner].mget(owned[at:at + 10000])
        for key, value in zip(owned, values, strict=True):
            want = b"t" if key.startswith("ttl:") else expected[key].encode()
            if value != want and key not in unknown:
                wrong.append((key, owner, value, want))
        for other, conn in conns.items():
            if other == owner:
                continue
            pipe = conn.pipeline(transaction=False)
            for key in owned:
                pipe.exists(key)
            doubled += [k for k, there in zip(owned, pipe.execute(), strict=True) if there]
    assert not wrong, f"{len(wrong)} keys wrong, e.g. {wrong[:5]}"
    assert not doubled, f"{len(doubled)} keys on two shards, e.g. {doubled[:5]}"
    for key in ttl_keys:
        ttl = conns[owner_of_slot[slot_of(key.encode())]].ttl(key)
        assert 3000 < ttl <= 3600, (key, ttl)
    for conn in conns.values():
        conn.close()
    return len(keys) + len(ttl_keys)


def run_load(grow: Grow, keys: list[str], only: set[int] | None = None) -> list[Client]:
    clients = [Client(n, grow.addresses[n % 2], keys, only) for n in range(CLIENTS)]
    for client in clients:
        client.start()
    return clients


def report(name: str, clients: list[Client], marks: dict[str, float], extra: str) -> None:
    errors = sum((c.errors for c in clients), Counter())
    print(f"{PREFIX} {name}: client errors {sum(errors.values())} {dict(errors.most_common(5))}; "
          f"p99 ms before {p99(clients, marks['start'], marks['move']):.1f} "
          f"during {p99(clients, marks['move'], marks['moved']):.1f} "
          f"after {p99(clients, marks['moved'], marks['end']):.1f}; {extra}")


@pytest.fixture
def zk(zk_server: Any, zk_hosts: str) -> Any:
    client = zk_server.client(hosts=zk_hosts)
    yield client
    client.stop()
    client.close()


def _moved_by_admin(output: str) -> str:
    lines = [line for line in output.splitlines() if "moved" in line and "keys/s" in line]
    return "; ".join(line.strip() for line in lines)


@pytest.mark.parametrize("fault", ["none", "admin-killed", "source-master-killed"])
def test_two_to_three_shards_under_load_loses_nothing(fault: str, zk: Any, zk_hosts: str,
                                                      redis_factory: Any, proxy_factory: Any,
                                                      tmp_path: Path) -> None:
    grow = Grow(zk_hosts, zk, redis_factory, proxy_factory, tmp_path,
                replica_of_a=fault == "source-master-killed")
    try:
        keys, ttl_keys = preload(grow)
        if "a2" in grow.redis:
            replica, master = grow.redis["a2"].client(), grow.redis["a"].client()
            wait_until(lambda: replica.dbsize() == master.dbsize(), DEADLINE, "replica synced")
        grow.add()
        # with the source's master killed, writes go only to slots that move off it first:
        # each runs on the target after its key moved, so none relies on the dying master
        moving_first = set(range(1366, 2048)) if fault == "source-master-killed" else None
        marks = {"start": time.monotonic()}
        clients = run_load(grow, keys, moving_first)
        time.sleep(2.0)
        marks["move"] = time.monotonic()
        out = tmp_path / "admin.out"
        args = ("rebalance", "-c", str(grow.conf), "--yes")
        if fault == "none":
            done = admin(*args)
            assert done.returncode == 0, done.stdout + done.stderr
            output = done.stdout
        else:
            rate = ("--rate", "4000")  # slow enough to strike in the middle
            process = admin_process(*args, *rate, out=out)
            target = grow.redis["c"].client()
            wait_until(lambda: target.dbsize() > 5000, DEADLINE * 2, "keys moving to C")
            assert grow.migration() is not None and grow.migration().state == "moving"
            if fault == "admin-killed":
                process.kill()
                process.wait(DEADLINE)
                time.sleep(1.0)  # clients keep going with no admin running
            else:
                grow.redis["a"].kill()
            if fault == "admin-killed":
                again = admin(*args)
                assert again.returncode == 0, again.stdout + again.stderr
                assert "resuming migration" in again.stdout, again.stdout
                output = out.read_text() + again.stdout
            else:
                process.wait(180)
                output = out.read_text()
                assert process.returncode == 0, output
        marks["moved"] = time.monotonic()
        time.sleep(2.0)
        for client in clients:
            client.stop()
        for client in clients:
            client.join(DEADLINE)
        marks["end"] = time.monotonic()
        weights = grow.weights()
        assert sorted(len(slot_set(r)) for r in weights.values()) == [1365, 1365, 1366], weights
        assert grow.migration() is None
        checked = verify(grow, keys, ttl_keys, clients)
        errors = sum((c.errors for c in clients), Counter())
        report(fault, clients, marks, f"{checked} keys checked; admin: {_moved_by_admin(output)}")
        assert not errors, errors.most_common(10)
        assert sum(len(c.latency) for c in clients) > 1000
    finally:
        grow.close()


def test_three_to_two_shards_with_reshard_and_remove_shard(zk: Any, zk_hosts: str,
                                                           redis_factory: Any,
                                                           proxy_factory: Any,
                                                           tmp_path: Path) -> None:
    grow = Grow(zk_hosts, zk, redis_factory, proxy_factory, tmp_path)
    try:
        keys, ttl_keys = preload(grow)
        grow.add()
        done = admin("reshard", "-c", str(grow.conf), "--slots", "1024-2047,3072-4095",
                     "--to", "redis-0002", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        clients = run_load(grow, keys)
        time.sleep(1.0)
        dry = admin("reshard", "-c", str(grow.conf), "--slots", "1024-2047",
                    "--to", "redis-0000", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "1024-2047 (1024 slots): redis-0002 -> redis-0000, about" in dry.stdout, dry.stdout
        refused = admin("remove-shard", "-c", str(grow.conf), "redis-0002")
        assert refused.returncode == 1 and "owns slots 1024-2047,3072-4095" in refused.stderr
        for slots, to in (("1024-2047", "redis-0000"), ("3072-4095", "redis-0001")):
            done = admin("reshard", "-c", str(grow.conf), "--slots", slots, "--to", to, "--yes")
            assert done.returncode == 0, done.stdout + done.stderr
        refused = admin("remove-shard", "-c", str(grow.conf), "redis-0002")
        assert refused.returncode == 1 and "still has registered redis" in refused.stderr
        grow.dogs[-1].stop()  # C's watchdog: its node goes
        wait_until(lambda: not zk.get_children(f"{CLUSTER}/redis-0002"), DEADLINE,
                   "C deregistered")
        removed = admin("remove-shard", "-c", str(grow.conf), "redis-0002")
        assert removed.returncode == 0, removed.stderr
        wait_until(grow.layout_acknowledged, DEADLINE, "the proxies dropped redis-0002")
        for client in clients:
            client.stop()
        for client in clients:
            client.join(DEADLINE)
        assert grow.weights() == {"redis-0000": ((0, 2047),), "redis-0001": ((2048, 4095),)}
        assert grow.redis["c"].client().dbsize() == 0
        checked = verify(grow, keys, ttl_keys, clients)
        errors = sum((c.errors for c in clients), Counter())
        print(f"{PREFIX} 3->2: client errors {sum(errors.values())}; {checked} keys checked")
        assert not errors, errors.most_common(10)
    finally:
        grow.close()


def test_admin_refuses_when_a_proxy_does_not_acknowledge(zk: Any, zk_hosts: str,
                                                         redis_factory: Any,
                                                         proxy_factory: Any,
                                                         tmp_path: Path) -> None:
    """A registered proxy that does not acknowledge (SIGSTOPped): named, nothing moves, the
    record is removed; the stopped proxy resumes serving the slots where they were."""
    grow = Grow(zk_hosts, zk, redis_factory, proxy_factory, tmp_path)
    try:
        grow.add()
        key = next(k for k in (f"ack:{i}" for i in range(10000))
                   if 1400 <= slot_of(k.encode()) < 2048)
        assert _client(grow.addresses[0]).set(key, "v")
        os.kill(grow.proxies[1].pid, signal.SIGSTOP)
        try:
            done = admin("rebalance", "-c", str(grow.conf), "--yes", "--ack-timeout", "1")
        finally:
            os.kill(grow.proxies[1].pid, signal.SIGCONT)
        assert done.returncode == 1
        assert "did not acknowledge the prepare step" in done.stderr, done.stderr
        assert grow.addresses[1] in done.stderr
        assert grow.migration() is None
        assert grow.weights()["redis-0002"] == ()
        assert _client(grow.addresses[1]).get(key) == b"v"
        assert grow.redis["a"].client().get(key) == b"v"
    finally:
        grow.close()
