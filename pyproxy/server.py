"""The running proxy: listeners, pools, startup, graceful shutdown, topology swaps.

Invariants:

* One listener per pool; every client of a pool shares that pool's backends.
* A pool with ``client_connections: N`` (N > 0) has at most N clients, and no pool admits a
  client that would take a file descriptor kept for backends (``proxy.descriptors``: the
  reserve is computed from RLIMIT_NOFILE and the pools' backends, server_connections,
  backlog and pinned_connections). A client not admitted gets Redis's
  ``-ERR max number of clients reached`` and is closed, never joining the pool.
  ``tcpkeepalive`` sets SO_KEEPALIVE on the listening socket, which accepted client sockets
  inherit (Linux); ``reuseport`` sets SO_REUSEPORT on it (as ``--workers`` does).
* Startup either brings up every listener or none (a failure stops what was started and is
  reported as one line).
* SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to
  ``SHUTDOWN_GRACE`` seconds, close everything, exit 0.
* A new routing table reaches a pool only through ``Pool.apply`` on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace

from . import address
from .cluster.topology import Topology
from .config import Config, PoolConfig
from .observe.history import TableHistory
from .observe.snapshot import ActivitySnapshot, ProxySnapshot
from .proxy.client import Client
from .proxy.descriptors import Descriptors
from .proxy.execute import Executor
from .proxy.pool import Member, Pool
from .proxy.replies import Flusher
from .routing import table as routing
from .routing.table import RoutingTable, Shard
from .workers import SINGLE_PROCESS, Role

log = logging.getLogger("pyproxy.server")

SHUTDOWN_GRACE = 5.0
HOT_KEYS_SHOWN = 20  # of the summary's counters, the hottest shown by snapshots


class StartupError(Exception):
    """A one-line reason the proxy could not start."""


def static_table(config: PoolConfig) -> RoutingTable:
    """The table the ``servers`` list describes (the start, and the fallback without ZK), placing
    keys with the pool's hash and distribution.

    With ZooKeeper the shards are named ``redis-0000``, ``redis-0001``, ... in list order, as
    ``pyproxy-admin init`` lays them out, so ZooKeeper's view replaces them name for name.
    Without, a shard is named as nutcracker names the server (ketama hashes that name).
    """
    shards = []
    for index, server in enumerate(config.servers):
        name = f"redis-{index:04d}" if config.uses_zookeeper else server.name
        shards.append(Shard.of(name, server.start, server.end, server.address))
    return routing.build(shards, config.modulus, version=0, source="config", hash=config.hash,
                         distribution=config.distribution)


MAX_CLIENTS = b"-ERR max number of clients reached\r\n"  # redis-server's words


class LimitedClient(Client):
    """A client of a pool with ``client_connections``, or of a process with a limit on open
    files: counted when the connection is made (not when accepted: several accepts may come
    before their ``connection_made``)."""

    __slots__ = ("refused",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pool = self.pool
        most = pool.config.client_connections
        self.refused = (0 < most <= len(pool.clients)
                        or not pool.descriptors.admits_client(self.clock()))
        if self.refused:
            transport.write(MAX_CLIENTS)  # type: ignore[attr-defined]  # a Transport
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.refused:
            super().connection_lost(exc)


class Proxy:
    def __init__(self, config: Config, role: Role = SINGLE_PROCESS):
        self.config = config
        self.role = role
        self.started = time.time()
        self.servers: list[asyncio.AbstractServer] = []
        self.pools: dict[str, Pool] = {}
        self.topologies: dict[str, Topology] = {}  # by pool name
        self.histories: dict[str, TableHistory] = {}  # recent topology events, by pool name
        self.executors: list[Executor] = []
        self.flusher: Flusher | None = None
        self.metrics = ""  # "host:port" of the metrics port once served, told in ZooKeeper
        self.descriptors = Descriptors.of_process()

    def clients(self) -> list[Member]:
        return [client for pool in self.pools.values() for client in pool.clients]

    def snapshot(self) -> ProxySnapshot:
        """What the proxy looks like now, in copies: for INFO, stats and metrics (on the loop)."""
        pools = []
        for name, pool in self.pools.items():
            view = replace(pool.snapshot(), activity=self._activity(pool))
            topology = self.topologies.get(name)
            if topology is not None:
                view = replace(view, topology=topology.snapshot())
            pools.append(view)
        return ProxySnapshot(self.started, tuple(pools))

    def _activity(self, pool: Pool) -> ActivitySnapshot:
        load = pool.load
        hot, samples = load.top(HOT_KEYS_SHOWN)
        history = self.histories.get(pool.name)
        return ActivitySnapshot(
            slot_requests=tuple(load.slots), hot_keys=tuple(hot), hot_samples=samples,
            sample_every=load.sample_every, slowlog=tuple(pool.slowlog.latest(-1)),
            events=history.recent() if history is not None else (),
            hash_tag=pool.config.hash_tag)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.flusher = Flusher(loop.call_soon)
        try:
            for pool_config in self.config.pools:
                pool = Pool(pool_config, static_table(pool_config), self.descriptors)
                self.pools[pool_config.name] = pool
                history = self.histories[pool.name] = TableHistory(pool.table)
                pool.on_routes.append(history.follow)
                self.descriptors.pools.append(pool)
                self.servers.append(await self._listen(loop, pool))
                count = len(pool.table.shards)
                log.info("pool %s listening on %s (%d shard%s)", pool.name, pool_config.listen,
                         count, "" if count == 1 else "s")
                if pool_config.uses_zookeeper:
                    self._follow(pool)
        except OSError as exc:
            await self.close()
            why = exc.strerror or exc
            raise StartupError(f"cannot listen on {pool_config.listen}: {why}") from None
        log.info("%s", self.descriptors.describe())

    async def _listen(self, loop: asyncio.AbstractEventLoop, pool: Pool) -> asyncio.AbstractServer:
        config = pool.config
        executor = Executor(pool, self.snapshot)
        self.executors.append(executor)
        flusher = self.flusher
        assert flusher is not None

        limited = config.client_connections or self.descriptors.limit is not None
        client = LimitedClient if limited else Client

        def factory() -> Client:
            return client(pool, executor, flusher)

        if config.listen_path is not None:
            server = await loop.create_unix_server(
                factory, config.listen_path, backlog=config.backlog
            )
            if config.listen_mode is not None:
                os.chmod(config.listen_path, config.listen_mode)
            return server
        server = await loop.create_server(
            factory, config.listen_host, config.listen_port or 0, backlog=config.backlog,
            reuse_address=True, reuse_port=self.role.reuse_port or config.reuseport or None,
        )
        if config.tcpkeepalive:
            for sock in server.sockets:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return server

    async def sample_rates(self) -> None:
        """Every 100 ms, each pool's command count, for INFO's instantaneous_ops_per_sec."""
        loop = asyncio.get_running_loop()
        while True:
            for executor in self.executors:
                executor.sample(loop.time())
            await asyncio.sleep(0.1)

    async def close_idle_clients(self) -> None:
        """Close clients idle past their pool's ``client_idle_timeout`` (checked each second).

        Idle means nothing read for that long and no reply outstanding.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for pool in self.pools.values():
                limit = pool.config.client_idle_timeout_ms
                if not limit:
                    continue
                for client in [c for c in pool.clients if c.idle_for(now) > limit / 1000.0]:
                    log.debug("closing client %s: idle for %d ms", client.session.peer, limit)
                    client.close()

    def _follow(self, pool: Pool) -> None:
        """Register the pool's proxy in ZooKeeper and follow its cluster from now on."""
        assert pool.config.zookeeper_path
        topology = Topology(pool.config, self.config.digest, lambda: pool.table, pool.apply,
                            pool.drained, self.role.node(pool.config.zookeeper_path),
                            self.metrics)
        self.topologies[pool.name] = topology
        topology.start()

    async def close(self, grace: float = 0.0) -> None:
        """Stop accepting, deregister, wait up to ``grace`` s for in-flight replies, close."""
        for server in self.servers:
            server.close()
        await asyncio.gather(*(t.stop() for t in self.topologies.values()),
                             return_exceptions=True)
        deadline = time.monotonic() + grace
        while any(c.queue for c in self.clients()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for client in self.clients():
            client.close()
        for pool in self.pools.values():
            pool.close()
        await asyncio.sleep(0)


def exporter_address(text: str, what: str) -> tuple[str, int]:
    """``[HOST:]PORT`` of an exporter's flag (``address.parse_endpoint``), or a
    ``StartupError`` naming the flag."""
    try:
        return address.parse_endpoint(text)
    except address.AddressError as exc:
        raise StartupError(f"{what}: expected HOST:PORT, got {text!r} ({exc})") from None


async def _start_exporters(proxy: Proxy, metrics: str | None, stats: str | None) -> None:
    from .observe.metrics import serve_metrics
    from .observe.statsport import serve_stats
    from .statuspage import StatusPages

    try:
        if metrics:
            host, port = exporter_address(metrics, "--metrics")
            port = proxy.role.port(port)
            loop = asyncio.get_running_loop()
            serve_metrics(proxy.snapshot, loop, host, port, StatusPages(proxy, loop).pages())
            proxy.metrics = f"{host}:{port}"
            log.info("metrics on http://%s:%d/metrics, status page on http://%s:%d/", host,
                     port, host, port)
        if stats:
            host, port = exporter_address(stats, "stats address")
            port = proxy.role.port(port)
            proxy.servers.append(await serve_stats(proxy.snapshot, host, port))
            log.info("nutcracker-style stats on %s:%d", host, port)
    except OSError as exc:
        await proxy.close()
        raise StartupError(f"cannot serve metrics/stats: {exc.strerror or exc}") from None


async def serve(
    config: Config,
    metrics: str | None = None,
    stats: str | None = None,
    handlers: dict[signal.Signals, Callable[[], None]] | None = None,
    role: Role = SINGLE_PROCESS,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; another signal in ``handlers``
    calls its handler (the command line's: SIGHUP, SIGTTIN, SIGTTOU). ``on_ready`` is called
    once every listener is bound (``pyproxy -d`` detaches then)."""
    loop = asyncio.get_running_loop()
    proxy = Proxy(config, role)
    await _start_exporters(proxy, metrics, stats)  # first: a listening proxy is fully up
    await proxy.start()
    if on_ready is not None:
        on_ready()
    background = [loop.create_task(proxy.sample_rates())]
    if any(p.client_idle_timeout_ms for p in config.pools):
        background.append(loop.create_task(proxy.close_idle_clients()))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for sig, handler in (handlers or {}).items():
        loop.add_signal_handler(sig, handler)
    await stop.wait()
    for task in background:
        task.cancel()
    log.info("shutting down: finishing in-flight requests (up to %.0fs)", SHUTDOWN_GRACE)
    await proxy.close(SHUTDOWN_GRACE)
    log.info("stopped")
