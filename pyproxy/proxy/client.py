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

from ..protocol.resp import ProtocolError, RequestParser, element_error
from .flow import FlowControl
from .replies import Flusher, Reply
from .session import Session

if TYPE_CHECKING:
    from .execute import Executor
    from .pool import Pool

log = logging.getLogger("pyproxy.client")

_ids = itertools.count(1)


class Client(asyncio.Protocol):
    __slots__ = ("pool", "executor", "flusher", "transport", "parser", "queue", "dirty",
                 "flow", "session", "clock", "read_at")

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
        self.session = Session(next(_ids), "", authenticated=not config.redis_auth)
        self.clock = asyncio.get_running_loop().time
        self.read_at = 0.0  # when the current read arrived: the start of its requests' latency

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(transport)  # type: ignore[arg-type]  # a Transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.session.peer = (f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple)
                             else str(peer or "unix"))
        self.read_at = self.clock()
        self.pool.clients.add(self)
        self.pool.stats.client_connections_total += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()
        self.session.end()
        self.pool.clients.discard(self)
        self.pool.stats.client_eof += 1

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.write_paused(len(self.queue))

    def resume_writing(self) -> None:
        if self.flow is not None:
            self.flow.write_resumed(len(self.queue))

    def idle_for(self, now: float) -> float:
        """Seconds since the last read, or 0 while a reply is still owed to the client."""
        return 0.0 if self.queue else now - self.read_at

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session.closing:
            return
        self.read_at = self.clock()
        commands = self.parser.feed(data)
        stats = self.pool.stats
        stats.requests += len(commands)
        stats.request_bytes += len(data)
        queue = self.queue
        run = self.executor.run
        for command in commands:
            if type(command) is list:
                if command:
                    depth = len(queue)
                    try:
                        run(self, command)
                    except (TypeError, AttributeError):  # hiredis let a non-bulk element in
                        if all(type(arg) is bytes for arg in command):  # no: a proxy bug
                            log.exception("client %s: failed to serve %.200r", session.peer,
                                          command)
                        self.fail(element_error(command), queue[-1] if len(queue) > depth else None)
                        break
            else:
                assert isinstance(command, ProtocolError)
                self.fail(command)
                break
            if session.closing:
                break
        self.flush()

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
            parts = []
            while queue and queue[0].raw is not None:
                reply = queue.popleft()
                raw = reply.raw
                assert raw is not None
                if raw[0] == 45 or raw[0] == 33:  # '-' or RESP3's '!': an error
                    errors[reply.command] += 1
                observe(now - reply.started)
                parts.append(raw)
            out = parts[0] if len(parts) == 1 else b"".join(parts)
            stats.response_bytes += len(out)
            transport.write(out)
        if self.flow is not None:
            self.flow.check(len(queue))
        if self.session.closing and not queue:
            transport.close()

    def fail(self, error: ProtocolError, reply: Reply | None = None) -> None:
        """Answer a protocol error after the replies already due, then close.

        ``reply`` is the request's own placeholder when it was already queued; settling it
        (rather than queueing another) means no reply is left waiting forever.
        """
        self.pool.stats.protocol_errors += 1
        self.pool.stats.client_err += 1
        log.info("client %s: protocol error: %s", self.session.peer, error)
        if reply is None:
            self.queue.append(Reply(self, self.read_at, error.reply()))
        else:
            reply.settle(error.reply())
        self.session.closing = True
