"""ZooKeeper side of the proxy: register this proxy, follow the cluster, build tables.

Threading (never block the event loop): kazoo runs its own threads. Every kazoo call here
is an ``*_async`` call whose result is bridged into an asyncio future with
``call_soon_threadsafe``; ``start``/``stop`` run in an executor. Watch and connection-state
callbacks do nothing but ``call_soon_threadsafe``.

Following the cluster: any watch delivery — shards added/removed, a shard's data, a shard's
members — schedules one ``refresh`` that re-reads the whole layout (a few nodes) and
re-arms every watch. Deliveries are treated as "something changed", never as the change
itself, so merged or missed events cannot leave a stale view; refreshes are coalesced so a
burst costs one or two reads.

Building a table (``build_table``, pure):

* A shard's master is its member with the lowest sequence number.
* A shard whose data is not ``{"weight":"a-b"}`` keeps the range it had; ranges that do not
  tile 0..4095 are rejected and the previous ranges are kept — but master changes are still
  followed by shard name, so a bad weight edit never blocks a failover.
* A shard with no live member has no master: its keys get a prompt error.
* ``servers`` from the config is the table until ZooKeeper first answers, and stays in
  force while ZooKeeper is unreachable.

Registration: ``zookeeper_path`` is an ephemeral node (parents persistent) holding
``ProxyInfo`` JSON (with ``--workers``, worker i > 0 registers ``<zookeeper_path>.worker<i>``
beside it: each routes on its own). It is created on every new session; a leftover node from
this proxy's own previous session (same pid and listen address) is replaced; another live
proxy's node is left alone and retried. ``stop`` closes the session, removing it at once.

Acknowledgement: after applying a table the node's ``layout`` is set to the table's
``layout_digest`` — once the pool says nothing sent before it is still on its way to the
source of a migration it prepares (``drained``). ``pyproxy-admin`` waits for every proxy's
node to show the layout it wrote before it takes the next step of a migration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from kazoo.client import KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.retry import KazooRetry

from .. import __version__
from ..config import PoolConfig
from ..observe.snapshot import TopologySnapshot
from ..routing import table as routing
from ..routing.table import RoutingTable, Shard, TopologyError, format_ranges
from . import zk as zkutil
from . import zkschema

log = logging.getLogger("pyproxy.topology")


class TopologyStats:
    __slots__ = ("session_state", "changes", "rejected", "master_changes", "last_apply_seconds",
                 "registrations")

    def __init__(self) -> None:
        self.session_state = "CONNECTING"
        self.changes = 0
        self.rejected = 0
        self.master_changes: dict[str, int] = {}
        self.last_apply_seconds = 0.0  # ZooKeeper event -> new table in effect
        self.registrations = 0

    def snapshot(self) -> TopologySnapshot:
        return TopologySnapshot(self.session_state, self.changes, self.rejected,
                                dict(self.master_changes), self.last_apply_seconds,
                                self.registrations)


def build_table(
    current: RoutingTable, shards: dict[str, tuple[bytes | None, list[str]]], version: int
) -> tuple[RoutingTable | None, list[str]]:
    """A new table from ZooKeeper's view, or None; plus the problems found (one line each).

    ``shards`` maps shard name -> (its data, its children's names).
    """
    problems: list[str] = []
    previous = {shard.name: shard for shard in current.shards}
    candidates: list[Shard] = []
    for name in sorted(shards):
        data, children = shards[name]
        members = zkschema.order_members(children)
        master = members[0].address if members else None
        replicas = tuple(m.address for m in members[1:])
        try:
            ranges, migration = zkschema.parse_shard(data, name)
        except zkschema.SchemaError as exc:
            problems.append(str(exc))
            if name not in previous:
                return None, problems
            ranges, migration = previous[name].ranges, previous[name].migration
        candidates.append(Shard(name, ranges, master, replicas, migration))
    if not candidates:
        return None, problems + ["the cluster has no shards"]
    try:
        return routing.build(candidates, current.modulus, version, "zookeeper"), problems
    except TopologyError as exc:
        problems.extend(exc.errors)
    # Bad ranges: keep the previous ranges, follow the masters by shard name.
    by_name = {s.name: s for s in candidates}
    if set(by_name) != set(previous):
        return None, problems
    kept = [
        Shard(s.name, s.ranges, by_name[s.name].master, by_name[s.name].replicas, s.migration)
        for s in current.shards
    ]
    return routing.build(kept, current.modulus, version, "zookeeper"), problems


def _moving(shard: Shard) -> str:
    moving = shard.migration
    if moving is None:
        return ""
    return f" ({moving.state} {format_ranges(moving.slots)} to {moving.target})"


class Topology:
    """Registers one pool's proxy and keeps its routing table in line with ZooKeeper."""

    def __init__(
        self,
        config: PoolConfig,
        config_digest: str,
        current: Callable[[], RoutingTable],
        apply: Callable[[RoutingTable], None],
        drained: Callable[[RoutingTable], Awaitable[bool]],
        own_path: str | None = None,
        metrics: str = "",
    ):
        assert config.zookeeper_host and config.zookeeper_path and config.zookeeper_redis_path
        self.config = config
        self.cluster = config.zookeeper_redis_path
        self.own_path = own_path or config.zookeeper_path
        self.metrics = metrics  # our metrics address, told in our node (pyproxy-admin hotkeys)
        self.digest = config_digest
        self.current = current
        self.apply = apply
        self.drained = drained
        self.acknowledged: RoutingTable | None = None  # what our node says we route by
        self.stats = TopologyStats()
        self.loop = asyncio.get_running_loop()
        self.zk = zkutil.make_client(
            config.zookeeper_host, config.zookeeper_session_timeout_ms / 1000.0,
            config.zookeeper_auth,
            command_retry=KazooRetry(**zkutil.COMMAND_RETRY),
        )
        self.zk.add_listener(self._on_state_threaded)
        self._session: int | None = None
        self._registered: int | None = None  # the session our node was created in
        self._registering = False
        self._refreshing = False
        self._dirty = False
        self._event_at = 0.0
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def registered(self) -> bool:
        """True while our node exists as far as we can know: created in the session we are
        connected with now (not while the connection is suspended, nor once it is lost)."""
        return (self.stats.session_state == KazooState.CONNECTED and self._session is not None
                and self._registered == self._session)

    def snapshot(self) -> TopologySnapshot:
        return replace(self.stats.snapshot(), registered=self.registered)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin connecting in the background; the proxy serves from ``servers`` meanwhile."""
        self.zk.start_async()

    async def stop(self) -> None:
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await self.loop.run_in_executor(None, self._stop_client)

    def _stop_client(self) -> None:
        try:
            self.zk.stop()  # closes the session: the ephemeral node goes at once
        finally:
            self.zk.close()

    # ------------------------------------------------------------ kazoo bridge

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run a kazoo ``*_async`` method; its result arrives as an asyncio future."""
        future: asyncio.Future[Any] = self.loop.create_future()

        def settle(result: Any) -> None:
            if future.cancelled():
                return
            try:
                future.set_result(result.get_nowait())
            except Exception as exc:  # kazoo raises its errors from get_nowait
                future.set_exception(exc)

        method(*args, **kwargs).rawlink(lambda result: self._threadsafe(settle, result))
        return future

    def _threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def _on_state_threaded(self, state: str) -> None:
        self._threadsafe(self._on_state, state)

    def _on_watch_threaded(self, _event: Any) -> None:
        self._threadsafe(self._changed)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ session

    def _on_state(self, state: str) -> None:
        if self._stopped:
            return
        self.stats.session_state = str(state)
        if state == KazooState.CONNECTED:
            session = zkutil.session_id(self.zk)
            if session != self._session:
                log.info("zookeeper: session 0x%x established (%s)", session or 0,
                         self.config.zookeeper_host)
                self._session = session
            else:
                log.info("zookeeper: reconnected, same session")
            if self._registered != session and not self._registering:
                self._spawn(self._register())
            self._changed()
        elif state == KazooState.SUSPENDED:
            log.warning("zookeeper: connection suspended; serving with the last table")
        elif state == KazooState.LOST:
            log.warning("zookeeper: session lost; will register again on reconnect")

    def _info(self) -> bytes:
        acknowledged = self.acknowledged
        return zkschema.ProxyInfo(
            listen=self.config.listen, version=__version__, pid=os.getpid(),
            started=_STARTED, config_digest=self.digest,
            topology_version=self.current().version, pool=self.config.name,
            layout=layout_of(acknowledged) if acknowledged is not None else "",
            metrics=self.metrics,
        ).encode()

    async def _register(self) -> None:
        """Make sure our ephemeral node exists in this session, replacing our leftovers.

        Runs until registered, stopped or disconnected; a reconnect that finds this session
        still unregistered (say a create whose reply was lost) starts it again.
        """
        self._registering = True
        try:
            while not self._stopped and self.zk.connected:
                session = self._session
                try:
                    await self._call(self.zk.create_async, self.own_path, self._info(),
                                     ephemeral=True, makepath=True)
                except NodeExistsError:
                    holder = await self._holder()
                    if holder is zkutil.Ownership.MINE:  # a create that timed out went through
                        self._registered = session
                        return
                    if holder is not zkutil.Ownership.OTHER:  # gone, or our leftover removed
                        continue
                except KazooException as exc:
                    log.warning("zookeeper: registering %s failed: %r", self.own_path, exc)
                else:
                    self._registered = session
                    self.stats.registrations += 1
                    log.info("zookeeper: registered %s", self.own_path)
                    return
                await asyncio.sleep(0.5)
        finally:
            self._registering = False

    async def _holder(self) -> zkutil.Ownership:
        """Who holds our path; a leftover of this process's earlier session is deleted."""
        try:
            data, stat = await self._call(self.zk.get_async, self.own_path)
        except NoNodeError:
            return zkutil.Ownership.GONE
        try:
            info: zkschema.ProxyInfo | None = zkschema.ProxyInfo.decode(data)
        except zkschema.SchemaError:
            info = None
        leftover = (info is not None and info.pid == os.getpid()
                    and info.listen == self.config.listen)
        holder = zkutil.ownership(stat, self._session, leftover)
        if holder is zkutil.Ownership.LEFTOVER:
            log.info("zookeeper: removing our node left from an earlier session")
            try:
                await self._call(self.zk.delete_async, self.own_path, stat.version)
            except KazooException:  # gone already (NoNodeError) or changed: look again
                pass
        elif holder is zkutil.Ownership.OTHER:
            log.error("zookeeper: %s is held by another process (owner 0x%x); retrying",
                      self.own_path, stat.ephemeralOwner)
        return holder

    # ------------------------------------------------------------ following the cluster

    def _changed(self) -> None:
        if self._stopped:
            return
        if not self._event_at:
            self._event_at = time.monotonic()
        if self._refreshing:
            self._dirty = True
            return
        self._refreshing = True
        self._spawn(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        try:
            while True:
                self._dirty = False
                try:
                    await self._refresh()
                except KazooException as exc:
                    log.warning("zookeeper: reading %s failed: %r", self.cluster, exc)
                    await asyncio.sleep(0.2)
                    self._dirty = self.zk.connected
                if not self._dirty or self._stopped:
                    return
        finally:
            self._refreshing = False

    async def _refresh(self) -> None:
        watch = self._on_watch_threaded
        try:
            names = await self._call(self.zk.get_children_async, self.cluster, watch=watch)
        except NoNodeError:
            await self._call(self.zk.exists_async, self.cluster, watch=watch)
            log.warning("zookeeper: %s does not exist; keeping the current table", self.cluster)
            return
        reads = []
        for name in names:
            path = zkschema.shard_path(self.cluster, name)
            reads.append(self._call(self.zk.get_async, path, watch=watch))
            reads.append(self._call(self.zk.get_children_async, path, watch=watch))
        results = await asyncio.gather(*reads, return_exceptions=True)
        shards: dict[str, tuple[bytes | None, list[str]]] = {}
        for i, name in enumerate(names):
            data_result, children = results[2 * i], results[2 * i + 1]
            if isinstance(data_result, NoNodeError) or isinstance(children, NoNodeError):
                self._dirty = True  # deleted while we read: read again
                continue
            if isinstance(data_result, BaseException):
                raise data_result
            if isinstance(children, BaseException):
                raise children
            shards[name] = (data_result[0], children)
        self._install(shards)

    def _install(self, shards: dict[str, tuple[bytes | None, list[str]]]) -> None:
        current = self.current()
        table, problems = build_table(current, shards, current.version + 1)
        for problem in problems:
            log.error("zookeeper topology rejected: %s", problem)
        if problems:
            self.stats.rejected += 1
        if table is None or (table.shards, table.source) == (current.shards, current.source):
            self._event_at = 0.0
            return
        for shard in table.shards:
            before = current.master_of(shard.name)
            if before != shard.master:
                log.info("pool %s: shard %s master %s -> %s", self.config.name, shard.name,
                         before, shard.master)
                if current.source == "zookeeper":  # not the switch from `servers` at start
                    self.stats.master_changes[shard.name] = (
                        self.stats.master_changes.get(shard.name, 0) + 1
                    )
        self.apply(table)
        self.stats.changes += 1
        if self._event_at:
            self.stats.last_apply_seconds = time.monotonic() - self._event_at
        self._event_at = 0.0
        log.info("topology v%d applied: %s", table.version,
                 ", ".join(f"{s.name} {format_ranges(s.ranges) or 'no slots'} -> "
                           f"{s.master or 'NO MASTER'}{_moving(s)}" for s in table.shards))
        self._spawn(self._acknowledge(table))

    async def _acknowledge(self, table: RoutingTable) -> None:
        """Say in our node that we route by ``table`` — once nothing we sent before it is
        still on its way to a migration's source (``Pool.drained``), and only while it is
        the table in force (a newer one acknowledges itself)."""
        if not await self.drained(table):
            log.warning("topology v%d: requests to a migration's source are still "
                        "unanswered; not acknowledging it", table.version)
            return
        if self.current() is not table or self._stopped:
            return
        self.acknowledged = table
        if not self.zk.connected:
            return  # registering on reconnect writes it
        try:
            await self._call(self.zk.set_async, self.own_path, self._info())
        except KazooException:
            pass  # re-registration on the next session writes fresh data anyway


def layout_of(table: RoutingTable) -> str:
    """The ``zkschema.layout_digest`` of a table from ZooKeeper ("" for the config's)."""
    if table.source != "zookeeper":
        return ""
    return zkschema.layout_digest((s.name, s.ranges, s.migration) for s in table.shards)


_STARTED = time.time()

