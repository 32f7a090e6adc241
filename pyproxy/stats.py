"""Plain-int counters written by the hot path and read by scrapers.

The hot path only ever does ``stats.x += 1`` (about 0.1 µs); exporters (INFO, the metrics
endpoint, the twemproxy-style stats port) read the attributes when asked. Nothing here
allocates per request, and no key ever becomes a label.

Pure: no I/O.
"""

from __future__ import annotations


class PoolStats:
    __slots__ = (
        "client_connections", "client_connections_total", "client_eof", "requests",
        "request_bytes", "response_bytes", "fragments", "unknown", "refused",
        "protocol_errors",
    )

    def __init__(self) -> None:
        self.client_connections = 0
        self.client_connections_total = 0
        self.client_eof = 0
        self.requests = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.fragments = 0
        self.unknown = 0
        self.refused = 0
        self.protocol_errors = 0
