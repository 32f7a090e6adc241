"""Online resharding for ``pyproxy-admin``: move slots between shards **with their keys**,
under load, two-phase across every proxy, resumable.

One migration at a time, each a ``Step`` (slots of one source shard to one target shard)
driven through ZooKeeper (``cluster/layout``, ``routing/table``):

1. **prepare** — the source's node gets the migration record, state ``prepare``. Every proxy
   stops sending requests for those slots anywhere (they wait, ``proxy/migration``) and,
   once the requests it had sent to the source are answered, acknowledges the new layout in
   its node. The admin waits for **every** proxy registered under the proxy path to show it
   (``--ack-timeout``). One that does not is named and the record is removed again — safe,
   since nothing has moved yet — unless ``--force`` (then a request that proxy still sends
   to the source may write a key that has already moved: the target's copy wins, and that
   write is lost).
2. **moving** — the record's state becomes ``moving``. From then on each proxy moves a
   request's keys to the target (MIGRATE, atomic on the source) before running it there;
   the ``Mover`` here walks the source's master (``SCAN``) and MIGRATEs every key of the
   slots, in batches (``--batch`` keys; ``--rate`` keys/s at most), keys bigger than
   ``BIG_KEY`` alone with a deadline that fits them (and reported). It repeats full passes
   until one finds no key of the slots left. A ``BUSYKEY`` (a key on both sides after a
   failover of the source lost a move's delete) is resolved for the target: the source's
   copy is deleted. The source's and target's masters are read from ZooKeeper again after
   every error, so a failover of either only costs a retry.
3. **finish** — one ZooKeeper transaction gives the slots to the target and removes the
   record; the admin then waits for the proxies to acknowledge it (a warning if they do not:
   routing is correct either way).

Every ZooKeeper write is conditional on the node versions just read, and the whole run holds
a lock (``<cluster>.admin-lock``), so two admins never interleave. **Resumable**: killed
at any point, the record stays in ZooKeeper and every proxy keeps serving the slots correctly
(a request for a slot in ``prepare`` waits at most ``proxy/migration.PREPARE_HOLD`` seconds
before it gets ``-TRYAGAIN``); any resharding command run again first drives that migration
to its end, then plans the rest from the layout it finds. Ctrl-C in ``prepare`` removes the
record before exiting.

A CLI: blocking kazoo and sockets are right here (there is no event loop).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError, NotEmptyError, RolledBackError

from . import config as configuration
from .cluster import zkschema
from .cluster.layout import Layout, ShardState, Step
from .routing.hashing import make_slotter
from .routing.table import PREPARE, Migration, Ranges, format_ranges, slot_set, to_ranges
from .watchdog.probe import Conn, RedisError, ReplyError

BIG_KEY = 64 * 1024 * 1024  # bytes: moved alone, with a deadline that fits it
BIG_KEY_RATE = 20 * 1024 * 1024  # bytes/s assumed when fitting a big key's deadline
MIGRATE_TIMEOUT_MS = 5000  # MIGRATE's own idle timeout towards the target
SCAN_COUNT = 1000
ACK_POLL = 0.05
RETRY_PAUSE = 0.5  # after an error, before reading the masters again
MAX_RETRIES = 60  # consecutive errors of one mover before it gives up (about 30 s)
LOCK_WAIT = 15.0  # a killed admin's lock goes with its ZooKeeper session


class ReshardError(Exception):
    """Why a resharding command stopped; printed as is."""


# ------------------------------------------------------------------ ZooKeeper side


class Cluster:
    """The cluster's nodes in ZooKeeper, for the admin (blocking kazoo)."""

    def __init__(self, zk: KazooClient, pool: configuration.PoolConfig):
        assert pool.zookeeper_redis_path and pool.zookeeper_path
        self.zk = zk
        self.pool = pool
        self.path = pool.zookeeper_redis_path.rstrip("/")
        self.proxies_path = pool.zookeeper_path.rsplit("/", 1)[0] or "/"

    def read(self) -> Layout:
        try:
            names = sorted(self.zk.get_children(self.path))
        except NoNodeError:
            raise ReshardError(f"{self.path} does not exist (run: pyproxy-admin init)") from None
        shards = {}
        for name in names:
            path = zkschema.shard_path(self.path, name)
            try:
                data, stat = self.zk.get(path)
                members = zkschema.order_members(self.zk.get_children(path))
            except NoNodeError:
                continue  # removed meanwhile
            try:
                ranges, migration = zkschema.parse_shard(data, path)
            except zkschema.SchemaError as exc:
                raise ReshardError(f"{exc}: fix it before resharding") from None
            shards[name] = ShardState(name, ranges, migration,
                                      tuple(m.address for m in members), stat.version)
        layout = Layout(shards, self.pool.modulus)
        problems = layout.errors()
        if problems:
            raise ReshardError("the layout in ZooKeeper is not valid: " + "; ".join(problems))
        return layout

    def write(self, old: Layout, new: Layout) -> Layout:
        """Every shard whose data differs, in one transaction, each conditional on the version
        read; the layout as written (versions bumped)."""
        changed = [s for s in new.shards.values()
                   if (s.ranges, s.migration) != (old.shards[s.name].ranges,
                                                   old.shards[s.name].migration)]
        if not changed:
            return new
        transaction = self.zk.transaction()
        for shard in changed:
            transaction.set_data(zkschema.shard_path(self.path, shard.name),
                                 zkschema.shard_data(shard.ranges, shard.migration),
                                 version=old.shards[shard.name].version)
        results = transaction.commit()
        if any(isinstance(r, (BadVersionError, NoNodeError, RolledBackError)) for r in results):
            raise ReshardError("the layout changed in ZooKeeper meanwhile (another admin, or "
                               "an operator): nothing written; run the command again")
        shards = dict(new.shards)
        for shard in changed:
            shards[shard.name] = ShardState(shard.name, shard.ranges, shard.migration,
                                            shard.members, old.shards[shard.name].version + 1)
        return Layout(shards, new.modulus)

    def proxies(self) -> dict[str, zkschema.ProxyInfo | None]:
        """Every node under the proxy path: its ProxyInfo (None when unreadable)."""
        found: dict[str, zkschema.ProxyInfo | None] = {}
        try:
            children = self.zk.get_children(self.proxies_path)
        except NoNodeError:
            return found
        for child in sorted(children):
            try:
                data, _ = self.zk.get(f"{self.proxies_path.rstrip('/')}/{child}")
                found[child] = zkschema.ProxyInfo.decode(data)
            except NoNodeError:
                continue
            except zkschema.SchemaError:
                found[child] = None
        return found

    def unacknowledged(self, layout: Layout, timeout: float) -> list[str]:
        """Wait until every registered proxy routes by ``layout``; the ones that did not
        within ``timeout`` seconds (with what they route by)."""
        digest = layout.digest()
        deadline = time.monotonic() + timeout
        while True:
            late = [f"{node} ({_proxy_text(info)})" for node, info in self.proxies().items()
                    if info is None or info.layout != digest]
            if not late or time.monotonic() >= deadline:
                return late
            time.sleep(ACK_POLL)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        lock = self.zk.Lock(f"{self.path}.admin-lock",
                            f"pyproxy-admin pid {os.getpid()} on {socket.gethostname()}")
        if not lock.acquire(timeout=LOCK_WAIT):
            holders = ", ".join(str(c) for c in lock.contenders()) or "someone"
            raise ReshardError(f"another pyproxy-admin is resharding this cluster ({holders}); "
                               "wait for it to finish")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                lock.release()


