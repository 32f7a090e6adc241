"""The proxy's status page on its metrics port: ``/`` (HTML) and ``/status.json``.

Served from the HTTP server's thread (``web.serve``), never from the event loop. Each
request takes:

* a ``ProxySnapshot``, built on the loop and waited for (``observe.metrics.on_loop``);
* what each shard's master and replicas answer to ``ROLE``, asked on the loop
  (``proxy.roles.probe``, every redis at once, ``ROLE_TIMEOUT`` at most) when the last answers
  are older than ``ROLE_TTL`` — so a page refreshed by several viewers costs one round;
* for the rates, a snapshot kept from an earlier request at least ``RATE_WINDOW`` older
  (a few are kept; none before the second request: the page then says "since start");

then ``observe.status.report`` and ``render`` draw it. Nothing runs while nobody looks.
``/status.json`` is strict JSON: a latency past the histogram's last bucket (the report's
``inf``) is written as the string ``">5000"`` (ms), not as ``Infinity``.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import deque
from typing import Protocol

from .observe.metrics import on_loop
from .observe.snapshot import ProxySnapshot
from .observe.stats import LATENCY_BUCKETS
from .observe.status import render, report
from .proxy.pool import Pool
from .proxy.roles import Role, probe
from .web import HTML, JSON, Page

ROLE_TTL = 2.0  # seconds ROLE answers are reused
ROLE_TIMEOUT = 0.5  # seconds every redis gets to answer
RATE_WINDOW = 1.0  # seconds a snapshot must be older to compute rates against
KEPT = 4  # snapshots kept for that


class Observed(Protocol):
    """What the page reads of the proxy (``server.Proxy``), on the loop."""

    pools: dict[str, Pool]

    def snapshot(self) -> ProxySnapshot: ...


class StatusPages:
    def __init__(self, proxy: Observed, loop: asyncio.AbstractEventLoop):
        self.proxy = proxy
        self.loop = loop
        self.snapshot = on_loop(proxy.snapshot, loop)
        self.lock = threading.Lock()  # the HTTP server runs each request in its own thread
        self.kept: deque[tuple[float, ProxySnapshot]] = deque(maxlen=KEPT)
        self.roles: dict[str, Role] = {}
        self.roles_at = float("-inf")

    def pages(self) -> dict[str, Page]:
        return {"/": self.html, "/status.json": self.json}

    def html(self) -> tuple[str, bytes]:
        return HTML, render(self.report()).encode()

    def json(self) -> tuple[str, bytes]:
        return JSON, json.dumps(_strict(self.report()), separators=(",", ":"),
                                allow_nan=False).encode()

    def report(self) -> dict[str, object]:
        with self.lock:
            now = time.monotonic()
            view = self.snapshot()
            if now - self.roles_at >= ROLE_TTL:
                asked = asyncio.run_coroutine_threadsafe(self._ask_roles(), self.loop)
                self.roles = asked.result(timeout=ROLE_TIMEOUT + 5.0)
                self.roles_at = now
            base = next((kept for kept in reversed(self.kept) if now - kept[0] >= RATE_WINDOW),
                        None)
            if not self.kept or now - self.kept[-1][0] >= RATE_WINDOW / 2:
                self.kept.append((now, view))
            previous, seconds = (base[1], now - base[0]) if base is not None else (None, None)
            return report(view, previous, seconds, self.roles, time.time())

    async def _ask_roles(self) -> dict[str, Role]:
        """Every pool's masters and replicas, asked at once (on the loop)."""
        asks = []
        for pool in self.proxy.pools.values():
            members = sorted({where for shard in pool.table.shards
                              for where in (shard.master, *shard.replicas) if where})
            asks.append(probe(members, pool.config.redis_auth, ROLE_TIMEOUT))
        answers: dict[str, Role] = {}
        for found in await asyncio.gather(*asks):
            answers.update(found)
        return answers


def _strict(value: object) -> object:
    """``value`` with every infinite float replaced by ``">N"``, N the last bucket in ms."""
    if isinstance(value, float) and math.isinf(value):
        return f">{LATENCY_BUCKETS[-1] * 1000:g}"
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value
