"""Fakes for tests of the request path: a recording shard endpoint, a pool over two of them, a
client connection for the executor, a transport (no sockets, no event loop) — and
``ScriptedRedis``, a socket server on 127.0.0.1 that answers each request with bytes a test
chooses, for what no real redis-server would send.

``FakePool`` has the two-shard layout of ``tests/keys.py`` (slots 0-2047 and 2048-4095), so
``keys_for_shard`` picks keys for either endpoint.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from pyproxy import config
from pyproxy.observe.slowlog import SlowLog
from pyproxy.observe.snapshot import ProxySnapshot
from pyproxy.observe.stats import PoolStats
from pyproxy.proxy.execute import Executor
from pyproxy.proxy.flow import MemoryBudget
from pyproxy.proxy.replies import Flusher, Reply
from pyproxy.proxy.session import Session
from pyproxy.routing import table as routing
from pyproxy.routing.routes import Routes
from tests.servers import pool_config


class Endpoint:
    """A shard endpoint that records what it is sent; the test answers the waiters."""

    migrating = ""  # a shard's own route (pyproxy.proxy.route.ShardRoute)

    def __init__(self, name: str) -> None:
        self.name = name
        self.backend = name  # "has a master"
        self.sent: list[tuple[bytes, Any]] = []
        self.pins: list[FakePin] = []

    def send(self, payload: bytes, waiter: Any, session: Any, readonly: bool = False) -> None:
        self.sent.append((payload, waiter))

    def send_block(self, block: list[tuple[bytes, Any]], session: Any) -> None:
        self.sent.extend(block)

    def pin(self, session: Any, reset: list[bytes], blocking: bool = False) -> FakePin:
        pin = FakePin(self, reset)
        self.pins.append(pin)
        return pin

    def send_pinned(self, pin: FakePin, payload: bytes, waiter: Any) -> None:
        pin.send(payload, waiter)

    def answer(self, *replies: bytes) -> None:
        """Settle the oldest unanswered waiters with ``replies``, in order."""
        for raw in replies:
            _, waiter = self.sent.pop(0)
            waiter.settle(raw)

    def __repr__(self) -> str:
        return f"Endpoint({self.name})"


class FakePin:
    """A pinned connection: what was sent on it, and whether it was released."""

    def __init__(self, endpoint: Endpoint, reset: list[bytes]) -> None:
        self.shard = endpoint.name
        self.reset = reset
        self.sent: list[tuple[bytes, Any]] = []
        self.released = False

    def send(self, payload: bytes, waiter: Any) -> None:
        self.sent.append((payload, waiter))

    def send_block(self, block: list[tuple[bytes, Any]]) -> None:
        self.sent.extend(block)

    def release(self) -> None:
        self.released = True


class FakePool:
    def __init__(self, **keys: Any) -> None:
        text = pool_config(1, ["127.0.0.1:1:0-2047", "127.0.0.1:2:2048-4095"], **keys)
        self.config = config.parse(text).pools[0]
        self.stats = PoolStats()
        table = routing.build([routing.Shard.of("a", 0, 2047, "127.0.0.1:1"),
                               routing.Shard.of("b", 2048, 4095, "127.0.0.1:2")], 4096)
        self.endpoints = [Endpoint("a"), Endpoint("b")]
        self.routes = Routes(table, self.endpoints, self.config.hash_tag)
        self.clients: set[Any] = set()
        self.on_routes: list[Any] = []
        self.budget = MemoryBudget(self.config.proxy_memory_limit)
        self.slowlog = SlowLog(self.config.slowlog_log_slower_than, self.config.slowlog_max_len,
                               lambda: table, self.config.hash_tag)

    def route_of(self, shard: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == shard), None)


class FakeClient:
    """What the executor needs of a client: a reply queue, a session, a flusher."""

    def __init__(self, pool: FakePool) -> None:
        self.queue: deque[Reply] = deque()
        self.session = Session(7, "127.0.0.1:50000", authenticated=not pool.config.redis_auth)
        self.dirty = False
        self.held = 0
        self.flusher = Flusher()  # no scheduler: flush() writes nothing here
        self.written: list[bytes] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def flush(self) -> None:
        while self.queue and self.queue[0].raw is not None:
            raw = self.queue.popleft().raw
            assert raw is not None
            self.written.append(raw)

    def replies(self) -> list[bytes]:
        """Everything settled so far, in request order (what the client would read)."""
        self.flusher.flush()
        self.flush()
        return self.written


def executor_for(pool: FakePool) -> Executor:
    return Executor(pool, lambda: ProxySnapshot(0.0))  # type: ignore[arg-type]


class FakeTransport:
    """Records writes and reading pauses, like an asyncio transport would see them."""

    def __init__(self) -> None:
        self.written = b""
        self.reading = True
        self.pauses = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def close(self) -> None:
        self.closed = True


class ScriptedRedis:
    """Listens on 127.0.0.1 (a free port); answers every request ``args`` with
    ``answer(args)`` bytes. ``requests`` records what arrived. A context manager: leaving it
    closes the listener and every connection."""

    def __init__(self, answer: Callable[[list[bytes]], bytes]) -> None:
        self.answer = answer
        self.requests: list[list[bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._closed = False

    def __enter__(self) -> ScriptedRedis:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._listener.close()
        for conn in self._conns:
            conn.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        reader = hiredis.Reader()
        try:
            while data := conn.recv(65536):
                reader.feed(data)
                while (request := reader.gets()) is not False:
                    self.requests.append(request)
                    conn.sendall(self.answer(request))
        except OSError:
            return
