"""Invisible failover: a shard without a usable master holds its requests instead of failing
them, and sends them to the master ZooKeeper names as soon as it accepts them.

A pool with ``failover_hold`` > 0 (ZooKeeper pools: 5000 ms by default) gives each shard a
``Gate`` (kept across topology changes, by shard name). Every request to the shard then goes
through it:

* **Open**: the request goes to the master's shared connection inside a ``Guard`` that looks
  at the answer first.
* **Closed** — no master named, its connection refused or lost, the master answering
  ``-READONLY``/``-LOADING`` (ZooKeeper named it before its watchdog promoted it), or stalled
  (its oldest request unanswered for ``stall`` seconds: hung, or paused by a handover) —
  requests are held, in the order they were first sent, counting against the client's flow
  control like any outstanding reply; the per-request ``timeout`` does not run on them, the
  hold budget does. Every 50 ms the gate looks again: when the shard's current master (the
  same, back, or a new one from ZooKeeper) answers ``ROLE`` as a master, the gate opens and the
  held requests go out in order. A request held past ``failover_hold`` gets the error it would
  have had without holding.

**The unknown-outcome rule** (the Guard): a request already written to a master that then died
or stopped answering has an unknown outcome. A read (Redis's ``readonly`` flag) is held and
sent again; a write is retried only when a reply proves it did not run — ``-READONLY``,
``-LOADING``, or a connection refused or lost before the write went out — and otherwise the
client gets ``-ERR pyproxy: ... may or may not have been applied``. Nothing is retried blindly.
A read whose answer arrives after the gate closed (from a connection that has just shown it is
no longer the master's) is held and sent again too, so a client's pipeline never sees a read
from before its own held write.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from typing import Protocol

from ..observe.stats import Histogram
from . import errors
from .backend import Backend
from .errors import Failure
from .replies import Waiter
from .session import Session


class ShardRoute(Protocol):
    """Where a shard's requests go now (``pool.ShardRoute``)."""

    @property
    def name(self) -> str: ...

    @property
    def backend(self) -> Backend | None: ...


class Pool(Protocol):
    def route_of(self, shard: str) -> ShardRoute | None: ...

log = logging.getLogger("pyproxy.hold")

CHECK_EVERY = 0.05  # seconds between two looks at a closed gate
ROLE = b"*1\r\n$4\r\nROLE\r\n"
_MASTER = b"*3\r\n$6\r\nmaster\r\n"
_ORDER = itertools.count()  # the send order of every guarded request, across gates


class HoldStats:
    """Per pool: what holding did (read by the metrics)."""

    __slots__ = ("held", "expired", "unknown", "hold_time", "outages")

    def __init__(self) -> None:
        self.held = 0  # requests ever held
        self.expired = 0  # held past the budget: they got the error
        self.unknown = 0  # writes answered "may or may not have been applied"
        self.hold_time = Histogram()  # how long each released request was held
        self.outages: dict[str, float] = {}  # shard -> seconds without a usable master, last


class Block:
    """Requests that must reach the shard back to back (a transaction, a script reload): the
    last one's answer tells the client, the others' are looked at for the proof that nothing
    ran (a ``-READONLY`` queued inside MULTI makes Redis answer EXEC with EXECABORT)."""

    __slots__ = ("frames", "waiters", "proof")

    def __init__(self, block: list[tuple[bytes, Waiter]]):
        self.frames = [frame for frame, _ in block]
        self.waiters = [waiter for _, waiter in block[:-1]]
        self.proof = False

    def parts(self, guard: Guard) -> list[tuple[bytes, Waiter]]:
        self.proof = False
        parts: list[tuple[bytes, Waiter]] = [
            (frame, _Witness(self, waiter))
            for frame, waiter in zip(self.frames[:-1], self.waiters, strict=True)]
        return parts + [(self.frames[-1], guard)]


class _Witness:
    """The waiter of a block's earlier request: passes the reply on, notes a proof."""

    __slots__ = ("block", "waiter")

    def __init__(self, block: Block, waiter: Waiter):
        self.block = block
        self.waiter = waiter

    def settle(self, raw: bytes) -> None:
        if raw.startswith((b"-READONLY", b"-LOADING")) or (
                isinstance(raw, Failure) and not raw.sent):
            self.block.proof = True
        self.waiter.settle(raw)


class Held:
    """A request (or a block) waiting at a closed gate."""

    __slots__ = ("order", "payload", "waiter", "session", "readonly", "since", "reason")

    def __init__(self, order: int, payload: bytes | Block, waiter: Waiter, session: Session,
                 readonly: bool, since: float, reason: bytes):
        self.order, self.payload, self.waiter, self.session = order, payload, waiter, session
        self.readonly, self.since, self.reason = readonly, since, reason

    def __lt__(self, other: Held) -> bool:
        return self.order < other.order


