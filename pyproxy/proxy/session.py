"""One client connection's state: who it is, what it said, and which mode it is in.

The ``Client`` owns the transport, the parser and the ordered reply queue; everything a
command can read or change about "this connection" lives here instead, so local commands
and the executor get a ``Session``, never the whole ``Client``.

* Identity and settings: ``id`` (CLIENT ID), ``peer``, ``name`` (CLIENT SETNAME),
  ``lib_name``/``lib_ver`` (CLIENT SETINFO), ``authenticated`` (AUTH against
  ``redis_auth``), ``resp3`` (HELLO 3).
* ``closing``: reply to what was read, then close (QUIT, or a protocol error).
* ``mode``: ``None`` for ordinary command-by-command service, or a ``Mode`` that sees every
  command first. A per-connection mode — a transaction being queued, a RESP2 client in
  subscribed mode, a client blocked in BLPOP — is a ``Mode`` subclass in its own module,
  made with whatever it needs (the executor, this session) and installed here; it returns
  True from ``intercept`` for the commands it answers, and leaves the rest to ordinary
  dispatch.

Pure: no asyncio, no sockets.
"""

from __future__ import annotations

from ..protocol.commands import Command
from .replies import Reply


class Mode:
    """A per-connection mode: it sees each command (already known, with a valid arity, from
    an authenticated client) before ordinary dispatch."""

    def intercept(self, command: Command, args: list[bytes], reply: Reply) -> bool:
        """Serve ``args`` (settling ``reply``) and return True, or return False to let the
        executor dispatch it as usual."""
        raise NotImplementedError

    def end(self) -> None:
        """The connection closed while in this mode: release what the mode holds."""


class Session:
    __slots__ = ("id", "peer", "name", "lib_name", "lib_ver", "authenticated", "resp3",
                 "closing", "mode")

    def __init__(self, session_id: int, peer: str, authenticated: bool):
        self.id = session_id
        self.peer = peer
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.authenticated = authenticated
        self.resp3 = False  # HELLO 3: replies then come from RESP3 backend connections
        self.closing = False
        self.mode: Mode | None = None

    def end(self) -> None:
        """The connection is gone: let the mode release what it holds."""
        mode, self.mode = self.mode, None
        if mode is not None:
            mode.end()
