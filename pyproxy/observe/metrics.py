"""Prometheus exposition: a custom collector that reads ``stats`` counters at scrape time.

The hot path never touches prometheus_client: it bumps plain ints (see ``stats``), and
``ProxyCollector.collect`` turns them into metric families when Prometheus scrapes. The
HTTP server (``web.serve``, which also serves the status page) runs in its own thread,
which never touches a live object:
each scrape asks the event loop for a ``ProxySnapshot`` (built there, from copies) and waits
for it, so nothing the loop changes can change under the collector's iteration.

Labels are pool, shard, backend address and command-table names — never keys — so the
number of series is fixed by the configuration, not by traffic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .. import __version__
from ..web import Page, serve
from .snapshot import ProxySnapshot
from .stats import COMMAND_NAMES, Histogram

SNAPSHOT_WAIT = 5.0  # seconds a scrape waits for the event loop before it fails

# series -> (type, help, PoolStats attribute). Counters get ``_total`` from prometheus_client.
POOL_SERIES = {
    "client_connections_total": ("counter", "Client connections accepted",
                                 "client_connections_total"),
    "client_errors": ("counter", "Client connections closed on an error (nutcracker "
                                 "client_err)", "client_err"),
    "protocol_errors": ("counter", "Client requests rejected as malformed RESP",
                        "protocol_errors"),
    "unknown_commands": ("counter", "Requests naming a command the proxy does not know",
                         "unknown"),
    "refused_commands": ("counter", "Requests refused because a sharding proxy cannot serve "
                                    "them", "refused"),
    "forward_errors": ("counter", "Requests answered with a proxy-made error (backend down, "
                                  "timeout, no master)", "forward_error"),
    "fragments": ("counter", "Per-shard parts created by splitting multi-key requests",
                  "fragments"),
    "received_bytes": ("counter", "Bytes read from clients", "request_bytes"),
    "sent_bytes": ("counter", "Bytes written to clients", "response_bytes"),
}
# series -> (type, help, ServerStats attribute)
BACKEND_SERIES = {
    "requests": ("counter", "Requests written to the backend", "requests"),
    "responses": ("counter", "Replies read from the backend", "responses"),
    "request_bytes": ("counter", "Bytes written to the backend", "request_bytes"),
    "response_bytes": ("counter", "Bytes read from the backend", "response_bytes"),
    "timeouts": ("counter", "Requests that hit the pool timeout", "server_timedout"),
    "errors": ("counter", "Backend connection failures (refused, reset)", "server_err"),
    "reconnects": ("counter", "Backend connections (re)established", "reconnects"),
}
# series (MigrationSnapshot attribute) -> help, for the slots of a migration
MIGRATION_SERIES = {
    "moves": "MIGRATEs sent to move a request's keys to the migration's target first",
    "busy": "BUSYKEY answers to those: the target's copy kept, the source's deleted",
    "move_errors": "Requests answered -TRYAGAIN because their keys could not be moved",
    "paused": "Requests that waited for a migration being prepared to start moving",
    "pause_expired": "Requests that waited for a migration being prepared until the hold ran "
                     "out (they got -TRYAGAIN)",
}


def _histogram(name: str, help_text: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, help_text, labels=labels)


def _add_histogram(family: HistogramMetricFamily, values: list[str], hist: Histogram) -> None:
    family.add_metric(values, hist.cumulative(), hist.total)


def on_loop(make: Callable[[], ProxySnapshot],
            loop: asyncio.AbstractEventLoop) -> Callable[[], ProxySnapshot]:
    """``make`` run on ``loop`` from another thread, waited for (at most SNAPSHOT_WAIT s)."""

    def snapshot() -> ProxySnapshot:
        future: concurrent.futures.Future[ProxySnapshot] = concurrent.futures.Future()

        def build() -> None:
            try:
                future.set_result(make())
            except BaseException as exc:  # handed to the scraping thread, raised there
                future.set_exception(exc)

        loop.call_soon_threadsafe(build)
        return future.result(timeout=SNAPSHOT_WAIT)

    return snapshot


class ProxyCollector:
    def __init__(self, snapshot: Callable[[], ProxySnapshot]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        view = self.snapshot()
        info = GaugeMetricFamily("pyproxy_info", "pyproxy version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily("pyproxy_uptime_seconds", "Seconds since start",
                                value=time.time() - view.started)
        yield from self._pools(view)
        yield from self._backends(view)
        yield from self._topology(view)
        yield from self._hold(view)
        yield from self._migration(view)

    def _pools(self, view: ProxySnapshot) -> Iterator[Metric]:
        pools = view.pools
        clients = GaugeMetricFamily("pyproxy_client_connections", "Client connections open now",
                                    labels=["pool"])
        for pool in pools:
            clients.add_metric([pool.name], pool.clients)
        yield clients
        for series, (kind, help_text, attr) in POOL_SERIES.items():
            family: Metric
            if kind == "gauge":
                family = GaugeMetricFamily(f"pyproxy_{series}", help_text, labels=["pool"])
            else:
                family = CounterMetricFamily(f"pyproxy_{series}", help_text, labels=["pool"])
            for pool in pools:
                family.add_metric([pool.name], getattr(pool.stats, attr))
            yield family
        requests = CounterMetricFamily("pyproxy_requests", "Requests by command",
                                       labels=["pool", "command"])
        errors = CounterMetricFamily("pyproxy_request_errors",
                                     "Error replies sent to clients, by command",
                                     labels=["pool", "command"])
        latency = _histogram("pyproxy_request_duration_seconds",
                             "Client-observed latency: request read to reply written", ["pool"])
        for pool in pools:
            stats = pool.stats
            for index, name in enumerate(COMMAND_NAMES):
                if stats.commands[index]:
                    requests.add_metric([pool.name, name], stats.commands[index])
                if stats.command_errors[index]:
                    errors.add_metric([pool.name, name], stats.command_errors[index])
            _add_histogram(latency, [pool.name], stats.latency)
        yield requests
        yield errors
        yield latency

    def _backends(self, view: ProxySnapshot) -> Iterator[Metric]:
        labels = ["pool", "shard", "backend"]
        up = GaugeMetricFamily("pyproxy_backend_up", "1 if a connection to the backend is open",
                               labels=labels)
        inflight = GaugeMetricFamily("pyproxy_backend_inflight",
                                     "Requests written and not yet answered", labels=labels)
        counters = {
            series: CounterMetricFamily(f"pyproxy_backend_{series}", help_text, labels=labels)
            for series, (_, help_text, _) in BACKEND_SERIES.items()
        }
        latency = _histogram("pyproxy_backend_request_duration_seconds",
                             "Backend latency: request queued to reply read", labels)
        for pool in view.pools:
            for index, shard in enumerate(pool.table.shards):
                backend = pool.backend_of(index)
                if backend is None:
                    continue
                values = [pool.name, shard.name, backend.address]
                up.add_metric(values, 1 if backend.connections else 0)
                inflight.add_metric(values, backend.inflight)
                for series, (_, _, attr) in BACKEND_SERIES.items():
                    counters[series].add_metric(values, getattr(backend.stats, attr))
                _add_histogram(latency, values, backend.stats.latency)
        yield up
        yield inflight
        yield from counters.values()
        yield latency

    def _topology(self, view: ProxySnapshot) -> Iterator[Metric]:
        version = GaugeMetricFamily("pyproxy_topology_version",
                                    "Version of the routing table in force", labels=["pool"])
        for pool in view.pools:
            version.add_metric([pool.name], pool.table.version)
        yield version
        session = GaugeMetricFamily("pyproxy_zookeeper_session",
                                    "1 for the current ZooKeeper connection state",
                                    labels=["pool", "state"])
        changes = CounterMetricFamily("pyproxy_topology_changes", "Routing tables applied",
                                      labels=["pool"])
        rejected = CounterMetricFamily("pyproxy_topology_rejected",
                                       "ZooKeeper topologies rejected as invalid", labels=["pool"])
        registered = GaugeMetricFamily("pyproxy_zookeeper_registered",
                                       "1 while the proxy's node exists in ZooKeeper (created "
                                       "in the session connected now)", labels=["pool"])
        masters = CounterMetricFamily("pyproxy_master_changes", "Master changes followed",
                                      labels=["pool", "shard"])
        apply = GaugeMetricFamily("pyproxy_topology_apply_seconds",
                                  "ZooKeeper event to new table in effect, last change",
                                  labels=["pool"])
        for pool in view.pools:
            name, stats = pool.name, pool.topology
            if stats is None:
                continue
            for state in ("CONNECTING", "CONNECTED", "SUSPENDED", "LOST"):
                session.add_metric([name, state], 1 if stats.session_state == state else 0)
            registered.add_metric([name], 1 if stats.registered else 0)
            changes.add_metric([name], stats.changes)
            rejected.add_metric([name], stats.rejected)
            for shard, count in stats.master_changes.items():
                masters.add_metric([name, shard], count)
            apply.add_metric([name], stats.last_apply_seconds)
        yield from (session, registered, changes, rejected, masters, apply)


    def _hold(self, view: ProxySnapshot) -> Iterator[Metric]:
        held = GaugeMetricFamily("pyproxy_failover_held_requests",
                                 "Requests held now because their shard has no usable master",
                                 labels=["pool"])
        counters = {
            name: CounterMetricFamily(f"pyproxy_failover_{name}", text, labels=["pool"])
            for name, text in (
                ("held", "Requests held during a failover"),
                ("hold_expired", "Held requests that ran out of failover_hold (they got an "
                                 "error)"),
                ("unknown_outcome", "Writes answered 'may or may not have been applied' (sent "
                                    "to a master that then died or stopped answering)"),
            )
        }
        hold_time = _histogram("pyproxy_failover_hold_seconds",
                               "How long held requests waited for a usable master", ["pool"])
        outage = GaugeMetricFamily("pyproxy_failover_outage_seconds",
                                   "Time from losing a shard's master to serving it again, "
                                   "the last failover", labels=["pool", "shard"])
        for pool in view.pools:
            hold = pool.hold
            if hold is None:
                continue
            held.add_metric([pool.name], hold.held_now)
            counters["held"].add_metric([pool.name], hold.held_total)
            counters["hold_expired"].add_metric([pool.name], hold.expired)
            counters["unknown_outcome"].add_metric([pool.name], hold.unknown)
            _add_histogram(hold_time, [pool.name], hold.hold_time)
            for shard, seconds in hold.outages.items():
                outage.add_metric([pool.name, shard], seconds)
        yield from (held, *counters.values(), hold_time, outage)

    def _migration(self, view: ProxySnapshot) -> Iterator[Metric]:
        counters = {
            attr: CounterMetricFamily(f"pyproxy_migration_{attr}", text, labels=["pool"])
            for attr, text in MIGRATION_SERIES.items()
        }
        for pool in view.pools:
            if pool.migration is None:
                continue
            for attr, family in counters.items():
                family.add_metric([pool.name], getattr(pool.migration, attr))
        yield from counters.values()


def serve_metrics(snapshot: Callable[[], ProxySnapshot], loop: asyncio.AbstractEventLoop,
                  host: str, port: int, pages: Mapping[str, Page]) -> None:
    """Serve ``/metrics`` and ``pages`` (the status page) on host:port from the HTTP server's
    thread (``web.serve``); ``snapshot`` is run on ``loop`` for every scrape.

    Raises OSError (e.g. address in use) for the caller to report as a startup error.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(on_loop(snapshot, loop)))  # type: ignore[arg-type]
    serve(host, port, registry, pages)
