"""Reply placeholders: where a backend reply (or the proxy's own answer) waits for its client.

Invariants:

* A client's ``Reply`` objects sit in its queue in request order; only the head is ever
  written, so replies reach the client in the order it asked, however the backends answer.
* ``settle`` is idempotent: the first reply wins. A reply settled by a timeout or a lost
  connection may stay in its backend's FIFO; the late real reply is swallowed there.
* Settling never writes to a socket. It marks the owner dirty with its ``Flusher``; the first
  owner marked in an event-loop turn schedules one ``Flusher.flush`` for the end of that turn,
  so a client whose pipeline spans several shards gets one write per turn, not one per
  shard. A ``Flusher`` without a scheduler (unit tests) flushes only when asked. An owner
  whose flush raises (a bug) is closed, so that its client never reads a reply in another's
  place; the other owners of the turn are flushed all the same.

Anything with ``settle(raw)`` can wait on a backend (a ``Waiter``): a ``Reply``, one part of a
fan-out (``fanout.Part``), or a ``Swallow`` for the proxy's own requests.

Pure: no asyncio, no sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ..observe.stats import UNKNOWN_INDEX

log = logging.getLogger("pyproxy.replies")


class Waiter(Protocol):
    def settle(self, raw: bytes) -> None: ...


class Owner(Protocol):
    """The client a reply belongs to."""

    dirty: bool
    flusher: Flusher
    held: int  # bytes of settled replies not yet written (flow control, output limits)

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Flusher:
    """Coalesces client writes: every owner that got replies this loop turn, flushed once."""

    __slots__ = ("owners", "schedule")

    def __init__(self, schedule: Callable[[Callable[[], None]], object] | None = None):
        self.owners: list[Owner] = []
        self.schedule = schedule  # loop.call_soon, or None to flush only when asked

    def mark(self, owner: Owner) -> None:
        if not self.owners and self.schedule is not None:
            self.schedule(self.flush)
        self.owners.append(owner)

    def flush(self) -> None:
        owners = self.owners
        while owners:
            batch = owners[:]
            owners.clear()
            for owner in batch:
                owner.dirty = False
                try:
                    owner.flush()
                except Exception:  # a bug: this client's replies are in doubt, not the others'
                    log.exception("writing a client's replies failed; closing that client")
                    owner.close()


class Reply:
    """One request's place in its client's reply queue.

    ``command`` (the command table index) and ``started`` (loop time the request was read)
    feed the per-command error counters and the latency histogram when the reply is written;
    ``args`` (the request as parsed) is what SLOWLOG shows of a slow one.
    """

    __slots__ = ("owner", "raw", "command", "started", "args")

    def __init__(self, owner: Owner, started: float, args: list[bytes],
                 raw: bytes | None = None):
        self.owner = owner
        self.raw = raw
        self.command = UNKNOWN_INDEX
        self.started = started
        self.args = args

    def settle(self, raw: bytes) -> None:
        if self.raw is None:
            self.raw = raw
            owner = self.owner
            owner.held += len(raw)
            if not owner.dirty:
                owner.dirty = True
                owner.flusher.mark(owner)


class Swallow:
    """A waiter whose reply nobody wants (the proxy's own AUTH/SELECT on connect); an error
    reply goes to ``on_error``."""

    __slots__ = ("on_error",)

    def __init__(self, on_error: Callable[[bytes], None]):
        self.on_error = on_error

    def settle(self, raw: bytes) -> None:
        if raw[:1] == b"-":
            self.on_error(raw)
