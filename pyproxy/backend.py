"""Shared, pipelined connections to one redis-server.

Pairing invariants (the heart of the proxy; read before changing anything here)::

    client A ─┐                      ┌─ out:  [req1, req2, req3]  -> one write per loop turn
    client B ─┼─> Backend.send ─> Connection
    client A ─┘                      └─ fifo: [w1,   w2,   w3  ]  <- replies pop from the head

* Strict FIFO: the n-th reply read from a connection answers the n-th request written to it.
  A written request is never removed early (one still waiting for the connection to be
  made was never written, and leaves the queue when it times out). When a written request
  times out its waiter is settled with an error *and stays in the FIFO*; its late reply is
  swallowed (``settle`` is idempotent), so pairing never slips.
* One timer per connection, armed for the oldest waiter not yet timed out (deadlines are in
  send order because every request on a pool has the same timeout).
* Writes are batched: requests queue in ``out`` and one ``call_soon`` per loop turn writes them
  all, so fifty clients sending at once cost one syscall.
* A connection that fails (refused, lost, ``server_failure_limit`` timeouts in a row) errors
  every waiter at once and stays down until its retry time: requests meanwhile get an
  immediate error, never a hang. Retry delays back off from 50 ms to 1 s; with
  ``auto_eject_hosts`` and the failure limit reached, the server rests for
  ``server_retry_timeout``. A down server is never replaced by another shard's server.
* Replies are forwarded as the exact bytes Redis sent: this module only finds their ends.
* With ``server_connections`` > 1 a client keeps to one connection per server (chosen by
  its id), so Redis runs each client's requests in the order it sent them; round robin
  would let ``SET k v`` then ``GET k`` of one pipeline run in the other order (a known
  twemproxy flaw, twitter/twemproxy#353).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from itertools import islice
from typing import Protocol as TypingProtocol

from . import resp
from .config import PoolConfig
from .slots import Swallow
from .stats import PoolStats, ServerStats

log = logging.getLogger("pyproxy.backend")

_MIN_RETRY = 0.05
_MAX_RETRY = 1.0


class Waiter(TypingProtocol):
    deadline: float

    def settle(self, raw: bytes) -> None: ...


class Backend:
    """One redis-server address: ``server_connections`` shared connections; each client keeps
    to one of them (``affinity``).

    RESP3 clients get their own group of connections, opened on first use with ``HELLO 3``,
    so that what Redis sends them can be forwarded unchanged like everything else.
    """

    __slots__ = ("address", "host", "port", "settings", "connections", "connections3",
                 "retired", "stats", "pool_stats")

    def __init__(self, address: str, settings: PoolConfig, pool_stats: PoolStats):
        host, _, port = address.rpartition(":")
        self.address = address
        self.host = host
        self.port = int(port)
        self.settings = settings
        self.stats = ServerStats()
        self.pool_stats = pool_stats  # for the pool-wide forward_error and server_ejects
        self.connections = [Connection(self) for _ in range(settings.server_connections)]
        self.connections3: list[Connection] = []
        self.retired = False

    def send(self, payload: bytes, waiter: Waiter, affinity: int = 0, resp3: bool = False) -> None:
        """Queue a request; ``affinity`` (the client's id) picks the connection."""
        connections = self.connections
        if resp3:
            connections = self.connections3 or self._open_resp3()
        if len(connections) == 1:
            connections[0].send(payload, waiter)
            return
        connections[affinity % len(connections)].send(payload, waiter)

    def _open_resp3(self) -> list[Connection]:
        count = self.settings.server_connections
        self.connections3 = [Connection(self, resp3=True) for _ in range(count)]
        return self.connections3

    def all_connections(self) -> list[Connection]:
        return self.connections + self.connections3

    def preconnect(self) -> None:
        for connection in self.connections:
            connection.connect_if_due()

    def retire(self) -> None:
        """No longer routed to: close each connection once its in-flight requests answer."""
        self.retired = True
        for connection in self.all_connections():
            connection.close_when_idle()

    @property
    def up(self) -> bool:
        return any(c.transport is not None for c in self.all_connections())

    @property
    def inflight(self) -> int:
        return sum(len(c.fifo) for c in self.all_connections())


class Connection(asyncio.Protocol):
    """One TCP connection to a redis-server, carrying many clients' requests."""

    __slots__ = (
        "backend", "loop", "transport", "connecting", "fifo", "out", "flush_scheduled",
        "rest", "expired", "timer", "failures", "retry_at", "last_error", "closing",
        "timeout", "resp3", "connect_task",
    )

    def __init__(self, backend: Backend, resp3: bool = False):
        self.backend = backend
        self.resp3 = resp3
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.connecting = False
        self.fifo: deque[Waiter] = deque()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.rest: bytearray | None = None  # an incomplete reply
        self.expired = 0  # waiters at the head of fifo already settled by a timeout
        self.timer: asyncio.TimerHandle | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.closing = False
        self.connect_task: asyncio.Task[None] | None = None  # held: the loop keeps weak refs
        timeout_ms = backend.settings.timeout_ms
        self.timeout = timeout_ms / 1000.0 if timeout_ms else 0.0

    # ------------------------------------------------------------ sending

    def send(self, payload: bytes, waiter: Waiter) -> None:
        if self.transport is None and not self.connecting:
            if not self.connect_if_due():
                self.backend.pool_stats.forward_error += 1
                waiter.settle(self._down_reply())
                return
        stats = self.backend.stats
        stats.requests += 1
        stats.request_bytes += len(payload)
        # deadline - timeout is the send time: the per-backend latency needs no extra field
        waiter.deadline = self.loop.time() + self.timeout
        if self.timeout and self.timer is None:
            self.timer = self.loop.call_at(waiter.deadline, self._on_timer)
        self.fifo.append(waiter)
        self.out.append(payload)
        if not self.flush_scheduled and self.transport is not None:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.out:
            out = self.out
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def _down_reply(self) -> bytes:
        address, why = self.backend.address, self.last_error
        return resp.error(f"ERR pyproxy: backend {address} is down ({why})")

    # ------------------------------------------------------------ connecting

    def connect_if_due(self) -> bool:
        """Start connecting unless the server is resting after failures; True if started."""
        if self.closing or self.loop.time() < self.retry_at:
            return False
        self.connecting = True
        self.connect_task = self.loop.create_task(self._connect())
        return True

    async def _connect(self) -> None:
        backend = self.backend
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: self, backend.host, backend.port),
                timeout=self.timeout or 5.0,
            )
        except (TimeoutError, OSError) as exc:
            self.connecting = False
            why = exc.strerror if isinstance(exc, OSError) else "timed out"
            self.backend.stats.server_err += 1
            self._fail(f"connect failed: {why}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport  # type: ignore[assignment]
        self.connecting = False
        self.backend.stats.reconnects += 1
        prelude = self._prelude()
        if prelude:
            # Deadlines stay in FIFO order (the timer relies on it) and are real times (a
            # zero would read as "timed out" to the timer and as an endless latency).
            deadline = self.fifo[0].deadline if self.fifo else self.loop.time() + self.timeout
            for waiter, _ in prelude:
                waiter.deadline = deadline
            self.fifo.extendleft(reversed([w for w, _ in prelude]))
            self.out[:0] = [p for _, p in prelude]
        log.info("backend %s connected", self.backend.address)
        self._flush()

    def _prelude(self) -> list[tuple[Waiter, bytes]]:
        """AUTH, SELECT and (for RESP3 connections) HELLO 3, ahead of everything else."""
        settings = self.backend.settings
        commands = []
        if settings.redis_auth:
            commands.append([b"AUTH", settings.redis_auth.encode()])
        if settings.redis_db:
            commands.append([b"SELECT", str(settings.redis_db).encode()])
        if self.resp3:
            commands.append([b"HELLO", b"3"])
        return [(Swallow(self._on_prelude_error), resp.encode_command(c)) for c in commands]

    def _on_prelude_error(self, raw: bytes) -> None:
        log.error("backend %s refused the connection setup: %s",
                  self.backend.address, raw.decode(errors="replace").strip())

    # ------------------------------------------------------------ receiving

    def data_received(self, data: bytes) -> None:
        if self.rest is not None:
            self.rest += data
            if resp.reply_end(self.rest, 0) < 0:
                return
            data = bytes(self.rest)
            self.rest = None
        fifo = self.fifo
        reply_end = resp.reply_end
        stats = self.backend.stats
        observe, sent_offset = stats.latency.observe, self.loop.time() + self.timeout
        size = len(data)
        stats.response_bytes += size
        pos = 0
        while pos < size:
            end = reply_end(data, pos)
            if end < 0:
                self.rest = bytearray(data[pos:])
                break
            if not fifo:
                self._protocol_violation("a reply nobody asked for")
                return
            waiter = fifo.popleft()
            waiter.settle(data if (pos == 0 and end == size) else data[pos:end])
            observe(sent_offset - waiter.deadline)
            stats.responses += 1
            if self.expired:
                self.expired -= 1
            pos = end
        self.failures = 0
        if self.timer is not None and not fifo:
            self.timer.cancel()
            self.timer = None
        if self.closing and not fifo:
            self._close()

    def _protocol_violation(self, what: str) -> None:
        log.error("backend %s sent %s; dropping the connection", self.backend.address, what)
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------ timeouts

    def _on_timer(self) -> None:
        self.timer = None
        now = self.loop.time()
        fifo = self.fifo
        timed_out = 0
        next_deadline = 0.0
        for waiter in islice(fifo, self.expired, None):
            if waiter.deadline > now:
                next_deadline = waiter.deadline
                break
            timed_out += 1
        if timed_out:
            error = resp.error(
                f"ERR pyproxy: backend {self.backend.address} timed out "
                f"after {int(self.timeout * 1000)} ms"
            )
            for waiter in list(islice(fifo, self.expired, self.expired + timed_out)):
                waiter.settle(error)
            if self.transport is None:
                # Still connecting: nothing was written, so these leave the queue for good
                # (with their payloads, which line up with fifo until the prelude goes in).
                for _ in range(timed_out):
                    fifo.popleft()
                del self.out[:timed_out]
            else:
                self.expired += timed_out
            self.backend.stats.server_timedout += timed_out
            self.backend.pool_stats.forward_error += timed_out
            self.failures += 1
            log.warning("backend %s: %d request(s) timed out", self.backend.address, timed_out)
        if next_deadline:
            self.timer = self.loop.call_at(next_deadline, self._on_timer)
        if timed_out and self.failures >= self.backend.settings.server_failure_limit:
            self.last_error = "timed out"
            if self.transport is not None:
                self.transport.abort()  # connection_lost errors the rest

    # ------------------------------------------------------------ failure and close

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if exc is None:
            self.backend.stats.server_eof += 1
        else:
            self.backend.stats.server_err += 1
        if self.closing:
            self._error_all("ERR pyproxy: backend connection closed")
            return
        self._fail(f"connection lost: {exc}" if exc else self.last_error or "connection closed")

    def _fail(self, why: str) -> None:
        self.last_error = why
        self.failures += 1
        settings = self.backend.settings
        if settings.auto_eject_hosts and self.failures >= settings.server_failure_limit:
            delay = settings.server_retry_timeout_ms / 1000.0
            self.backend.stats.server_ejected_at = int(time.time() * 1e6)
            self.backend.pool_stats.server_ejects += 1
        else:
            delay = min(_MIN_RETRY * 2 ** (self.failures - 1), _MAX_RETRY,
                        settings.server_retry_timeout_ms / 1000.0)
        self.retry_at = self.loop.time() + delay
        log.warning("backend %s down: %s (retry in %.2fs)", self.backend.address, why, delay)
        self._error_all(f"ERR pyproxy: backend {self.backend.address} failed: {why}")

    def _error_all(self, message: str) -> None:
        error = resp.error(message)
        fifo = self.fifo
        self.fifo = deque()
        self.out.clear()
        self.expired = 0
        self.rest = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for waiter in fifo:
            waiter.settle(error)
        self.backend.pool_stats.forward_error += len(fifo)

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.fifo:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
