"""One client connection's state: who it is, what it said, and which mode it is in.

The ``Client`` owns the transport, the parser and the ordered reply queue; everything a
command can read or change about "this connection" lives here instead, so local commands
and the executor get a ``Session``, never the whole ``Client``.

* Identity and settings: ``id`` (CLIENT ID), ``peer``, ``name`` (CLIENT SETNAME),
  ``lib_name``/``lib_ver`` (CLIENT SETINFO), ``authenticated`` (AUTH against
  ``redis_auth``), ``resp3`` (HELLO 3).
* ``closing``: reply to what was read, then close (QUIT, or a protocol error).
* ``pin``: a pinned backend connection to one shard (``pool.Pin``) while the client WATCHes:
  its requests to that shard go there, so Redis sees them on the connection that watches.
* ``subscriptions`` (pub/sub names) and ``push``, which writes a message to the client at once,
  outside the ordered replies (the client sets it).
* ``mode``: ``None`` for ordinary command-by-command service, or a ``Mode`` that sees every
  command first. A per-connection mode — a transaction being queued, a RESP2 client in
  subscribed mode, a client blocked in BLPOP — is a ``Mode`` subclass in its own module,
  made with whatever it needs (the executor, this session) and installed here; it returns
  True from ``intercept`` for the commands it answers, and leaves the rest to ordinary
  dispatch.

Pure: no asyncio, no sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..protocol.commands import Command
from .replies import Reply, Waiter


class Listening(Protocol):
    """A client's pub/sub subscriptions (``pubsub.Subscriptions`` is the one implementation)."""

    def counts(self) -> tuple[int, int, int]: ...

    def forget(self) -> None: ...


class Pinned(Protocol):
    """A pinned backend connection to one shard (``route.Pin`` is the one implementation)."""

    shard: str
    reset: list[bytes]  # what release() queues first to make the connection neutral again

    def send(self, payload: bytes, waiter: Waiter) -> None: ...

    def send_block(self, block: list[tuple[bytes, Waiter]]) -> None: ...

    def hold(self) -> None: ...  # a request will be sent on it later: release() waits

    def unhold(self) -> None: ...

    def release(self) -> None: ...


class Mode:
    """A per-connection mode: it sees each command (already known, with a valid arity, from
    an authenticated client) before ordinary dispatch."""

    flag = "N"  # CLIENT LIST's flags letter for a client in this mode

    def intercept(self, command: Command, args: list[bytes], reply: Reply) -> bool:
        """Serve ``args`` (settling ``reply``) and return True, or return False to let the
        executor dispatch it as usual."""
        raise NotImplementedError

    def rejected(self) -> None:
        """The executor answered a command with an error before the mode saw it (unknown
        command, wrong arity), as Redis does before queueing."""

    def queued(self) -> int:
        """Commands queued (CLIENT LIST's ``multi``), or -1 when the mode queues nothing."""
        return -1

    def end(self) -> None:
        """The connection closed while in this mode: release what the mode holds."""


class Session:
    __slots__ = ("id", "peer", "name", "lib_name", "lib_ver", "authenticated", "resp3",
                 "closing", "mode", "pin", "written", "subscriptions", "push", "created",
                 "last_active", "last_command")

    def __init__(self, session_id: int, peer: str, authenticated: bool, now: float = 0.0):
        self.id = session_id
        self.peer = peer
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.authenticated = authenticated
        self.resp3 = False  # HELLO 3: replies then come from RESP3 backend connections
        self.closing = False
        self.mode: Mode | None = None
        self.pin: Pinned | None = None  # a pinned connection (WATCH), for pin.shard only
        self.written: set[str] = set()  # shards sent a command that may write (for WAIT)
        self.subscriptions: Listening | None = None  # pub/sub names, once it subscribed
        self.push: Callable[[bytes], None] = _nowhere  # writes a push to the client now
        self.created = now  # loop times, for CLIENT LIST
        self.last_active = now
        self.last_command = "NULL"  # as CLIENT LIST shows a client that sent nothing yet

    def unpin(self) -> None:
        pin, self.pin = self.pin, None
        if pin is not None:
            pin.release()

    def end(self) -> None:
        """The connection is gone: the mode and the pin release what they hold."""
        mode, self.mode = self.mode, None
        if mode is not None:
            mode.end()
        self.unpin()
        subscriptions, self.subscriptions = self.subscriptions, None
        if subscriptions is not None:
            subscriptions.forget()


def _nowhere(raw: bytes) -> None:
    """A session not attached to a connection drops its pushes."""
