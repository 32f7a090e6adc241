"""Optional Prometheus endpoint of the watchdog (``--metrics HOST:PORT``).

A private registry holds only the watchdog's series, so nothing else in the process (or a
test importing it twice) can collide with them. Written by the control loop, served by
prometheus_client's HTTP thread; prometheus_client's metrics are thread-safe.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


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

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
