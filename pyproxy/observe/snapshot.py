"""Read-only views of the running proxy, for everything that observes it.

INFO, the nutcracker-style stats port and the Prometheus collector read these and never the
live objects: a snapshot is built on the event loop (``Proxy.snapshot()``) from copies, so a
reader on another thread (prometheus_client's HTTP thread) sees a consistent picture and can
never race the loop while it iterates (a dict that changes size under an iteration, a list
half-appended). The proxy layer builds them; this module only describes them.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..routing.table import RoutingTable
from .history import TableEvent
from .hotkeys import HotKey
from .slowlog import SlowEntry
from .stats import Histogram, PoolStats, ServerStats


@dataclass(frozen=True, slots=True)
class BackendSnapshot:
    address: str
    connections: int  # TCP connections open now (shared and RESP3)
    queued: int  # requests waiting to be written
    queued_bytes: int
    inflight: int  # requests written and not yet answered
    stats: ServerStats  # a private copy


@dataclass(frozen=True, slots=True)
class TopologySnapshot:
    session_state: str
    changes: int
    rejected: int
    master_changes: dict[str, int]  # a private copy, by shard name
    last_apply_seconds: float
    registrations: int
    registered: bool = False  # our node exists in the session we are connected with


@dataclass(frozen=True, slots=True)
class HoldSnapshot:
    """What holding requests through failovers did in a pool (``proxy/hold.py``)."""

    held_now: int
    held_total: int
    expired: int  # held past the budget: they got the error
    unknown: int  # writes answered "may or may not have been applied"
    hold_time: Histogram  # a private copy
    outages: dict[str, float]  # shard -> seconds without a usable master, the last time


@dataclass(frozen=True, slots=True)
class MigrationSnapshot:
    """What serving migrating slots did in a pool (``proxy/migration.py``), since start."""

    moves: int  # MIGRATEs sent for requests
    busy: int  # BUSYKEY answers: the source's stale copies deleted
    move_errors: int  # requests answered -TRYAGAIN because their keys did not move
    paused: int  # requests that waited for a migration being prepared
    pause_expired: int  # ... until PREPARE_HOLD ran out (they got -TRYAGAIN)


@dataclass(frozen=True, slots=True)
class ActivitySnapshot:
    """Where a pool's requests go and what was slow (``hotkeys``, ``slowlog``, ``history``)."""

    slot_requests: tuple[int, ...]  # keys located per slot since start (modula pools)
    hot_keys: tuple[HotKey, ...]  # the hottest first
    hot_samples: int  # the samples they are a share of
    sample_every: int  # keys located per sample, on average
    slowlog: tuple[SlowEntry, ...]  # newest first
    events: tuple[TableEvent, ...]  # recent topology events, newest first
    hash_tag: bytes | None  # the pool's, to place the hot keys


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    name: str
    listen: str
    table: RoutingTable  # immutable already
    clients: int  # client connections open now
    stats: PoolStats  # a private copy
    backends: dict[str, BackendSnapshot]  # by address: the masters routed to now
    topology: TopologySnapshot | None = None  # ZooKeeper pools only
    hold: HoldSnapshot | None = None  # pools with failover_hold only
    migration: MigrationSnapshot | None = None  # ZooKeeper pools only (they can migrate)
    activity: ActivitySnapshot | None = None  # set by the proxy (not by the pool alone)

    def backend_of(self, shard_index: int) -> BackendSnapshot | None:
        master = self.table.shards[shard_index].master
        return self.backends.get(master) if master else None


@dataclass(frozen=True, slots=True)
class ClientSnapshot:
    """One client connection, with the fields of Redis's CLIENT LIST."""

    id: int
    addr: str
    laddr: str
    fd: int
    name: bytes
    age: int  # seconds since it connected
    idle: int  # seconds since its last command
    flags: str  # "N" (none), "x" (in MULTI), "b" (blocked), "P" (subscribed)
    sub: int  # channels subscribed
    psub: int  # patterns
    ssub: int  # shard channels
    multi: int  # commands queued in MULTI, -1 outside one
    qbuf: int  # request bytes read and not yet parsed
    omem: int  # reply bytes not yet taken by the client (the transport's write buffer)
    cmd: str  # the last command, as Redis names it
    resp: int  # 2 or 3
    lib_name: bytes
    lib_ver: bytes


@dataclass(frozen=True, slots=True)
class ProxySnapshot:
    started: float  # time.time() at start
    pools: tuple[PoolSnapshot, ...] = field(default_factory=tuple)

    @property
    def clients(self) -> int:
        return sum(pool.clients for pool in self.pools)

    @property
    def connections_total(self) -> int:
        return sum(pool.stats.client_connections_total for pool in self.pools)

    @property
    def requests_total(self) -> int:
        return sum(pool.stats.requests for pool in self.pools)
