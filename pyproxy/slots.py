"""Reply slots: where a backend reply (or the proxy's own answer) waits for its client.

Invariants:

* A client's slots sit in its queue in request order; only the head is ever written, so
  replies reach the client in the order it asked, however the backends answer.
* ``settle`` is idempotent: the first reply wins. A slot settled by a timeout or a lost
  connection stays in its backend's FIFO, and the late real reply is swallowed there.
* Settling never writes to a socket. It marks the owner dirty; the first owner marked in
  an event-loop turn schedules one ``flush_dirty()`` for the end of that turn (via the
  scheduler the server installs with ``use_scheduler``), so a client whose pipeline spans
  several shards gets one write per turn, not one per shard. Without a scheduler (unit
  tests) callers run ``flush_dirty()`` themselves.

Pure: no asyncio, no sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .stats import UNKNOWN_INDEX


class Owner(Protocol):
    dirty: bool

    def flush(self) -> None: ...


_dirty: list[Owner] = []
_schedule: Callable[[Callable[[], None]], object] | None = None


def use_scheduler(schedule: Callable[[Callable[[], None]], object] | None) -> None:
    """Install ``loop.call_soon`` (or None to flush only when asked)."""
    global _schedule
    _schedule = schedule


def flush_dirty() -> None:
    """Write out every client that got replies since the last flush."""
    while _dirty:
        owners = _dirty[:]
        _dirty.clear()
        for owner in owners:
            owner.dirty = False
            owner.flush()


class Pending:
    """One request's place in its client's reply queue.

    ``command`` (the command table index) and ``started`` (loop time the request was read)
    feed the per-command error counters and the latency histogram when the reply is written.
    """

    __slots__ = ("owner", "reply", "deadline", "command", "started")

    def __init__(self, owner: Owner, started: float, reply: bytes | None = None):
        self.owner = owner
        self.reply = reply
        self.deadline = 0.0
        self.command = UNKNOWN_INDEX
        self.started = started

    def settle(self, raw: bytes) -> None:
        if self.reply is None:
            self.reply = raw
            owner = self.owner
            if not owner.dirty:
                owner.dirty = True
                if not _dirty and _schedule is not None:
                    _schedule(flush_dirty)
                _dirty.append(owner)


class FanOut:
    """A multi-key request split over shards: merges when the last part answers."""

    __slots__ = ("slot", "replies", "left", "merge")

    def __init__(self, slot: Pending, parts: int, merge: Callable[[list[bytes]], bytes]):
        self.slot = slot
        self.replies: list[bytes | None] = [None] * parts
        self.left = parts
        self.merge = merge

    def part(self, index: int) -> Part:
        return Part(self, index)


class Part:
    """The waiter a backend holds for one shard's share of a FanOut."""

    __slots__ = ("fan", "index", "deadline")

    def __init__(self, fan: FanOut, index: int):
        self.fan = fan
        self.index = index
        self.deadline = 0.0

    def settle(self, raw: bytes) -> None:
        fan = self.fan
        if fan.replies[self.index] is None:
            fan.replies[self.index] = raw
            fan.left -= 1
            if fan.left == 0:
                fan.slot.settle(fan.merge(fan.replies))  # type: ignore[arg-type]


class Swallow:
    """A waiter whose reply nobody wants (the proxy's own AUTH/SELECT on connect)."""

    __slots__ = ("deadline", "on_error")

    def __init__(self, on_error: Callable[[bytes], None]):
        self.deadline = 0.0
        self.on_error = on_error

    def settle(self, raw: bytes) -> None:
        if raw[:1] == b"-":
            self.on_error(raw)
