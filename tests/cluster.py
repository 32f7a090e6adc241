"""Helpers for tests/test_failover_e2e.py (no pytest here).

* ``Writer``             a bounded thread that SETs unique keys through a proxy on one
                         connection and records every attempt: (sent, done, key, reply)
* ``failover_figures``   downtime, error tally and READONLY window from a writer's records
* ``call``/``role``/``try_set``  one command on a fresh connection straight to a redis
* ``common_free_ports``  ports free on every given address (the seed's "same ports on both")
* ``SwitchWatch``        when a proxy routes a shard to its heir, and when the heir is master
* ``RoleWatch``          every change of which redis (of a set) answer ROLE "master"
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import hiredis

from pyproxy.protocol.resp import encode_command
from tests.servers import free_port, redis_client

# --------------------------------------------------------------------------- keys, ports


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def common_free_ports(hosts: tuple[str, ...], count: int,
                      avoid: tuple[int, ...] = (6379, 6380, 22121)) -> list[int]:
    """``count`` distinct ports that are free on every address of ``hosts`` right now."""
    ports: list[int] = []
    for _ in range(1000):
        port = free_port(hosts[0])
        if port not in avoid and port not in ports and all(_bindable(h, port) for h in hosts):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"no {count} ports free on all of {hosts}")


# --------------------------------------------------------------------------- RESP probes


def encode(*args: Any) -> bytes:
    return encode_command([a if isinstance(a, bytes) else str(a).encode() for a in args])


def read_reply(sock: socket.socket) -> Any:
    """One reply (bytes, int, list, or a ``hiredis.ReplyError`` for an error reply)."""
    reader = hiredis.Reader()
    while (reply := reader.gets()) is False:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed")
        reader.feed(data)
    return reply


def call(address: str, *args: Any, timeout: float = 2.0) -> Any:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(encode(*args))
        return read_reply(s)


def role(address: str) -> tuple[str, str | None, str | None]:
    """("master", None, None) or ("slave", "host:port" of its master, link state);
    ("down", None, why) when it does not answer within 1 s."""
    try:
        reply = call(address, "ROLE", timeout=1.0)
    except OSError as exc:
        return ("down", None, str(exc))
    if reply[0] == b"slave":
        return ("slave", f"{reply[1].decode()}:{reply[2]}", reply[3].decode())
    return (reply[0].decode(), None, None)


def replicates(address: str, master: str, synced: bool = True) -> bool:
    kind, of, state = role(address)
    return kind == "slave" and of == master and (not synced or state == "connected")


def try_set(address: str, key: str, value: str = "1", timeout: float = 1.0) -> str:
    """SET on a fresh connection: "OK", the error reply's text, "timeout" or "error: ..."."""
    try:
        reply = call(address, "SET", key, value, timeout=timeout)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc}"
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def readonly_replies(address: str) -> int:
    """How many READONLY errors this redis has replied since it started (INFO errorstats)."""
    info = call(address, "INFO", "errorstats").decode()
    for line in info.splitlines():
        if line.startswith("errorstat_READONLY:count="):
            return int(line.split("=", 1)[1])
    return 0


# --------------------------------------------------------------------------- the writer


@dataclass(frozen=True, slots=True)
class Record:
    sent: float  # time.monotonic() when the SET was sent
    done: float  # when its reply (or failure) came
    key: str
    value: str
    reply: str  # "OK", an error reply's text, or "client: <exception>"

    @property
    def ok(self) -> bool:
        return self.reply == "OK"


