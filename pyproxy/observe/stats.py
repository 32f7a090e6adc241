"""Plain-int counters written by the hot path and read by exporters.

The hot path only ever does ``x += 1`` on an attribute or a list slot (about 0.1 µs; a
Prometheus ``.labels().inc()`` costs ~3 µs). Exporters — INFO, the Prometheus collector in
``metrics``, the nutcracker-style stats port — never read the live objects: ``copy()``, run
on the event loop, gives them a private copy inside a snapshot (see ``snapshot``). No key ever
becomes a label: per-command series are indexed by the command table's own numbering.

Names follow nutcracker's where nutcracker has the same counter (``client_eof``,
``server_timedout``, ``fragments`` ...), so the stats port can serve its JSON shape.

Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TypeVar

from ..protocol.commands import COMMANDS

_C = TypeVar("_C", "PoolStats", "ServerStats")

# Latency buckets in seconds: fine around the 0.1-1 ms where a healthy proxy lives.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)

# Command numbering for per-command counters: table order, then "unknown".
COMMAND_NAMES: tuple[str, ...] = (*COMMANDS, "unknown")
COMMAND_INDEX: dict[str, int] = {name: i for i, name in enumerate(COMMAND_NAMES)}
UNKNOWN_INDEX = COMMAND_INDEX["unknown"]


class Histogram:
    """Bucket counts (not cumulative), their sum and count; exporters make them cumulative."""

    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def copy(self) -> Histogram:
        twin = Histogram()
        twin.counts, twin.total, twin.count = self.counts[:], self.total, self.count
        return twin

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class PoolStats:
    """Per pool: nutcracker's pool counters plus pyproxy's own."""

    __slots__ = (
        "client_connections_total", "client_eof", "client_err",
        "server_ejects", "forward_error", "fragments", "requests", "request_bytes",
        "response_bytes", "unknown", "refused", "protocol_errors", "commands",
        "command_errors", "latency",
    )

    def __init__(self) -> None:
        self.client_connections_total = 0
        self.client_eof = 0
        self.client_err = 0
        self.server_ejects = 0
        self.forward_error = 0  # requests answered with a proxy-made error (down, timeout)
        self.fragments = 0
        self.requests = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.unknown = 0
        self.refused = 0
        self.protocol_errors = 0
        self.commands = [0] * len(COMMAND_NAMES)
        self.command_errors = [0] * len(COMMAND_NAMES)
        self.latency = Histogram()  # client-observed: request read -> reply written


class ServerStats:
    """Per backend address: nutcracker's server counters plus reconnects and latency."""

    __slots__ = (
        "server_eof", "server_err", "server_timedout", "server_ejected_at", "requests",
        "request_bytes", "responses", "response_bytes", "reconnects", "latency",
    )

    def __init__(self) -> None:
        self.server_eof = 0
        self.server_err = 0
        self.server_timedout = 0
        self.server_ejected_at = 0  # µs since the epoch, as nutcracker reports it
        self.requests = 0
        self.request_bytes = 0
        self.responses = 0
        self.response_bytes = 0
        self.reconnects = 0
        self.latency = Histogram()  # request written -> reply read, per backend


def copy_counters(stats: _C) -> _C:
    """A private copy of a counters object (lists and histograms copied, ints as they are)."""
    twin = object.__new__(type(stats))
    for name in type(stats).__slots__:
        value = getattr(stats, name)
        if isinstance(value, list):
            value = value[:]
        elif isinstance(value, Histogram):
            value = value.copy()
        setattr(twin, name, value)
    return twin
