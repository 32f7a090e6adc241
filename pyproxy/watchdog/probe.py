"""A tiny blocking RESP client for the watchdog's own redis, and the health probe.

Why not redis-py: it is not a runtime dependency, and the watchdog needs only a handful of
commands with hard deadlines. Replies are parsed by hiredis.

Invariants:

* Every call has one deadline (``timeout`` seconds) covering connect, send and every reply.
  A connection that missed a deadline, or broke, is closed at once: its reply stream can no
  longer be matched to requests. The next call connects anew.
* ``post`` writes commands without reading replies. The bytes stay in the server's socket
  buffer, so a SIGSTOPped redis executes them when it wakes up — that is how a fence reaches
  a hung master (see ``daemon``).
* Error replies are raised as ``RedisError`` only after all replies of a pipeline were read,
  so the connection stays usable.
* ``run_id`` is read once per connection (``INFO server``): a new run_id means the redis
  process restarted, possibly empty, even if no health check failed in between.

Used by one thread at a time (the daemon's control loop); not thread-safe.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis

from .. import address as addresses

Command = Sequence[str | int | bytes]


class RedisError(Exception):
    """The redis did not answer in time, the connection broke, or it replied with an error."""


class NotSent(RedisError):
    """Connecting or sending failed: the redis cannot have received the commands."""


class ReplyError(RedisError):
    """The redis answered with an error reply."""


def encode(command: Command) -> bytes:
    parts = [f"*{len(command)}\r\n".encode()]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Conn:
    """One connection to ``host:port``, reconnected on demand."""

    def __init__(self, address: str, timeout: float, password: str | None = None,
                 db: int = 0) -> None:
        self.address = address
        self.password = password  # AUTH first on every new connection
        self.db = db  # and SELECT, when not 0
        self.host, self.port = addresses.parse(address)
        self.timeout = timeout
        self.run_id: str | None = None
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.run_id = None
        self._reader = hiredis.Reader()

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), _left(deadline))
            except OSError as exc:
                raise NotSent(f"connect {self.address}: {_reason(exc)}") from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
        return self._sock

    def _setup(self, fresh: bool) -> list[Command]:
        """AUTH (when there is a password) and SELECT (when not db 0) in front of the first
        commands of a new connection: sent in the same write, so a fence still reaches a hung
        redis's socket at once."""
        if not fresh:
            return []
        setup: list[Command] = [("AUTH", self.password)] if self.password is not None else []
        return setup + ([("SELECT", self.db)] if self.db else [])

    def post(self, *commands: Command) -> None:
        """Send without waiting for replies; the connection is then closed (unread replies
        would desynchronise it)."""
        deadline = time.monotonic() + self.timeout
        try:
            fresh = self._sock is None
            self._send(self._connect(deadline), deadline, [*self._setup(fresh), *commands])
        finally:
            self.close()

    def pipeline(self, *commands: Command) -> list[Any]:
        """Send ``commands`` in one write and return their replies, in order."""
        deadline = time.monotonic() + self.timeout
        try:
            setup = self._setup(self._sock is None)
            sock = self._connect(deadline)
            if self.run_id is None:
                commands = (("INFO", "server"), *commands)
            self._send(sock, deadline, [*setup, *commands])
            for command in setup:
                if isinstance(reply := self._read(sock, deadline), hiredis.ReplyError):
                    raise ReplyError(f"{self.address}: {command[0]!s} refused: {reply}")
            replies = [self._read(sock, deadline) for _ in commands]
        except (OSError, RedisError, hiredis.ProtocolError) as exc:
            self.close()
            if isinstance(exc, RedisError):
                raise
            raise RedisError(f"{self.address}: {_reason(exc)}") from None
        if self.run_id is None:
            self.run_id = _run_id(replies.pop(0))
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ReplyError(f"{self.address}: {reply}")
        return replies

    def _send(self, sock: socket.socket, deadline: float, commands: Sequence[Command]) -> None:
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(b"".join(encode(c) for c in commands))
        except OSError as exc:
            raise NotSent(f"send to {self.address}: {_reason(exc)}") from None

    def call(self, *command: str | int | bytes) -> Any:
        return self.pipeline(command)[0]

    def _read(self, sock: socket.socket, deadline: float) -> Any:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            sock.settimeout(_left(deadline))
            data = sock.recv(65536)
            if not data:
                raise RedisError(f"{self.address}: connection closed by the server")
            self._reader.feed(data)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _run_id(info: Any) -> str:
    if isinstance(info, bytes):
        for line in info.decode(errors="replace").splitlines():
            if line.startswith("run_id:"):
                return line[7:].strip()
    raise RedisError(f"INFO server has no run_id: {str(info)[:80]}")


# --------------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class Health:
    """One successful health check: what the redis is right now."""

    role: str  # "master" or "slave" (ROLE's words)
    master: str | None  # "host:port" it replicates from (replicas only)
    offset: int  # replication offset: the master's, or what a replica has processed
    run_id: str
    master_link_up: bool = False  # a replica whose link to its master is up (ROLE "connected")


def parse_role(reply: Any) -> tuple[str, str | None, int]:
    """ROLE -> (role, master address, offset); RedisError for anything but master/slave."""
    try:
        role = reply[0].decode()
        if role == "master":
            return role, None, int(reply[1])
        if role == "slave":
            return role, f"{reply[1].decode()}:{int(reply[2])}", int(reply[4])
    except (TypeError, IndexError, ValueError, AttributeError):
        pass
    raise RedisError(f"unexpected ROLE reply {str(reply)[:80]}")


def check(conn: Conn) -> Health:
    """PING + ROLE in one round trip; RedisError if either is missing or wrong."""
    pong, role_reply = conn.pipeline(("PING",), ("ROLE",))
    if pong != b"PONG":
        conn.close()
        raise RedisError(f"PING answered {pong!r}")
    role, master, offset = parse_role(role_reply)
    assert conn.run_id is not None
    link_up = role == "slave" and role_reply[3] == b"connected"
    return Health(role, master, offset, conn.run_id, link_up)
