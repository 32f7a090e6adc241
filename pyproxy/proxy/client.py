"""One client connection: the transport, the request parser and the ordered reply queue.

What a command *means* is the executor's business (``execute``) and what the connection *is*
— auth, name, protocol, mode — is the session's (``session``). The client only moves bytes:

* Every complete command goes to ``Executor.run``, which puts a ``Reply`` at the tail of
  ``queue`` — forwarded, local, refused or erroneous alike — so replies leave in request
  order however the shards answer.
* ``flush`` writes every settled reply from the head in one ``write``; nothing else writes
  to the client's transport.
* Bad input never harms anyone else: a protocol error is answered (after the replies to the
  commands before it) and then only this connection closes.
* ``FlowControl`` pauses reading while too much is outstanding (``flow``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

from ..observe.snapshot import ClientSnapshot
from ..protocol.resp import ProtocolError, RequestParser
from .flow import FlowControl, OutputLimit
from .replies import Flusher, Reply
from .session import Session

if TYPE_CHECKING:
    from .execute import Executor
    from .pool import Pool

log = logging.getLogger("pyproxy.client")

_ids = itertools.count(1)


class Client(asyncio.Protocol):
    __slots__ = ("pool", "executor", "flusher", "transport", "parser", "queue", "dirty",
                 "flow", "session", "clock", "laddr", "fd", "push_limit", "output_limit", "held",
                 "budget")

    def __init__(self, pool: Pool, executor: Executor, flusher: Flusher):
        self.pool = pool
        self.executor = executor
        self.flusher = flusher
        self.transport: asyncio.Transport | None = None
        config = pool.config
        self.parser = RequestParser(config.max_bulk_length, config.max_multibulk_length)
        self.queue: deque[Reply] = deque()
        self.dirty = False  # marked with the flusher this loop turn
        self.flow: FlowControl | None = None
        self.clock = asyncio.get_running_loop().time
        self.session = Session(next(_ids), "", not config.redis_auth, self.clock())
        self.session.push = self.push
        self.push_limit = OutputLimit(config.pubsub_output_limit,
                                      config.pubsub_output_soft_limit,
                                      config.pubsub_output_soft_seconds)
        self.output_limit = OutputLimit(config.client_output_limit,
                                        config.client_output_soft_limit,
                                        config.client_output_soft_seconds)
        self.held = 0  # settled replies not yet written, in bytes
        self.budget = pool.budget
        self.laddr = ""
        self.fd = -1

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(transport)  # type: ignore[arg-type]  # a Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session.peer = _address(transport.get_extra_info("peername"))
        self.laddr = _address(transport.get_extra_info("sockname"))
        self.session.created = self.session.last_active = self.clock()
        self.pool.clients.add(self)
        self.pool.stats.client_connections_total += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()
        self.held = 0
        self.budget.report(self.session.id, 0)
        self.session.end()
        self.pool.clients.discard(self)
        self.pool.stats.client_eof += 1

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.write_paused(len(self.queue))

    def resume_writing(self) -> None:
        """The client read most of what it had: its share of the budget shrinks now."""
        if self.flow is not None:
            self.flow.write_resumed(len(self.queue))
        if self.transport is not None:
            self.budget.report(self.session.id, self.transport.get_write_buffer_size() + self.held)

    def idle_for(self, now: float) -> float:
        """Seconds since the last read, or 0 while a reply is still owed to the client."""
        return 0.0 if self.queue else now - self.session.last_active

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def push(self, raw: bytes) -> None:
        """Write a pub/sub message now, outside the reply queue (a RESP3 push, or a RESP2
        subscribed client's message); past the output limit the client is disconnected."""
        transport = self.transport
        if transport is None:
            return
        transport.write(raw)
        self.pool.stats.response_bytes += len(raw)
        self._account(transport, self.push_limit, "pub/sub output")

    def _account(self, transport: asyncio.Transport, limit: OutputLimit, what: str) -> bool:
        """Report what the client holds to the budget; past ``limit`` disconnect it (True)."""
        size = transport.get_write_buffer_size() + self.held
        self.budget.report(self.session.id, size)
        if not limit.exceeded(size, self.clock()):
            return False
        log.warning("client %s: %d bytes of %s unread: over its limit, disconnected",
                    self.session.peer, size, what)
        self.pool.stats.client_err += 1
        transport.abort()
        return True

    def snapshot(self, now: float) -> ClientSnapshot:
        session, mode = self.session, self.session.mode
        transport = self.transport
        subs = session.subscriptions
        sub, psub, ssub = subs.counts() if subs is not None else (0, 0, 0)
        flags = mode.flag if mode is not None else ("P" if sub or psub or ssub else "N")
        return ClientSnapshot(
            id=session.id, addr=session.peer, laddr=self.laddr, fd=self.fd, name=session.name,
            age=int(now - session.created), idle=int(now - session.last_active),
            flags=flags, sub=sub, psub=psub, ssub=ssub,
            multi=mode.queued() if mode is not None else -1, qbuf=self.parser.pending_bytes,
            omem=(transport.get_write_buffer_size() if transport is not None else 0) + self.held,
            cmd=session.last_command, resp=3 if session.resp3 else 2,
            lib_name=session.lib_name, lib_ver=session.lib_ver,
        )

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session.closing:
            return
        session.last_active = self.clock()
        parser = self.parser
        stats = self.pool.stats
        stats.request_bytes += len(data)
        commands = parser.feed(data, session.authenticated)
        while True:
            stats.requests += len(commands)
            self._run(commands)
            # Before AUTH the parser hands over one command at a time: the next one's limits
            # depend on whether this one authenticated the client (as in Redis).
            if not parser.more or session.closing:
                break
            commands = parser.feed(b"", session.authenticated)
        self.flush()

    def _run(self, commands: list[list[bytes] | ProtocolError]) -> None:
        session = self.session
        run = self.executor.run
        for command in commands:
            if type(command) is list:
                if command:
                    run(self, command)
            else:
                assert isinstance(command, ProtocolError)
                self.fail(command)
                break
            if session.closing:
                break

    # ------------------------------------------------------------ replies

    def flush(self) -> None:
        """Write every settled reply from the head of the queue, in one write."""
        queue = self.queue
        transport = self.transport
        if transport is None:
            queue.clear()
            return
        if queue and queue[0].raw is not None:
            stats = self.pool.stats
            errors, observe, now = stats.command_errors, stats.latency.observe, self.clock()
            slowlog = self.pool.slowlog
            slow = slowlog.threshold
            parts = []
            while queue and queue[0].raw is not None:
                reply = queue.popleft()
                raw = reply.raw
                assert raw is not None
                if raw[0] == 45 or raw[0] == 33:  # '-' or RESP3's '!': an error
                    errors[reply.command] += 1
                waited = now - reply.started
                observe(waited)
                if waited >= slow:  # the slowlog's one comparison on the hot path
                    slowlog.record(reply.command, reply.args, waited, self.session.peer,
                                   self.session.name)
                parts.append(raw)
            out = parts[0] if len(parts) == 1 else b"".join(parts)
            stats.response_bytes += len(out)
            self.held -= len(out)
            transport.write(out)
        if self._account(transport, self.output_limit, "output"):
            return
        if self.flow is not None:
            self.flow.check(len(queue))
        if self.session.closing and not queue:
            transport.close()

    def fail(self, error: ProtocolError) -> None:
        """Answer a protocol error after the replies already due, then close."""
        self.pool.stats.protocol_errors += 1
        self.pool.stats.client_err += 1
        log.info("client %s: protocol error: %s", self.session.peer, error)
        self.queue.append(Reply(self, self.session.last_active, [], error.reply()))
        self.session.closing = True


def _address(name: object) -> str:
    """A socket address as CLIENT LIST shows it: ``ip:port``, or the unix socket's path."""
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return str(name or "unix")
