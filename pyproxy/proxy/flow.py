"""Flow control for one client: stop reading while it has too much outstanding.

A client that pipelines faster than the shards answer, or that sends requests but does not
read its replies, must not make the proxy hold an unbounded backlog for it. ``FlowControl``
pauses reading from the client's transport while

* more than ``pause_above`` replies are outstanding (requests read whose replies were not
  yet written), or
* the transport's write buffer is above its high-water mark (asyncio's ``pause_writing``:
  the client is not reading what it was sent);

and resumes once both are clear again: outstanding replies below ``resume_below`` (the gap
keeps it from flapping) and the write buffer drained (``resume_writing``). While reading is
paused the kernel's socket buffer fills and TCP pushes back on the client, so memory per
client stays bounded by these marks.

``check`` is called after every read and every flush; it costs one comparison when nothing
changes. Pure: talks to the transport only through ``pause_reading``/``resume_reading``.

``OutputLimit`` and ``MemoryBudget`` are the bounds in bytes: a client whose unread output
(replies, or pub/sub messages, which cannot be paused at the source) passes its limit is
disconnected, as Redis does; past the proxy-wide cap new requests are refused with ``-OOM``
until clients read.
"""

from __future__ import annotations

from typing import Protocol

PAUSE_ABOVE = 8192  # outstanding replies before the proxy stops reading from a client
RESUME_BELOW = 1024


class Reading(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class FlowControl:
    __slots__ = ("transport", "paused", "write_blocked", "pause_above", "resume_below")

    def __init__(self, transport: Reading, pause_above: int = PAUSE_ABOVE,
                 resume_below: int = RESUME_BELOW):
        self.transport = transport
        self.paused = False  # reading is paused now
        self.write_blocked = False  # between pause_writing and resume_writing
        self.pause_above = pause_above
        self.resume_below = resume_below

    def check(self, outstanding: int) -> None:
        if self.paused:
            if not self.write_blocked and outstanding < self.resume_below:
                self.paused = False
                self.transport.resume_reading()
        elif outstanding > self.pause_above or self.write_blocked:
            self.paused = True
            self.transport.pause_reading()

    def write_paused(self, outstanding: int) -> None:
        self.write_blocked = True
        self.check(outstanding)

    def write_resumed(self, outstanding: int) -> None:
        self.write_blocked = False
        self.check(outstanding)


class OutputLimit:
    """Redis's ``client-output-buffer-limit``: a client whose unread output passes ``hard``
    bytes, or stays above ``soft`` for ``soft_seconds``, is to be disconnected (0 = no such
    limit)."""

    __slots__ = ("hard", "soft", "soft_seconds", "over_since")

    def __init__(self, hard: int, soft: int, soft_seconds: float):
        self.hard, self.soft, self.soft_seconds = hard, soft, soft_seconds
        self.over_since: float | None = None

    def exceeded(self, size: int, now: float) -> bool:
        if self.hard and size > self.hard:
            return True
        if self.soft and size > self.soft:
            if self.over_since is None:
                self.over_since = now
            return now - self.over_since > self.soft_seconds
        self.over_since = None
        return False


class MemoryBudget:
    """The proxy-wide cap on reply bytes held for clients (``proxy_memory_limit``; 0 = none).

    Each client reports what it holds now (its transport's write buffer plus settled replies
    not yet written) after every write; past the cap new requests get ``-OOM`` until the
    clients have read enough.
    """

    __slots__ = ("limit", "used", "held_by")

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.held_by: dict[int, int] = {}  # client id -> what it reported last

    def report(self, client_id: int, size: int) -> None:
        before = self.held_by.get(client_id, 0)
        if size != before:
            self.used += size - before
            if size:
                self.held_by[client_id] = size
            else:
                self.held_by.pop(client_id, None)

    @property
    def exceeded(self) -> bool:
        return bool(self.limit) and self.used > self.limit
