"""File descriptors: a reserve that backend connections never have to fight clients for.

Every client and every backend connection is a descriptor, and the process has
``RLIMIT_NOFILE`` of them (the command line raises the soft limit to the hard one). A flood of
clients used to take them all, and then a client already connected got "Too many open files"
for its next backend connection (issue 15, finding 11). Now, with ``limit`` the soft limit::

    reserve  = 32                                            stdio, the event loop, listeners,
                                                             log, ZooKeeper, exporters
             + Σ pools  backlog                              sockets accepted in one loop turn,
                                                             before each one can be refused
             + Σ pools  2 × backends × server_connections    shared connections (a RESP2 and a
                                                             RESP3 group per backend)
    headroom = Σ pools  backends × min(pinned_connections, 16)   pinned connections (WATCH,
                                                             blocking calls) no flood can take

    a client is admitted         while  clients + max(pinned, headroom) < limit − reserve
    a pinned connection opens    while  clients + pinned                < limit − reserve

``backends`` are the masters a pool routes to now (the count follows the topology);
``clients`` and ``pinned`` are what is open now, over every pool of the process.

Invariants:

* A client that is not admitted gets Redis's ``-ERR max number of clients reached`` and is
  closed before it joins its pool (``server.LimitedClient``): it is never served half.
* The shared connections of every backend always find a descriptor, whatever the clients do;
  so do up to ``headroom`` pinned connections. Past that, pinned connections and new clients
  share what is left, and a lease that finds nothing left is refused as when
  ``pinned_connections`` are all in use (nothing is sent).
* With no limit (``RLIM_INFINITY``, or ``limit=None`` in unit tests) everything is admitted.
* A topology that adds backends while the proxy is full takes their reserve from the clients
  still to come; clients already in are never closed for it (the 32 cover the moment).

Pure bookkeeping on the event loop; ``pinned`` is kept by ``backend.Backend``.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Sized
from typing import Protocol

from ..config import PoolConfig

log = logging.getLogger("pyproxy.descriptors")

BASE_RESERVE = 32  # what the process holds besides clients and backends (Redis keeps 32 too)
PINNED_HEADROOM = 16  # pinned connections per backend that always find a descriptor
_REFUSING_LOG_EVERY = 30.0  # seconds between two "refusing clients" lines


class Counted(Protocol):
    """A pool as the descriptors see it."""

    @property
    def config(self) -> PoolConfig: ...

    @property
    def backends(self) -> Sized: ...

    @property
    def clients(self) -> Sized: ...


class Descriptors:
    __slots__ = ("limit", "pools", "pinned", "refusing_logged")

    def __init__(self, limit: int | None):
        self.limit = limit  # None: no limit
        self.pools: list[Counted] = []
        self.pinned = 0  # pinned backend connections open (leased or idle), every pool
        self.refusing_logged = float("-inf")  # loop time of the last "refusing" line

    @classmethod
    def of_process(cls) -> Descriptors:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return cls(None if soft == resource.RLIM_INFINITY else soft)

    def reserve(self) -> int:
        return BASE_RESERVE + sum(
            p.config.backlog + 2 * len(p.backends) * p.config.server_connections
            for p in self.pools)

    def headroom(self) -> int:
        return sum(len(p.backends) * min(p.config.pinned_connections, PINNED_HEADROOM)
                   for p in self.pools)

    def clients(self) -> int:
        return sum(len(p.clients) for p in self.pools)

    def room(self) -> int | None:
        """Descriptors for clients and pinned connections, or None without a limit."""
        return None if self.limit is None else self.limit - self.reserve()

    def admits_client(self, now: float) -> bool:
        room = self.room()
        if room is None or self.clients() + max(self.pinned, self.headroom()) < room:
            return True
        if now - self.refusing_logged >= _REFUSING_LOG_EVERY:
            self.refusing_logged = now
            log.warning("refusing new clients: %d clients and %d pinned connections open, "
                        "open files limit %d, %d kept for backends", self.clients(),
                        self.pinned, self.limit, self.reserve() + self.headroom())
        return False

    def admits_pinned(self) -> bool:
        room = self.room()
        return room is None or self.clients() + self.pinned < room

    def describe(self) -> str:
        """One line for the start-up log."""
        room = self.room()
        if room is None:
            return "open files: no limit"
        headroom = self.headroom()
        return (f"open files limit {self.limit}: {self.reserve()} kept for backends and the "
                f"process, {headroom} for pinned connections, {max(room - headroom, 0)} "
                f"for clients")