def _proxy_text(info: zkschema.ProxyInfo | None) -> str:
    if info is None:
        return "unreadable node"
    return f"pid {info.pid}, routes by layout {info.layout or 'none yet'}"


# ------------------------------------------------------------------ progress


class Progress:
    """Keys moved, keys/s and ETA: one line rewritten on a terminal, else a line every 5 s."""

    def __init__(self, out: TextIO, tty: bool):
        self.out, self.tty = out, tty
        self.total = 0
        self.done = 0
        self.started = time.monotonic()
        self.shown = 0.0
        self.label = ""

    def begin(self, label: str, estimate: int) -> None:
        self.label, self.total, self.done = label, estimate, 0
        self.started = self.shown = time.monotonic()

    def advance(self, keys: int) -> None:
        self.done += keys
        now = time.monotonic()
        if now - self.shown >= (0.2 if self.tty else 5.0):
            self.shown = now
            self._show(now, final=False)

    def end(self) -> None:
        self._show(time.monotonic(), final=True)

    def _show(self, now: float, final: bool) -> None:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        total = max(self.total, self.done)
        if final:
            text = f"{self.label}: moved {self.done:,} keys in {elapsed:.1f} s ({rate:,.0f} keys/s)"
        else:
            eta = f"ETA {(total - self.done) / rate:.0f} s" if rate and total else "ETA ?"
            share = self.done / total if total else 0.0
            bar = "#" * int(share * 30)
            text = (f"{self.label}: [{bar:<30}] {self.done:,}/~{total:,} keys "
                    f"{rate:,.0f} keys/s {eta}")
        if self.tty:
            self.out.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


