"""Optional Prometheus endpoint of the watchdog (``--metrics HOST:PORT``), with its status page.

A private registry holds only the watchdog's series, so nothing else in the process (or a
test importing it twice) can collide with them. Written by the control loop, served by the
HTTP server's thread (``web.serve``); prometheus_client's metrics are thread-safe. The same
port serves the status page (``/`` and ``/status.json``, ``status``) from the ``View`` the
loop last ``publish``-ed.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..web import HTML, JSON, serve
from .status import View, render, report


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.checks = Counter("pyproxy_watchdog_health_checks", "Health checks of the redis",
                              ["result"], registry=r)
        self.master = Gauge("pyproxy_watchdog_master",
                            "1 if the redis was a master at the last health check", registry=r)
        self.registered = Gauge("pyproxy_watchdog_registered",
                                "1 while this redis holds its node in ZooKeeper", registry=r)
        self.fenced = Gauge("pyproxy_watchdog_fenced",
                            "1 while the redis is asked to pause writes", registry=r)
        self.zk_connected = Gauge("pyproxy_watchdog_zk_connected",
                                  "1 while the ZooKeeper session is connected", registry=r)
        self.promotions = Counter("pyproxy_watchdog_promotions",
                                  "Times this watchdog made its redis the master", registry=r)
        self.view: View | None = None  # replaced (never changed) by the loop after each turn

    def publish(self, view: View) -> None:
        self.view = view

    def report(self) -> dict[str, object]:
        view = self.view
        if view is None:
            raise RuntimeError("the watchdog has not finished its first turn yet")
        return report(view, self.registry, time.time())

    def serve(self, host: str, port: int) -> None:
        serve(host, port, self.registry, {
            "/": lambda: (HTML, render(self.report()).encode()),
            "/status.json": lambda: (JSON, json.dumps(self.report()).encode()),
        })
