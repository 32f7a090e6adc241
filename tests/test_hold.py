"""Holding requests through a shard's outage (``failover_hold``), against real redis-servers:
a backend restarted within the budget costs no error, reads in flight to a hung master are
sent again, writes in flight get the unknown-outcome error, and past the budget the error of
old. The ZooKeeper failover itself is tested in tests/test_failover_hold.py."""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any

from tests.servers import free_port
from tests.test_proxy import Raw, key_on, pool_yaml

DEADLINE = 10.0
UNKNOWN = b"may or may not have been applied"


def start(redis_factory: Any, proxy_factory: Any, **settings: Any) -> tuple[Any, Any, Any, int]:
    a, b = redis_factory(), redis_factory()
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    metrics = free_port()
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers, **settings),
                          extra_args=("--metrics", f"127.0.0.1:{metrics}"))
    return a, b, proxy, metrics


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


class Traffic(threading.Thread):
    """SET then GET of its own counter on one key, as fast as replies come, noting every reply
    that is not the expected one with the time its request was sent."""

    def __init__(self, port: int, key: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.key = port, key
        self.stop = threading.Event()
        self.wrong: list[tuple[float, bytes]] = []
        self.done = 0
        self.worst = 0.0

    def run(self) -> None:
        with Raw("127.0.0.1", self.port, timeout=30) as conn:
            while not self.stop.is_set() and self.done < 100_000:
                value = b"%d" % self.done
                sent = time.monotonic()
                set_reply = conn.call("SET", self.key, value)
                get_reply = conn.call("GET", self.key)
                self.worst = max(self.worst, time.monotonic() - sent)
                if set_reply != b"+OK\r\n":
                    self.wrong.append((sent, set_reply))
                elif get_reply != b"$%d\r\n%s\r\n" % (len(value), value):
                    self.wrong.append((sent, get_reply))
                self.done += 1


def test_a_backend_restarted_within_the_hold_costs_no_error(redis_factory: Any,
                                                            proxy_factory: Any) -> None:
    a, b, proxy, metrics = start(redis_factory, proxy_factory, timeout=1000,
                                 failover_hold=5000)
    traffic = [Traffic(proxy.port, key_on(0, b"hold", i)) for i in range(4)]
    traffic.append(Traffic(proxy.port, key_on(1, b"hold")))
    for t in traffic:
        t.start()
    time.sleep(0.3)
    a.kill()  # returns once the process is gone: requests sent after it found it dead
    killed = time.monotonic()
    time.sleep(0.5)
    a.restart()
    time.sleep(0.5)
    for t in traffic:
        t.stop.set()
        t.join(DEADLINE)
    # errors only: a GET after the restart may find its key gone (the redis restarted empty)
    errors = [(sent, reply) for t in traffic for sent, reply in t.wrong if reply[:1] == b"-"]
    after_kill = [(sent, reply) for sent, reply in errors if sent > killed]
    in_flight = [reply for sent, reply in errors if sent <= killed]
    assert after_kill == [], after_kill  # held, then served by the restarted redis
    assert all(UNKNOWN in reply for reply in in_flight), in_flight  # at most the writes sent
    assert all(t.done > 10 for t in traffic)
    assert metric(metrics, "pyproxy_failover_held_total") > 0
    assert metric(metrics, "pyproxy_failover_held_requests") == 0
    print("HOLD-RESTART worst request", round(max(t.worst for t in traffic) * 1000), "ms;",
          len(in_flight), "in-flight writes answered unknown")


def test_reads_in_flight_to_a_hung_master_are_sent_again(redis_factory: Any,
                                                         proxy_factory: Any) -> None:
    a, b, proxy, metrics = start(redis_factory, proxy_factory, timeout=400,
                                 failover_hold=5000)
    key, other = key_on(0, b"hung"), key_on(0, b"hung", 1)
    with Raw("127.0.0.1", proxy.port) as reader, Raw("127.0.0.1", proxy.port) as writer:
        assert reader.call("SET", key, "before") == b"+OK\r\n"
        a.pause()
        try:
            reader.cmd("GET", key)
            writer.cmd("SET", other, "in flight")
            time.sleep(0.8)  # both timed out on the hung master by now
        finally:
            a.resume()
        assert reader.reply() == b"$6\r\nbefore\r\n"  # the read was held and sent again
        assert UNKNOWN in writer.reply()  # the write's outcome is unknown: not retried
        assert writer.call("GET", key) == b"$6\r\nbefore\r\n"
    assert metric(metrics, "pyproxy_failover_unknown_outcome_total") == 1


def test_past_the_budget_held_requests_get_the_error(redis_factory: Any,
                                                     proxy_factory: Any) -> None:
    a, b, proxy, metrics = start(redis_factory, proxy_factory, timeout=500,
                                 failover_hold=300)
    key = key_on(0, b"budget")
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("SET", key, "x") == b"+OK\r\n"
        a.kill()
        time.sleep(0.1)
        started = time.monotonic()
        reply = conn.call("GET", key)
        took = time.monotonic() - started
        assert reply.startswith(b"-ERR pyproxy: "), reply
        assert 0.2 < took < 3.0, took  # held for its budget, then the error
        assert conn.call("GET", key_on(1, b"budget")) == b"$-1\r\n"  # the other shard: fine
    assert metric(metrics, "pyproxy_failover_hold_expired_total") >= 1