# ------------------------------------------------------------------ the mover


@dataclass
class MoveReport:
    keys: int = 0  # keys of the slots found and moved (or found gone)
    busy: int = 0  # batches where the target already had a key: source copies deleted
    passes: int = 0
    big: list[tuple[bytes, int]] = field(default_factory=list)  # (key, bytes) moved alone
    seconds: float = 0.0


class Mover:
    """Moves every key of ``migration``'s slots from the source shard's master to the
    target's (see the module docstring)."""

    def __init__(self, cluster: Cluster, source: str, migration: Migration, batch: int,
                 rate: float, progress: Progress):
        pool = cluster.pool
        self.cluster, self.source, self.migration = cluster, source, migration
        self.batch, self.rate, self.progress = max(batch, 1), rate, progress
        inside = bytearray(pool.modulus)
        for start, end in migration.slots:
            inside[start : end + 1] = b"\x01" * (end - start + 1)
        slot_of = make_slotter(pool.hash_tag, pool.modulus, pool.hash)
        self.moves: Callable[[bytes], bool] = lambda key: bool(inside[slot_of(key)])
        self.report = MoveReport()
        self.errors = 0

    def run(self) -> MoveReport:
        started = time.monotonic()
        while True:
            self.report.passes += 1
            try:
                found = self._pass()
            except (RedisError, OSError) as exc:
                self._failed(exc)
                continue
            self.errors = 0
            if found == 0:
                self.report.seconds = time.monotonic() - started
                return self.report

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.errors >= MAX_RETRIES:
            raise ReshardError(f"moving keys keeps failing ({exc}); run the command again "
                               "once the shards are healthy (nothing is lost meanwhile)")
        time.sleep(RETRY_PAUSE)

    def _masters(self) -> tuple[str, str]:
        layout = self.cluster.read()
        source, target = layout.shards[self.source], layout.shards[self.migration.target]
        if source.master is None or target.master is None:
            missing = self.source if source.master is None else self.migration.target
            raise RedisError(f"shard {missing} has no master right now")
        return source.master, target.master

    def _pass(self) -> int:
        """One full SCAN of the source's master; the count of the slots' keys it found."""
        pool = self.cluster.pool
        source, target = self._masters()
        conn = Conn(source, timeout=10.0, password=pool.redis_auth, db=pool.redis_db)
        host, port = target.rsplit(":", 1)
        prefix: list[str | int | bytes] = ["MIGRATE", host, port, "", pool.redis_db,
                                           MIGRATE_TIMEOUT_MS]
        if pool.redis_auth:
            prefix += ["AUTH", pool.redis_auth]
        found = 0
        cursor: bytes = b"0"
        try:
            while True:
                cursor, keys = conn.call("SCAN", cursor, "COUNT", SCAN_COUNT)
                mine = [key for key in keys if self.moves(key)]
                for at in range(0, len(mine), self.batch):
                    self._move(conn, prefix, mine[at : at + self.batch])
                found += len(mine)
                if cursor == b"0":
                    return found
        finally:
            conn.close()

    def _move(self, conn: Conn, prefix: list[str | int | bytes], keys: list[bytes]) -> None:
        sizes = conn.pipeline(*(("MEMORY", "USAGE", key) for key in keys))
        small = [key for key, size in zip(keys, sizes, strict=True)
                 if not isinstance(size, int) or size <= BIG_KEY]
        if small:
            self._migrate(conn, prefix, small, 10.0)
        for key, size in zip(keys, sizes, strict=True):
            if isinstance(size, int) and size > BIG_KEY:
                self.report.big.append((key, size))
                self._migrate(conn, prefix, [key], 10.0 + size / BIG_KEY_RATE)
        self.report.keys += len(keys)
        self.progress.advance(len(keys))
        if self.rate > 0:  # keep to --rate keys/s overall
            ahead = self.report.keys / self.rate - (time.monotonic() - self.progress.started)
            if ahead > 0:
                time.sleep(ahead)

    def _migrate(self, conn: Conn, prefix: list[str | int | bytes], keys: list[bytes],
                 deadline: float) -> None:
        conn.timeout = deadline
        try:
            conn.call(*prefix, "KEYS", *keys)
        except ReplyError as exc:
            if "BUSYKEY" not in str(exc):
                raise
            # the target has some of them already: its copies are the newer (see module)
            self.report.busy += 1
            conn.call("DEL", *keys)


