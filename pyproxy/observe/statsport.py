"""nutcracker-compatible stats: the JSON a twemproxy stats port serves, and ``-D``.

Connect to the stats port and read one JSON document, as with nutcracker: top-level
``service``/``source``/``version``/``uptime``/``timestamp``/``total_connections``/
``curr_connections``, then one object per pool with nutcracker's pool counters and one
object per server with its server counters — so existing twemproxy exporters and
dashboards keep working.

A server's object is keyed as nutcracker keys it: by the shard's name, which is the server's
nutcracker name in a static pool (its configured name, else ``host:port``) and the shard's
name (``redis-0000``, ...) in a ZooKeeper pool, so the key stays the same when a failover
changes the master's address. Every shard is listed; one without a master (during a failover)
shows zeros. ``out_queue_bytes`` is always 0: pyproxy does not keep the size of
requests already written (nutcracker's other counters are all real).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from .snapshot import PoolSnapshot, ProxySnapshot

POOL_STATS = {
    "client_eof": "# eof on client connections",
    "client_err": "# errors on client connections",
    "client_connections": "# active client connections",
    "server_ejects": "# times backend server was ejected",
    "forward_error": "# times we encountered a forwarding error",
    "fragments": "# fragments created from a multi-vector request",
}
SERVER_STATS = {
    "server_eof": "# eof on server connections",
    "server_err": "# errors on server connections",
    "server_timedout": "# timeouts on server connections",
    "server_connections": "# active server connections",
    "server_ejected_at": "timestamp when server was ejected in usec since epoch",
    "requests": "# requests",
    "request_bytes": "total request bytes",
    "responses": "# responses",
    "response_bytes": "total response bytes",
    "in_queue": "# requests in incoming queue",
    "in_queue_bytes": "current request bytes in incoming queue",
    "out_queue": "# requests in outgoing queue",
    "out_queue_bytes": "current request bytes in outgoing queue (not tracked: always 0)",
}


def describe() -> str:
    """The text of ``pyproxy -D``, laid out as ``nutcracker -D``."""
    lines = [f"This is pyproxy-{__version__}", "", "pool stats:"]
    lines += [f"  {name:<20}\"{text}\"" for name, text in POOL_STATS.items()]
    lines += ["", "server stats:"]
    lines += [f"  {name:<20}\"{text}\"" for name, text in SERVER_STATS.items()]
    return "\n".join(lines)


def _pool_json(pool: PoolSnapshot) -> dict[str, Any]:
    stats = pool.stats
    out: dict[str, Any] = {
        name: pool.clients if name == "client_connections" else getattr(stats, name)
        for name in POOL_STATS
    }
    for index, shard in enumerate(pool.table.shards):
        backend = pool.backend_of(index)
        if backend is None:
            out[shard.name] = dict.fromkeys(SERVER_STATS, 0)
            continue
        server = backend.stats
        out[shard.name] = {
            "server_eof": server.server_eof,
            "server_err": server.server_err,
            "server_timedout": server.server_timedout,
            "server_connections": backend.connections,
            "server_ejected_at": server.server_ejected_at,
            "requests": server.requests,
            "request_bytes": server.request_bytes,
            "responses": server.responses,
            "response_bytes": server.response_bytes,
            "in_queue": backend.queued,
            "in_queue_bytes": backend.queued_bytes,
            "out_queue": backend.inflight,
            "out_queue_bytes": 0,
        }
    return out


def document(view: ProxySnapshot) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "service": "pyproxy",
        "source": socket.gethostname(),
        "version": __version__,
        "uptime": int(time.time() - view.started),
        "timestamp": int(time.time()),
        "total_connections": view.connections_total,
        "curr_connections": view.clients,
    }
    for pool in view.pools:
        doc[pool.name] = _pool_json(pool)
    return doc


class _StatsProtocol(asyncio.Protocol):
    def __init__(self, snapshot: Callable[[], ProxySnapshot]):
        self.snapshot = snapshot

    def connection_made(self, transport: Any) -> None:
        transport.write(json.dumps(document(self.snapshot())).encode())
        transport.close()


async def serve_stats(snapshot: Callable[[], ProxySnapshot], host: str,
                      port: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _StatsProtocol(snapshot), host, port,
                                    reuse_address=True)