class Gate:
    """One shard's door (see the module docstring)."""

    def __init__(self, pool: Pool, shard: str, budget: float, stall: float, stats: HoldStats):
        self.pool, self.shard, self.budget, self.stall, self.stats = (
            pool, shard, budget, stall, stats)
        self.loop = asyncio.get_running_loop()
        self.closed_at: float | None = None
        self.epoch = 0  # counts closings: a Guard from an earlier epoch saw an older master
        self.queue: list[Held] = []  # by order
        self.timer: asyncio.TimerHandle | None = None
        self.probing = False

    # -- the request path

    def send(self, route: ShardRoute, payload: bytes | Block, waiter: Waiter, session: Session,
             readonly: bool, order: int | None = None, since: float = 0.0) -> None:
        """``payload`` is one request's frame, or a ``Block`` that must go out whole (then
        ``waiter`` is the block's last one: EXEC's)."""
        if order is None:
            order = next(_ORDER)
        backend = route.backend
        why = ("held" if self.closed_at is not None else "no master named" if backend is None
               else f"master {backend.address} stalled" if self.stall
               and backend.stalled(self.stall) else "")
        if why:
            self.close(why)
            self.hold(Held(order, payload, waiter, session, readonly,
                           since or self.loop.time(), errors.no_master(self.shard)))
            return
        assert backend is not None
        guard = Guard(self, order, payload, waiter, session, readonly, since)
        if isinstance(payload, Block):
            backend.send_block(payload.parts(guard), session.id, session.resp3)
        else:
            backend.send(payload, guard, session.id, session.resp3)

    def hold(self, item: Held) -> None:
        if not self.budget or self.loop.time() - item.since >= self.budget:
            self.stats.expired += 1
            item.waiter.settle(item.reason)
            return
        self.stats.held += 1
        bisect.insort(self.queue, item)
        self._look_soon()

    def close(self, why: str) -> None:
        if self.closed_at is None:
            self.closed_at = self.loop.time()
            self.epoch += 1
            log.warning("shard %s: %s; holding its requests (up to %d ms)", self.shard, why,
                        int(self.budget * 1000))
            self._look_soon()

    # -- looking again

    def _look_soon(self) -> None:
        if self.timer is None:
            self.timer = self.loop.call_later(CHECK_EVERY, self._look)

    def _look(self) -> None:
        self.timer = None
        now = self.loop.time()
        keep = []
        for item in self.queue:
            if now - item.since >= self.budget:
                self.stats.expired += 1
                item.waiter.settle(item.reason)
            else:
                keep.append(item)
        self.queue = keep
        if self.closed_at is not None and not self.probing:
            route = self.pool.route_of(self.shard)
            backend = route.backend if route is not None else None
            if backend is not None and not backend.stalled(self.stall or 0.0):
                self.probing = True
                backend.send(ROLE, Probe(self, route), 0, False)  # type: ignore[arg-type]
        if self.closed_at is not None or self.queue:
            self._look_soon()

    def routes_changed(self) -> None:
        """A new topology: look at once (a new master may serve already)."""
        if self.closed_at is not None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.probing = False
            self._look()

    def opened(self, route: ShardRoute) -> None:
        """The master answered ROLE as a master: release the held requests, in order."""
        self.probing = False
        if self.closed_at is not None:
            outage = self.loop.time() - self.closed_at
            self.stats.outages[self.shard] = outage
            assert route.backend is not None
            log.info("shard %s: master %s serves again after %d ms; releasing %d held "
                     "request(s)", self.shard, route.backend.address, int(outage * 1000),
                     len(self.queue))
        self.closed_at = None
        queue, self.queue = self.queue, []
        now = self.loop.time()
        for item in queue:
            self.stats.hold_time.observe(now - item.since)
            current = self.pool.route_of(self.shard)
            if current is None:
                item.waiter.settle(item.reason)
                continue
            self.send(current, item.payload, item.waiter, item.session, item.readonly,
                      item.order, item.since)

    def held(self) -> int:
        return len(self.queue)


class Probe:
    """ROLE on a closed gate's master: "master" opens the gate."""

    __slots__ = ("gate", "route")

    def __init__(self, gate: Gate, route: ShardRoute):
        self.gate = gate
        self.route = route

    def settle(self, raw: bytes) -> None:
        gate = self.gate
        gate.probing = False
        if raw.startswith(_MASTER) and gate.pool.route_of(gate.shard) is self.route:
            gate.opened(self.route)


class Guard:
    """The waiter of a request sent through an open gate: the unknown-outcome rule."""

    __slots__ = ("gate", "order", "payload", "waiter", "session", "readonly", "epoch", "since",
                 "settled")

    def __init__(self, gate: Gate, order: int, payload: bytes | Block, waiter: Waiter,
                 session: Session, readonly: bool, since: float):
        self.gate, self.order, self.payload, self.waiter = gate, order, payload, waiter
        self.session, self.readonly, self.epoch = session, readonly, gate.epoch
        self.since = since  # when it was first held (0: never)
        self.settled = False

    def settle(self, raw: bytes) -> None:
        # The first answer decides (a timed-out request stays in its FIFO: a late reply, or
        # the connection's failure, may come after)
        if self.settled:
            return
        self.settled = True
        gate = self.gate
        payload = self.payload
        if (isinstance(payload, Block) and payload.proof
                and raw.startswith(b"-EXECABORT")):  # refused by a replica at queueing
            gate.close("a transaction was refused by a replica")
            self._again(raw)
            return
        if raw[0] == 45:  # '-': an error, maybe one that proves the request did not run
            if isinstance(raw, Failure):
                if raw.kind != "malformed" and (not raw.sent or self.readonly):
                    gate.close(f"{raw.kind}: {raw.decode(errors='replace').strip()}")
                    self._again(raw)
                    return
                if raw.sent and raw.kind in ("lost", "timeout", "closed"):
                    gate.close(f"{raw.kind} with a write in flight")
                    gate.stats.unknown += 1
                    self.waiter.settle(errors.unknown_outcome(gate.shard, raw))
                    return
            elif raw.startswith((b"-READONLY", b"-LOADING")):
                gate.close(raw.decode(errors="replace").strip())
                self._again(raw)
                return
        elif self.readonly and self.epoch != gate.epoch:
            self._again(raw)  # answered by a master the gate has since given up on
            return
        self.waiter.settle(raw)

    def _again(self, reason: bytes) -> None:
        gate = self.gate
        gate.hold(Held(self.order, self.payload, self.waiter, self.session, self.readonly,
                       self.since or gate.loop.time(), reason))