# ------------------------------------------------------------------ driving a migration


@dataclass
class Options:
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    batch: int = 100
    rate: float = 0.0
    ack_timeout: float = 5.0


class Resharder:
    """Runs plans step by step (see the module docstring); ``say`` prints a line."""

    def __init__(self, cluster: Cluster, options: Options, out: TextIO = sys.stdout):
        self.cluster, self.options, self.out = cluster, options, out
        self.progress = Progress(out, out.isatty())

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def run(self, plan: Callable[[Layout], list[Step]]) -> None:
        """Finish a migration left in progress, then plan from the layout and run the plan."""
        with self.cluster.locked():
            layout = self.cluster.read()
            current = layout.migration()
            if current is not None:
                source, migration = current
                step = Step(source, migration.target, migration.slots)
                if self.options.dry_run:
                    self.say(f"in progress ({migration.state}, id {migration.id}), would be "
                             f"finished first: {step.describe()}")
                    layout = layout.finish(source)
                else:
                    self.say(f"resuming migration {migration.id} ({migration.state}): "
                             f"{step.describe()}")
                    layout = self._drive(layout, source)
            steps = plan(layout)
            if self.options.dry_run:
                self._print_plan(layout, steps)
                return
            if not steps:
                self.say("nothing to move")
                return
            self._confirm(layout, steps)
            for step in steps:
                layout = self._step(step)

    def _print_plan(self, layout: Layout, steps: list[Step]) -> None:
        if not steps:
            self.say("plan: nothing to move")
        for number, step in enumerate(steps, 1):
            self.say(f"step {number}: {step.describe()}, about "
                     f"{self._estimate(layout, step)} keys")

    def _estimate(self, layout: Layout, step: Step) -> str:
        """The source's DBSIZE times the share of its slots that move ("?" if unreachable)."""
        shard = layout.shards[step.source]
        if shard.master is None or not shard.slots:
            return "?"
        pool = self.cluster.pool
        conn = Conn(shard.master, timeout=2.0, password=pool.redis_auth, db=pool.redis_db)
        try:
            size = conn.call("DBSIZE")
        except RedisError:
            return "?"
        finally:
            conn.close()
        return f"{int(size * step.count / shard.slots):,}"

    def _confirm(self, layout: Layout, steps: list[Step]) -> None:
        """Ask on a terminal (not with --yes; never when stdin is not a terminal)."""
        if self.options.yes or not sys.stdin.isatty():
            return
        self._print_plan(layout, steps)
        answer = input("move these slots with their keys now? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise ReshardError("not confirmed: nothing changed")

    def _step(self, step: Step) -> Layout:
        layout = self.cluster.read()
        migration_id = uuid.uuid4().hex[:12]
        self.say(f"migration {migration_id}: {step.describe()}")
        layout = self.cluster.write(layout, layout.start(step, migration_id))
        return self._drive(layout, step.source)

    def _drive(self, layout: Layout, source: str) -> Layout:
        """Take the source's migration from where it is to its end."""
        migration = layout.shards[source].migration
        assert migration is not None
        if migration.state == PREPARE:
            try:
                self._acknowledged(layout, "prepare")
            except BaseException:  # not acknowledged, or Ctrl-C: nothing has moved yet
                fresh = self.cluster.read()
                self.cluster.write(fresh, fresh.abandon(source))
                self.say("  the migration record is removed: nothing moved")
                raise
            layout = self.cluster.write(layout, layout.moving(source))
            self.say("  every proxy is ready: moving keys")
        target = layout.shards[migration.target]
        if target.master is None:
            raise ReshardError(f"the target {target.name} has no master: start its redis and "
                               "watchdog, then run the command again")
        self.progress.begin(f"  {format_ranges(migration.slots)} -> {migration.target}",
                            self._moving_estimate(layout, source, migration))
        report = Mover(self.cluster, source, migration, self.options.batch, self.options.rate,
                       self.progress).run()
        self.progress.end()
        for key, size in report.big:
            self.say(f"  big key {key.decode(errors='replace')!r} ({size / 2**20:.0f} MiB) "
                     "moved alone")
        layout = self.cluster.read()
        record = layout.shards[source].migration
        if record is None or record.id != migration.id:
            raise ReshardError("the migration record changed under the mover; run the command "
                               "again")
        finished = self.cluster.write(layout, layout.finish(source))
        late = self.cluster.unacknowledged(finished, self.options.ack_timeout)
        if late:
            self.say(f"  warning: not yet acknowledged by {', '.join(late)} (routing is "
                     "correct either way)")
        self.say(f"  done: {format_ranges(migration.slots)} now on {migration.target} "
                 f"({report.passes} passes)")
        return finished

    def _acknowledged(self, layout: Layout, what: str) -> None:
        proxies = self.cluster.proxies()
        if not proxies:
            self.say(f"  warning: no proxy is registered under {self.cluster.proxies_path}")
            return
        late = self.cluster.unacknowledged(layout, self.options.ack_timeout)
        if not late:
            return
        if self.options.force:
            self.say(f"  warning (--force): {', '.join(late)} did not acknowledge the "
                     f"{what} step; going on")
            return
        raise ReshardError(f"{', '.join(late)} did not acknowledge the {what} step within "
                           f"{self.options.ack_timeout:.0f} s; nothing moved (fix or stop those "
                           "proxies and run the command again, or --force)")

    def _moving_estimate(self, layout: Layout, source: str, migration: Migration) -> int:
        text = self._estimate(layout, Step(source, migration.target, migration.slots))
        return int(text.replace(",", "")) if text != "?" else 0


# ------------------------------------------------------------------ shard nodes


def add_shard(cluster: Cluster, name: str) -> str:
    if not name or "/" in name or name.startswith(".") or name.endswith(".admin-lock"):
        raise ReshardError(f"{name!r} is not a usable shard name")
    path = zkschema.shard_path(cluster.path, name)
    if cluster.zk.exists(path):
        ranges, _ = zkschema.parse_shard(cluster.zk.get(path)[0], path)
        return f"{path} exists already (slots {format_ranges(ranges) or 'none'})"
    cluster.zk.ensure_path(cluster.path)
    cluster.zk.create(path, zkschema.shard_data(()))
    return (f"created {path} with no slots: start its redis and watchdog, then give it slots "
            "(pyproxy-admin rebalance, or reshard --to " + name + ")")


def remove_shard(cluster: Cluster, name: str) -> str:
    with cluster.locked():
        layout = cluster.read()
        shard = layout.shards.get(name)
        if shard is None:
            raise ReshardError(f"no shard named {name!r}")
        if shard.ranges:
            raise ReshardError(f"{name} owns slots {format_ranges(shard.ranges)}: move them "
                               "first (pyproxy-admin reshard --slots ... --to ..., or rebalance "
                               "once its watchdogs are stopped)")
        moving = layout.migration()
        if moving is not None and name in (moving[0], moving[1].target):
            raise ReshardError(f"{name} takes part in migration {moving[1].id}; finish it "
                               "first (run the resharding command again)")
        if shard.members:
            raise ReshardError(f"{name} still has registered redis ({', '.join(shard.members)})"
                               ": stop their watchdogs first")
        try:
            cluster.zk.delete(zkschema.shard_path(cluster.path, name), version=shard.version)
        except (BadVersionError, NotEmptyError):
            raise ReshardError(f"{name} changed meanwhile; run the command again") from None
    return f"removed {zkschema.shard_path(cluster.path, name)}"


def slots_argument(text: str) -> Ranges:
    """``--slots 0-1023,2048`` -> ranges (a lone number is one slot; any order)."""
    slots: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        spelled = part if "-" in part else f"{part}-{part}"
        try:
            slots |= slot_set(zkschema.parse_ranges(spelled, "--slots"))
        except zkschema.SchemaError as exc:
            raise ReshardError(str(exc)) from None
    if not slots:
        raise ReshardError("--slots names no slot")
    return to_ranges(slots)