class Stoppable(threading.Thread):
    """A bounded daemon thread of a test: ``crash`` keeps what ended its ``run`` early, and
    ``stop`` ends it and asserts that it stopped and did not crash."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.crash: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10.0)
        assert not self.is_alive(), f"{self.name} did not stop"
        assert self.crash is None, f"{self.name} crashed: {self.crash!r}"


class Writer(Stoppable):
    """``SET key i`` for each key, one at a time, through ``address`` (a proxy), with a short
    pause between writes. Bounded: stops after the last key, after ``max_seconds``, or on
    ``stop()``. A failure of the connection itself is recorded and the writer reconnects."""

    def __init__(self, name: str, address: str, keys: list[str], pause: float = 0.002,
                 max_seconds: float = 30.0, reply_timeout: float = 3.0) -> None:
        super().__init__(f"writer {name}")
        self.label = name
        self.address = address
        self.keys = keys
        self.pause = pause
        self.max_seconds = max_seconds
        self.reply_timeout = reply_timeout
        self.records: list[Record] = []

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not the thread
            self.crash = exc

    def _run(self) -> None:
        host, port = self.address.rsplit(":", 1)
        sock: socket.socket | None = None
        deadline = time.monotonic() + self.max_seconds
        try:
            for i, key in enumerate(self.keys):
                if self._stop_event.is_set() or time.monotonic() >= deadline:
                    return
                value = str(i)
                sent = time.monotonic()
                try:
                    if sock is None:
                        sock = socket.create_connection((host, int(port)),
                                                        timeout=self.reply_timeout)
                    sock.sendall(encode("SET", key, value))
                    reply = read_reply(sock)
                    text = reply.decode() if isinstance(reply, bytes) else str(reply)
                except OSError as exc:
                    text = f"client: {type(exc).__name__}: {exc}"
                    if sock is not None:
                        sock.close()
                        sock = None
                    self.records.append(Record(sent, time.monotonic(), key, value, text))
                    self._stop_event.wait(0.05)
                    continue
                self.records.append(Record(sent, time.monotonic(), key, value, text))
                self._stop_event.wait(self.pause)
        finally:
            if sock is not None:
                sock.close()

    # views of the records (safe while running: list appends are atomic)
    def acked(self, sent_from: float = 0.0, done_until: float = float("inf")) -> list[Record]:
        return [r for r in list(self.records)
                if r.ok and r.sent >= sent_from and r.done <= done_until]

    def errors(self) -> list[Record]:
        return [r for r in list(self.records) if not r.ok]


class Reader(Writer):
    """``GET`` of keys whose values are known (``expected``), round and round, through
    ``address``; a reply that is not the expected value is recorded as an error reply."""

    def __init__(self, name: str, address: str, expected: dict[str, str], **kwargs: Any) -> None:
        super().__init__(name, address, list(expected), **kwargs)
        self.expected = expected

    def _run(self) -> None:
        host, port = self.address.rsplit(":", 1)
        deadline = time.monotonic() + self.max_seconds
        sock = socket.create_connection((host, int(port)), timeout=self.reply_timeout)
        try:
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                for key, value in self.expected.items():
                    sent = time.monotonic()
                    sock.sendall(encode("GET", key))
                    reply = read_reply(sock)
                    text = "OK" if reply == value.encode() else f"GET {key}: {reply!r}"
                    self.records.append(Record(sent, time.monotonic(), key, value, text))
                    self._stop_event.wait(self.pause)
        finally:
            sock.close()


def mget(address: str, keys: list[str]) -> list[bytes | None]:
    """MGET straight to one redis, on a fresh connection (a restarted redis leaves pooled
    connections broken)."""
    host, port = address.rsplit(":", 1)
    client = redis_client(host, int(port))
    try:
        values: list[bytes | None] = []
        for i in range(0, len(keys), 500):
            values += client.mget(keys[i:i + 500])
        return values
    finally:
        client.close()


def missing_on(address: str, records: list[Record]) -> list[str]:
    """Keys of ``records`` whose value on the redis at ``address`` is not the one written."""
    values = mget(address, [r.key for r in records])
    return [r.key for r, v in zip(records, values, strict=True) if v != r.value.encode()]


class SwitchWatch(Stoppable):
    """Polls, every ``period``, which master a proxy routes ``shard`` to (its INFO
    ``pool_<pool>_masters`` line) and whether ``heir`` is a master yet (ROLE), and notes when
    each first happened: a proxy that routes to the heir before it is promoted gets READONLY
    for the difference."""

    def __init__(self, proxy: str, shard: str, heir: str, pool: str = "alpha",
                 period: float = 0.005, max_seconds: float = 15.0) -> None:
        super().__init__(f"switch watch {shard}")
        self.proxy, self.shard, self.heir, self.pool = proxy, shard, heir, pool
        self.period, self.max_seconds = period, max_seconds
        self.routed: float | None = None
        self.promoted: float | None = None

    def routes_to_heir(self) -> bool:
        info = call(self.proxy, "INFO", "proxy", timeout=1.0).decode()
        prefix = f"pool_{self.pool}_masters:"
        line = next(x for x in info.splitlines() if x.startswith(prefix))
        return f"{self.shard}={self.heir}" in line[len(prefix):].split(",")

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                now = time.monotonic()
                if self.routed is None and self.routes_to_heir():
                    self.routed = now
                if self.promoted is None and role(self.heir)[0] == "master":
                    self.promoted = now
                if self.routed is not None and self.promoted is not None:
                    return
                self._stop_event.wait(self.period)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not the thread
            self.crash = exc

    def figures(self, fault: float) -> dict[str, Any]:
        """Times from the fault (ms), and by how much the proxy switched before the heir was
        a master (negative: after; the resolution is the polling period plus a round trip)."""
        assert self.routed is not None and self.promoted is not None, "no switch seen"
        return {"proxy_switched_ms": _ms(self.routed - fault),
                "heir_promoted_ms": _ms(self.promoted - fault),
                "proxy_ahead_of_promotion_ms": _ms(self.promoted - self.routed)}


class RoleWatch(Stoppable):
    """Polls ROLE of every redis in ``addresses`` every ``period`` and records each change of
    the set answering "master" as (time.monotonic(), that set): a redis promoted even for a
    moment (longer than a poll) shows up. ROLE is not a write, so a fenced master answers."""

    def __init__(self, addresses: list[str], period: float = 0.02,
                 max_seconds: float = 60.0) -> None:
        super().__init__("role watch")
        self.addresses, self.period, self.max_seconds = addresses, period, max_seconds
        self.changes: list[tuple[float, frozenset[str]]] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                masters = frozenset(a for a in self.addresses if role(a)[0] == "master")
                if not self.changes or self.changes[-1][1] != masters:
                    self.changes.append((time.monotonic(), masters))
                self._stop_event.wait(self.period)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not the thread
            self.crash = exc

    def ever_master(self) -> set[str]:
        return set().union(*(masters for _, masters in self.changes))


# --------------------------------------------------------------------------- figures


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def failover_figures(records: list[Record], fault: float) -> dict[str, Any]:
    """What one writer saw around a fault injected at ``fault`` (time.monotonic()).

    * ``downtime_ms``: the longest gap between two consecutive acknowledged writes from the
      last acknowledgement before the fault on (last ack before -> first ack after)
    * ``writes_resumed_after_fault_ms``: from the fault to the end of that gap
    * ``errors``: the error replies by text, with the window they were seen in
    * ``readonly``: how many READONLY replies and over which window (None if none)
    """
    acks = sorted(r.done for r in records if r.ok)
    before = [t for t in acks if t <= fault]
    after = [t for t in acks if t > fault]
    points = before[-1:] + after
    gaps = [(b - a, a, b) for a, b in zip(points, points[1:], strict=False)]
    gap, gap_start, gap_end = max(gaps) if gaps else (0.0, fault, fault)
    errors = [r for r in records if not r.ok]
    readonly = [r for r in errors if r.reply.startswith("READONLY")]
    tally = Counter(r.reply[:120] for r in errors)
    return {
        "writes": len(records),
        "acked": len(acks),
        "downtime_ms": _ms(gap),
        "downtime_from_fault_ms": [_ms(gap_start - fault), _ms(gap_end - fault)],
        "writes_resumed_after_fault_ms": _ms(gap_end - fault) if after else None,
        "errors": len(errors),
        "error_window_ms": ([_ms(min(r.sent for r in errors) - fault),
                             _ms(max(r.done for r in errors) - fault)] if errors else None),
        "error_tally": dict(tally.most_common()),
        "readonly": ({"count": len(readonly),
                      "window_ms": _ms(max(r.done for r in readonly)
                                       - min(r.sent for r in readonly)),
                      "from_fault_ms": _ms(min(r.sent for r in readonly) - fault)}
                     if readonly else None),
    }


def error_tally(records: list[Record], sent_from: float, sent_until: float) -> dict[str, int]:
    """The error replies of the writes sent in [sent_from, sent_until), counted by text."""
    return dict(Counter(r.reply[:120] for r in records
                        if not r.ok and sent_from <= r.sent < sent_until).most_common())


def close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
