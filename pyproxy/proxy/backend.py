"""Shared, pipelined connections to one redis-server.

Pairing invariants (the heart of the proxy; read before changing anything here)::

    client A ─┐                      ┌─ out:  [req1, req2, req3]  -> one write per loop turn
    client B ─┼─> Backend.send ─> Connection
    client A ─┘                      └─ fifo: [w1,   w2,   w3  ]  <- replies pop from the head
                                        sent: [t1,   t2,   t3  ]     (send times, beside fifo)

* Strict FIFO: the n-th reply read from a connection answers the n-th request written to it.
  A written request is never removed early (one still waiting for the connection to be
  made was never written, and leaves the queue when it times out). When a written request
  times out its waiter is settled with an error *and stays in the FIFO*; its late reply is
  swallowed (``settle`` is idempotent), so pairing never slips.
* One TCP connection at a time per ``Connection``: a connect starts only when none is open
  or being made, and each TCP connection has its own ``Link`` (the asyncio protocol), whose
  events count only while it is the connection's current link — so two sockets never feed
  one FIFO, and a late event of a dropped socket never touches its successor. The setup
  prelude (AUTH, SELECT, HELLO 3) goes in front of requests that were never written, and they
  are written only once every setup command answered OK: a refused AUTH or SELECT fails the
  connection (its requests get the reason), so nothing ever runs in the wrong database.
* The connection keeps its own timer state: the send time of every waiter (``sent``), one
  timer armed for the oldest waiter not yet timed out (send times are in FIFO order and every
  request on a pool has the same timeout). Waiters carry nothing but ``settle``.
* Writes are batched: requests queue in ``out`` and one ``call_soon`` per loop turn writes them
  all, so fifty clients sending at once cost one syscall.
* A connection that fails (refused, lost, ``server_failure_limit`` timeouts in a row) errors
  every waiter at once and stays down until its retry time: requests meanwhile get an
  immediate error, never a hang. While down it connects again at each retry time (50 ms, then
  every 100 ms) whether requests come or not, so a server that is back is used within 100 ms;
  with ``auto_eject_hosts`` and the failure limit reached, the server rests for
  ``server_retry_timeout``. One log line per outage (and one every 30 s while it lasts), one
  when it is back. A down server is never replaced by another shard's server.
* Replies are forwarded as the exact bytes Redis sent: this module only finds their ends. A
  reply that is not RESP is a protocol violation: one log line, the connection is dropped and
  its waiters get an error — other connections never notice.
* With ``server_connections`` > 1 a client keeps to one connection per server (chosen by
  its id), so Redis runs each client's requests in the order it sent them; round robin
  would let ``SET k v`` then ``GET k`` of one pipeline run in the other order (a known
  twemproxy flaw, twitter/twemproxy#353).
* Pinned connections: a client that needs server-side state of its own (WATCH) or would
  hold a connection (a blocking pop) leases one of at most ``pinned_connections`` dedicated
  connections per backend (``lease``), as a ``Pin``. While pinned, only that client's
  requests travel on it; it comes back to the idle list only in a known state (its reset
  commands, such as UNWATCH, queued first — the FIFO runs them before the next holder's
  requests), and is closed instead when it is busy with something that cannot be taken back
  (a pop still waiting: closing it means no element is popped for nobody). A lease is also
  refused when the process has no descriptor left for it (``descriptors``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque

from .. import address as addresses
from ..config import PoolConfig
from ..observe.snapshot import BackendSnapshot
from ..observe.stats import PoolStats, ServerStats, copy_counters
from ..protocol import resp
from .descriptors import Descriptors
from .errors import Failure
from .replies import Swallow, Waiter

log = logging.getLogger("pyproxy.backend")

_MIN_RETRY = 0.05
_MAX_RETRY = 0.1  # a server that comes back is connected within this (probed while down)
_STILL_DOWN_EVERY = 30.0  # seconds between two "still down" lines of one outage
_IDLE_PINS = 32  # pinned connections kept open for reuse, per backend and protocol


class Backend:
    """One redis-server address: ``server_connections`` shared connections; each client keeps
    to one of them (``affinity``).

    RESP3 clients get their own group of connections, opened on first use with ``HELLO 3``,
    so that what Redis sends them can be forwarded unchanged like everything else.
    """

    __slots__ = ("address", "host", "port", "settings", "connections", "connections3",
                 "retired", "stats", "pool_stats", "idle_pins", "pinned", "descriptors")

    def __init__(self, address: str, settings: PoolConfig, pool_stats: PoolStats,
                 descriptors: Descriptors | None = None):
        self.address = address
        self.host, self.port = addresses.parse(address)
        self.settings = settings
        self.stats = ServerStats()
        self.pool_stats = pool_stats  # for the pool-wide forward_error and server_ejects
        self.connections = [Connection(self) for _ in range(settings.server_connections)]
        self.connections3: list[Connection] = []
        self.retired = False
        self.idle_pins: dict[bool, list[Connection]] = {False: [], True: []}  # by resp3
        self.pinned = 0  # pinned connections open: leased or idle
        self.descriptors = descriptors or Descriptors(None)  # the process's, counts pins too

    def send(self, payload: bytes, waiter: Waiter, affinity: int = 0, resp3: bool = False) -> None:
        """Queue a request; ``affinity`` (the client's id) picks the connection."""
        connections = self.connections
        if resp3:
            connections = self.connections3 or self._open_resp3()
        if len(connections) == 1:
            connections[0].send(payload, waiter)
            return
        connections[affinity % len(connections)].send(payload, waiter)

    def send_block(self, block: list[tuple[bytes, Waiter]], affinity: int = 0,
                   resp3: bool = False) -> None:
        """Queue requests that must reach Redis together, or not at all (a transaction)."""
        connections = self.connections
        if resp3:
            connections = self.connections3 or self._open_resp3()
        connections[affinity % len(connections)].send_block(block)

    def _open_resp3(self) -> list[Connection]:
        count = self.settings.server_connections
        self.connections3 = [Connection(self, resp3=True) for _ in range(count)]
        return self.connections3

    def all_connections(self) -> list[Connection]:
        return self.connections + self.connections3

    def stalled(self, threshold: float) -> bool:
        """Some shared connection's oldest request (not yet timed out) has waited longer than
        ``threshold`` seconds: the server is hung, paused or very slow."""
        now = self.connections[0].loop.time()
        for connection in self.all_connections():
            sent, first = connection.sent, connection.expired
            if first < len(sent) and now - sent[first] > threshold:
                return True
        return False

    def preconnect(self) -> None:
        for connection in self.connections:
            connection.connect_if_due()

    def retire(self) -> None:
        """No longer routed to: close each connection once its in-flight requests answer."""
        self.retired = True
        for connection in self.all_connections():
            connection.close_when_idle()
        for idle in self.idle_pins.values():
            for connection in idle:
                if not connection.closing:
                    self._count_pinned(-1)
                connection.close_when_idle()
            idle.clear()

    def lease(self, resp3: bool, timeout: bool = True) -> Connection | None:
        """A pinned connection for one client, or None when ``pinned_connections`` are all
        in use. ``timeout=False`` for blocking commands, which wait as long as they say."""
        idle = self.idle_pins[resp3]
        while idle:
            connection = idle.pop()
            if not connection.closing:  # (a closed one was counted out by close_pinned)
                connection.set_timeout(timeout)
                return connection
        if (self.retired or self.pinned >= self.settings.pinned_connections
                or not self.descriptors.admits_pinned()):
            return None
        self._count_pinned(+1)
        connection = Connection(self, resp3=resp3, pinned=True)
        connection.set_timeout(timeout)
        return connection

    def give_back(self, connection: Connection, reset: list[bytes]) -> None:
        """A pin's connection returns: ``reset`` (UNWATCH, ...) is queued on it first, then it
        is idle — or closed, if the backend is retired or enough are idle already."""
        for payload in reset:
            connection.send(payload, Swallow(connection.on_reset_error))
        idle = self.idle_pins[connection.resp3]
        if self.retired or connection.closing or len(idle) >= _IDLE_PINS:
            self.close_pinned(connection)
        else:
            idle.append(connection)

    def close_pinned(self, connection: Connection) -> None:
        """Close a pinned connection now: whatever waits on it gets an error."""
        if not connection.closing:
            self._count_pinned(-1)
        connection.abandon()

    def _count_pinned(self, change: int) -> None:
        self.pinned += change
        self.descriptors.pinned += change

    def snapshot(self) -> BackendSnapshot:
        connections = self.all_connections()
        queued = [payload for c in connections for payload in c.out]
        waiting = sum(len(c.fifo) for c in connections)
        return BackendSnapshot(
            address=self.address,
            connections=sum(1 for c in connections if c.transport is not None),
            queued=len(queued),
            queued_bytes=sum(map(len, queued)),
            inflight=max(waiting - len(queued), 0),
            stats=copy_counters(self.stats),
        )


class Link(asyncio.Protocol):
    """The protocol of one TCP connection; its events reach its ``Connection`` only while it
    is that connection's current link."""

    __slots__ = ("connection", "transport")

    def __init__(self, connection: Connection):
        self.connection = connection
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.connection.link is self:
            self.connection.on_link_made(self)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if connection.link is self:
            connection.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        connection = self.connection
        if connection.link is self:
            connection.on_link_lost(exc)


class Setup:
    """The waiter of a connection's setup commands (one object for all of them)."""

    __slots__ = ("connection", "left", "failed")

    def __init__(self, connection: Connection, count: int):
        self.connection = connection
        self.left = count
        self.failed = False

    def settle(self, raw: bytes) -> None:
        if self.failed or isinstance(raw, Failure):  # a timeout (its late reply still comes)
            return  # or the connection failing: handled there
        if raw[:1] == b":":  # CLIENT ID
            self.connection.client_id = int(raw[1:-2])
        elif raw[:1] == b"-":
            self.failed = True
            self.connection.setup_refused(raw)
            return
        self.left -= 1
        if self.left == 0:
            self.connection.setup_done()


class Connection:
    """One logical pipelined connection to a redis-server, carrying many clients' requests;
    it reconnects (a new ``Link``) after a failure."""

    __slots__ = (
        "backend", "loop", "link", "transport", "connecting", "fifo", "sent", "out",
        "flush_scheduled", "scanner", "expired", "timer", "failures", "retry_at", "last_error",
        "closing", "timeout", "pool_timeout", "resp3", "pinned", "connect_task", "ready",
        "probe", "down_logged", "client_id",
    )

    def __init__(self, backend: Backend, resp3: bool = False, pinned: bool = False):
        self.backend = backend
        self.resp3 = resp3
        self.pinned = pinned
        self.loop = asyncio.get_running_loop()
        self.link: Link | None = None  # the TCP connection open or being made
        self.transport: asyncio.Transport | None = None  # the link's, once it is made
        self.connecting = False
        self.fifo: deque[Waiter] = deque()
        self.sent: deque[float] = deque()  # loop time each waiter in fifo was queued
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.scanner = resp.ReplyScanner()  # where each reply ends, across reads
        self.expired = 0  # waiters at the head of fifo already settled by a timeout
        self.timer: asyncio.TimerHandle | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.closing = False
        self.connect_task: asyncio.Task[None] | None = None  # held: the loop keeps weak refs
        self.ready = False  # connected and its setup (AUTH, SELECT, HELLO) answered OK
        self.probe: asyncio.TimerHandle | None = None  # the next connect attempt while down
        self.down_logged = 0.0  # loop time of this outage's last "down" line (0: up)
        self.client_id: int | None = None  # Redis's id for it (pinned ones: CLIENT UNBLOCK)
        timeout_ms = backend.settings.timeout_ms
        self.pool_timeout = timeout_ms / 1000.0 if timeout_ms else 0.0
        self.timeout = self.pool_timeout  # 0 on a pinned connection leased for blocking

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
        now = self.loop.time()
        if self.timeout and self.timer is None:
            self.timer = self.loop.call_at(now + self.timeout, self._on_timer)
        self.fifo.append(waiter)
        self.sent.append(now)
        self.out.append(payload)
        if not self.flush_scheduled and self.transport is not None:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def send_block(self, block: list[tuple[bytes, Waiter]]) -> None:
        """Queue every request of ``block`` back to back — contiguous in the FIFO and in what
        is written — or, if the connection is down, none of them: each waiter gets the error."""
        if self.transport is None and not self.connecting and not self.connect_if_due():
            self.backend.pool_stats.forward_error += len(block)
            down = self._down_reply()
            for _, waiter in block:
                waiter.settle(down)
            return
        for payload, waiter in block:
            self.send(payload, waiter)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.ready and self.transport is not None and self.out:
            out = self.out
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def set_timeout(self, on: bool) -> None:
        """The pool's request timeout, or none at all (a pinned connection for blocking)."""
        self.timeout = self.pool_timeout if on else 0.0
        if not on and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_reset_error(self, raw: bytes) -> None:
        """A pinned connection's reset (UNWATCH) failed: its state is unknown, so it goes."""
        log.warning("backend %s: resetting a pinned connection failed (%s); closing it",
                    self.backend.address, raw.decode(errors="replace").strip())
        self.backend.close_pinned(self)

    def _down_reply(self) -> Failure:
        address, why = self.backend.address, self.last_error
        return Failure(f"ERR pyproxy: backend {address} is down ({why})", "down", sent=False)

    # ------------------------------------------------------------ connecting

    def connect_if_due(self) -> bool:
        """Start connecting unless connected, connecting, closing or resting after failures;
        True if a connection is open or on its way."""
        if self.transport is not None or self.connecting:
            return True
        if self.closing or self.loop.time() < self.retry_at:
            return False
        self.connecting = True
        link = self.link = Link(self)
        self.connect_task = self.loop.create_task(self._connect(link))
        return True

    async def _connect(self, link: Link) -> None:
        backend = self.backend
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: link, backend.host, backend.port),
                timeout=self.pool_timeout or 5.0,
            )
        except (TimeoutError, OSError, UnicodeError) as exc:  # UnicodeError: an unusable name
            if self.link is not link:
                return
            self.link = None
            self.connecting = False
            why = exc.strerror if isinstance(exc, OSError) else (
                "timed out" if isinstance(exc, TimeoutError) else f"bad host name ({exc})")
            self.backend.stats.server_err += 1
            self._fail(f"connect failed: {why}")

    def on_link_made(self, link: Link) -> None:
        transport = link.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport
        self.connecting = False
        if self.down_logged:
            log.info("backend %s is back", self.backend.address)
            self.down_logged = 0.0
        self.backend.stats.reconnects += 1
        prelude = self._prelude()
        if prelude:
            # Nothing in fifo was written yet (a lost connection errors every waiter), so the
            # setup goes first, alone: requests are written only once every setup command
            # answered OK (a refused SELECT must not let them run in database 0). Its send
            # time is the oldest's, keeping ``sent`` ordered.
            queued_at = self.sent[0] if self.sent else self.loop.time()
            setup = Setup(self, len(prelude))
            self.fifo.extendleft([setup] * len(prelude))
            self.sent.extendleft([queued_at] * len(prelude))
            transport.write(b"".join(prelude))
        else:
            self.ready = True
        log.info("backend %s connected", self.backend.address)
        self._flush()

    def _prelude(self) -> list[bytes]:
        """AUTH, SELECT, (for RESP3 connections) HELLO 3 and (for pinned ones) CLIENT ID,
        ahead of everything else."""
        settings = self.backend.settings
        commands = []
        if settings.redis_auth:
            commands.append([b"AUTH", settings.redis_auth.encode()])
        if settings.redis_db:
            commands.append([b"SELECT", str(settings.redis_db).encode()])
        if self.resp3:
            commands.append([b"HELLO", b"3"])
        if self.pinned:
            commands.append([b"CLIENT", b"ID"])
        return [resp.encode_command(c) for c in commands]

    def setup_done(self) -> None:
        self.ready = True
        self._flush()

    def setup_refused(self, raw: bytes) -> None:
        """A setup command failed: no request is written on this connection; the waiting ones
        get the reason (they never went out), and it is tried again after the backoff."""
        why = raw.decode(errors="replace").strip().lstrip("-")
        self._drop()
        self._fail(f"it refused the connection setup ({why})", kind="down")

    # ------------------------------------------------------------ receiving

    def on_data(self, data: bytes) -> None:
        try:
            self._replies(data)
        except resp.MalformedReply as exc:
            self._protocol_violation(str(exc))

    def _replies(self, data: bytes) -> None:
        self.backend.stats.response_bytes += len(data)
        try:
            replies = self.scanner.feed(data)
        except resp.MalformedReply as exc:  # the replies before the bad bytes are still paired
            self._settle(exc.replies)
            raise
        if replies:
            self._settle(replies)

    def _settle(self, replies: list[bytes]) -> None:
        """Each reply answers the waiter at the head of the FIFO."""
        fifo, sent = self.fifo, self.sent
        stats = self.backend.stats
        observe, now = stats.latency.observe, self.loop.time()
        for raw in replies:
            if not fifo:
                raise resp.MalformedReply("a reply nobody asked for")
            fifo.popleft().settle(raw)
            observe(now - sent.popleft())
            stats.responses += 1
            if self.expired:
                self.expired -= 1
        self.failures = 0
        if self.timer is not None and not fifo:
            self.timer.cancel()
            self.timer = None
        if self.closing and not fifo:
            self._close()

    def _protocol_violation(self, what: str) -> None:
        """The backend sent something that is not RESP: pairing is lost, so the connection
        goes, and every request on it gets an error now (one log line, no traceback)."""
        log.error("backend %s sent a malformed reply (%s); dropping the connection",
                  self.backend.address, what[:200])
        self.backend.stats.server_err += 1
        self._drop()
        self._fail("it sent a malformed reply", announce=False, kind="malformed")

    # ------------------------------------------------------------ timeouts

    def _on_timer(self) -> None:
        self.timer = None
        timeout = self.timeout
        if not timeout:
            return
        now = self.loop.time()
        sent = self.sent
        first, timed_out = self.expired, 0
        next_deadline = 0.0
        for index in range(first, len(sent)):
            if sent[index] + timeout > now:
                next_deadline = sent[index] + timeout
                break
            timed_out += 1
        if timed_out:
            error = Failure(f"ERR pyproxy: backend {self.backend.address} timed out after "
                            f"{int(timeout * 1000)} ms", "timeout", sent=True)
            fifo = self.fifo
            for index in range(first, first + timed_out):
                fifo[index].settle(error)
            if self.transport is None:
                # Still connecting: nothing was written, so these leave the queue for good
                # (with their payloads, which line up with fifo until the prelude goes in).
                for _ in range(timed_out):
                    fifo.popleft()
                    sent.popleft()
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
                self.transport.abort()  # on_link_lost errors the rest

    # ------------------------------------------------------------ failure and close

    def _drop(self) -> None:
        """Forget the current link at once (its late events are ignored) and abort it."""
        transport, self.link, self.transport = self.transport, None, None
        self.connecting = False
        self.ready = False
        if transport is not None:
            transport.abort()

    def on_link_lost(self, exc: Exception | None) -> None:
        self.link = None
        self.transport = None
        self.ready = False
        if exc is None:
            self.backend.stats.server_eof += 1
        else:
            self.backend.stats.server_err += 1
        if self.closing:
            self._error_all("ERR pyproxy: backend connection closed", "closed")
            return
        self._fail(f"connection lost: {exc}" if exc else self.last_error or "connection closed")

    def _fail(self, why: str, announce: bool = True, kind: str = "lost") -> None:
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
        now = self.loop.time()
        self.retry_at = now + delay
        if announce and now - self.down_logged >= _STILL_DOWN_EVERY:
            still = "still " if self.down_logged else ""
            log.warning("backend %s %sdown: %s (trying again every %.2fs)",
                        self.backend.address, still, why, delay)
            self.down_logged = now
        if self.probe is None and not self.closing and not self.pinned:
            self.probe = self.loop.call_at(self.retry_at, self._probe)
        self._error_all(f"ERR pyproxy: backend {self.backend.address} failed: {why}", kind)

    def _probe(self) -> None:
        """While down, connect again at the retry time whether or not requests come, so a
        server that is back is used at once (not after the next request's error)."""
        self.probe = None
        if not self.closing and not self.backend.retired:
            self.connect_if_due()

    def _error_all(self, message: str, kind: str) -> None:
        """Every waiter gets a ``Failure``: ``sent`` for those already written (the first
        ``len(fifo) - len(out)``), not for those still queued in ``out``."""
        written = len(self.fifo) - len(self.out)
        errors = (Failure(message, kind, sent=True), Failure(message, kind, sent=False))
        fifo = self.fifo
        self.fifo = deque()
        self.sent = deque()
        self.out.clear()
        self.expired = 0
        self.scanner = resp.ReplyScanner()  # the next link starts between replies
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for index, waiter in enumerate(fifo):
            waiter.settle(errors[0] if index < written else errors[1])
        self.backend.pool_stats.forward_error += len(fifo)

    def _stop_probing(self) -> None:
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None

    def close_when_idle(self) -> None:
        self.closing = True
        self._stop_probing()
        if not self.fifo:
            self._close()

    def abandon(self) -> None:
        """Close at once, in-flight requests or not (their waiters get an error)."""
        self.closing = True
        self._stop_probing()
        self._drop()
        self._error_all("ERR pyproxy: backend connection closed", "closed")

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
