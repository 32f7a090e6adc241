"""Slots on the move: how the proxy serves the slots of a migration (``routing.table``).

A pool's routes give the slots of its migration a route of their own, by the migration's state:

* ``Preparing`` (state ``prepare``): every request for those slots waits, in the ``Pause``
  the pool keeps for the migration across topology changes, until ZooKeeper says ``moving``
  (or the migration is gone); then each is routed again, by its key, through the routes in
  force, in the order they came. One that waited ``PREPARE_HOLD`` seconds gets ``-TRYAGAIN``
  with nothing run. Together with ``Pool.drained`` this is the first phase of the two: the
  proxy acknowledges the state in its ZooKeeper node only once every request it had sent to
  the source is answered, so when every proxy has acknowledged, no request for those slots
  is on its way to the source, and none will go there again.
* ``Moving`` (state ``moving``): every request first moves its keys of those slots from the
  source's master to the target's — ``MIGRATE host port "" db timeout KEYS k ...``, atomic on
  the source (the keys are deleted there once the target holds them, TTLs kept) — and then
  runs on the target. The route's ``name`` is the target's: that is where commands run (WAIT,
  WATCH pins and transactions go by it). What MIGRATE answers decides:

  - ``NOKEY`` (nothing to move: moved already, or no such key) or ``OK``: the command runs
    on the target.
  - ``BUSYKEY``: the target has a key the source has too — a move whose delete was lost in a
    failover of the source. The target's copy wins (every request since that move ran
    there): the source's copies of the request's keys are deleted, then the command runs.
  - Anything else (the target unreachable, a timeout): the client gets ``-TRYAGAIN`` and
    its command has not run. Moving again is harmless (a key is on one side, or on both and
    the target wins), so MIGRATE and that DEL go to the source as reads (``readonly``): a
    failover hold sends them again instead of calling their outcome unknown.

Invariant: while a migration is ``moving``, no proxy runs a command on a key of its slots
anywhere but on the target, and only after moving the key there. Commands whose keys are in
the migration's slots and in the source's other slots at once (two shards now) are refused by
the strategies with ``-TRYAGAIN``, nothing sent.

Blocking calls: one on a slot being prepared is parked (``Pause.park``) and starts once the
slot moves; one already waiting on the source when its slot starts to migrate is taken back
(``blocking``: ``CLIENT UNBLOCK ... TIMEOUT``, which proves nothing was popped) and waits
again where its keys now go. A WATCH on a slot being prepared gets ``-TRYAGAIN`` (the phase
lasts about a second).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import hiredis

from ..observe.snapshot import MigrationSnapshot
from ..protocol import commands
from ..protocol.resp import encode_command
from ..routing.hashing import make_slotter
from ..routing.table import MOVING, PREPARE, Migration, RoutingTable
from . import errors
from .errors import Failure, Unroutable
from .replies import Waiter
from .route import Pin, ShardRoute, one_shard
from .session import Pinned, Session

if TYPE_CHECKING:
    from ..routing.routes import Routes

PREPARE_HOLD = 10.0  # seconds a request waits for a prepared migration to start moving
_KEYED = frozenset((commands.KEY, commands.SAME, commands.EVAL, commands.SPLIT,
                    commands.BLOCKING, commands.TRANSACTION))
_MOVED = (b"+OK\r\n", b"+NOKEY\r\n")


class MigrationStats:
    """Per pool: what serving migrating slots did (read by the metrics)."""

    __slots__ = ("moves", "busy", "move_errors", "paused", "pause_expired")

    def __init__(self) -> None:
        self.moves = 0  # MIGRATEs sent for requests
        self.busy = 0  # BUSYKEY answers: stale source copies deleted
        self.move_errors = 0  # requests answered -TRYAGAIN because their keys did not move
        self.paused = 0  # requests that waited for a prepared migration
        self.pause_expired = 0  # ... past PREPARE_HOLD

    def snapshot(self) -> MigrationSnapshot:
        return MigrationSnapshot(moves=self.moves, busy=self.busy, move_errors=self.move_errors,
                                 paused=self.paused, pause_expired=self.pause_expired)


def keys_in(frames: Iterable[bytes], wanted: Callable[[bytes], bool]) -> list[bytes]:
    """The keys the requests in ``frames`` name that ``wanted`` picks, each once, in order."""
    reader = hiredis.Reader()
    for frame in frames:
        reader.feed(frame)
    found: dict[bytes, None] = {}
    while (args := reader.gets()) is not False:
        command = commands.lookup(args[0])
        if command is None or command.kind not in _KEYED:
            continue
        try:
            positions = command.key_positions(args)
        except (KeyError, IndexError, ValueError):
            continue  # Redis will answer the bad arguments
        for position in positions:
            if 0 < position < len(args) and wanted(args[position]):
                found[args[position]] = None
    return list(found)


def slot_filter(table: RoutingTable, hash_tag: bytes | None,
                migration: Migration) -> Callable[[bytes], bool]:
    """``key -> is it in the migration's slots``."""
    inside = bytearray(table.modulus)
    for start, end in migration.slots:
        inside[start : end + 1] = b"\x01" * (end - start + 1)
    slot_of = make_slotter(hash_tag, table.modulus, table.hash)
    return lambda key: bool(inside[slot_of(key)])


class Moving(ShardRoute):
    """The route of the slots moving from ``source`` to ``target`` (see the module)."""

    __slots__ = ("source", "target", "migration", "moves", "prefix", "counters")
    migrating = MOVING

    def __init__(self, source: ShardRoute, target: ShardRoute, migration: Migration,
                 moves: Callable[[bytes], bool], prefix: list[bytes],
                 counters: MigrationStats):
        super().__init__(target.index, target.name, target.backend, target.stats,
                         target.pinned_limit, None)
        self.source, self.target, self.migration = source, target, migration
        self.moves = moves  # key -> is it one of the migration's
        self.prefix = prefix  # MIGRATE host port "" db timeout [AUTH pw], then KEYS ...
        self.counters = counters

    def send(self, payload: bytes, waiter: Waiter, session: Session,
             readonly: bool = False) -> None:
        pin = self._pin(session)
        if pin is None:
            self._after_move((payload,), session, [waiter], None,
                             lambda: self.target.send(payload, waiter, session, readonly))
        else:
            self._after_move((payload,), session, [waiter], pin,
                             lambda: pin.send(payload, waiter))

    def send_block(self, block: list[tuple[bytes, Waiter]], session: Session) -> None:
        frames, waiters = [frame for frame, _ in block], [waiter for _, waiter in block]
        pin = self._pin(session)
        if pin is None:
            self._after_move(frames, session, waiters, None,
                             lambda: self.target.send_block(block, session))
        else:
            self._after_move(frames, session, waiters, pin, lambda: pin.send_block(block))

    def pin(self, session: Session, reset: list[bytes], blocking: bool = False) -> Pin:
        return self.target.pin(session, reset, blocking)

    def send_pinned(self, pin: Pin, payload: bytes, waiter: Waiter) -> None:
        self._after_move((payload,), None, [waiter], pin, lambda: pin.send(payload, waiter))

    def _pin(self, session: Session) -> Pinned | None:
        """The session's pin on the target, taken now: by the time the keys have moved the
        session may have let it go (EXEC right after its block), so the block holds it."""
        pin = session.pin
        return pin if pin is not None and pin.shard == self.target.name else None

    def _after_move(self, frames: Iterable[bytes], session: Session | None,
                    waiters: list[Waiter], pin: Pinned | None,
                    then: Callable[[], None]) -> None:
        keys = keys_in(frames, self.moves)
        if not keys:
            then()
            return
        if self.target.backend is None:
            self._failed(waiters, errors.no_master(self.target.name))
            return
        self.counters.moves += 1
        frame = encode_command([*self.prefix, b"KEYS", *keys])
        if pin is not None:
            pin.hold()  # released only once the request is on it (see Pin)
        move = _Move(self, keys, session, waiters, pin, then)
        if session is None:  # a pinned call's (blocking): on the source's shared connection
            source = self.source.backend
            if source is None:
                move.fail(errors.no_master(self.source.name))
            else:
                source.send(frame, move)
        else:
            self.source.send(frame, move, session, readonly=True)

    def _failed(self, waiters: list[Waiter], why: bytes) -> None:
        self.counters.move_errors += 1
        reply = errors.not_moved(self.source.name, self.target.name, why)
        for waiter in waiters:
            waiter.settle(reply)


class _Move:
    """The waiter of one MIGRATE (and of the DEL after a BUSYKEY)."""

    __slots__ = ("route", "keys", "session", "waiters", "pin", "then", "deleting")

    def __init__(self, route: Moving, keys: list[bytes], session: Session | None,
                 waiters: list[Waiter], pin: Pinned | None, then: Callable[[], None]):
        self.route, self.keys, self.session = route, keys, session
        self.waiters, self.pin, self.then = waiters, pin, then
        self.deleting = False

    def settle(self, raw: bytes) -> None:
        route = self.route
        if self.deleting:
            if raw.startswith(b":"):
                self.done()
            else:
                self.fail(raw)
        elif raw in _MOVED:
            self.done()
        elif raw.startswith(b"-") and b"BUSYKEY" in raw[:64] and not isinstance(raw, Failure):
            route.counters.busy += 1
            self.deleting = True
            delete = encode_command([b"DEL", *self.keys])
            if self.session is not None:
                route.source.send(delete, self, self.session, readonly=True)
            elif route.source.backend is not None:
                route.source.backend.send(delete, self)
            else:
                self.fail(errors.no_master(route.source.name))
        else:
            self.fail(raw)

    def done(self) -> None:
        self.then()
        if self.pin is not None:
            self.pin.unhold()

    def fail(self, why: bytes) -> None:
        self.route._failed(self.waiters, why)
        if self.pin is not None:
            self.pin.unhold()


class Pause:
    """Requests for the slots of a migration being prepared, in the order they came, and
    blocking calls parked until it moves (``park``)."""

    __slots__ = ("loop", "migration", "counters", "held", "parked", "timer", "expired")

    def __init__(self, migration: Migration, counters: MigrationStats):
        self.loop = asyncio.get_running_loop()
        self.migration = migration
        self.counters = counters
        # (payload or block, waiter(s), session, readonly, since)
        self.held: deque[tuple[bytes | list[tuple[bytes, Waiter]], list[Waiter], Session,
                               bool, float]] = deque()
        self.parked: deque[tuple[Callable[[Routes[ShardRoute] | None], None], float]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.expired = errors.migration_not_started(PREPARE_HOLD)

    def hold(self, request: bytes | list[tuple[bytes, Waiter]], waiters: list[Waiter],
             session: Session, readonly: bool) -> None:
        self.counters.paused += 1
        self.held.append((request, waiters, session, readonly, self.loop.time()))
        self._arm()

    def park(self, resume: Callable[[Routes[ShardRoute] | None], None]) -> None:
        """``resume(routes)`` once the slots move (or are not migrating any more), or
        ``resume(None)`` after ``PREPARE_HOLD`` seconds."""
        self.counters.paused += 1
        self.parked.append((resume, self.loop.time()))
        self._arm()

    def _arm(self) -> None:
        if self.timer is None:
            firsts = [queue[0][-1] for queue in (self.held, self.parked) if queue]
            self.timer = self.loop.call_at(min(firsts) + PREPARE_HOLD, self._expire)

    def _expire(self) -> None:
        self.timer = None
        limit = self.loop.time() - PREPARE_HOLD + 0.001
        held, parked = self.held, self.parked
        while held and held[0][4] <= limit:
            _, waiters, _, _, _ = held.popleft()
            self.counters.pause_expired += 1
            for waiter in waiters:
                waiter.settle(self.expired)
        while parked and parked[0][1] <= limit:
            resume, _ = parked.popleft()
            self.counters.pause_expired += 1
            resume(None)
        if held or parked:
            self._arm()

    def release(self, routes: Routes[ShardRoute]) -> None:
        """The migration moves now (or is gone): route every held request again by its key."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        held, self.held = self.held, deque()
        parked, self.parked = self.parked, deque()
        for request, waiters, session, readonly, _ in held:
            frames = [request] if isinstance(request, bytes) else [f for f, _ in request]
            route = one_shard({routes.locate(key) for key in keys_in(frames, _any)})
            if route is None:  # its other keys stay on the source: two shards now
                for waiter in waiters:
                    waiter.settle(errors.mixed_migration("the request"))
            elif isinstance(request, bytes):
                route.send(request, waiters[0], session, readonly)
            else:
                route.send_block(request, session)
        for resume, _ in parked:
            resume(routes)


def _any(key: bytes) -> bool:
    return True


class Preparing(ShardRoute):
    """The route of the slots of a migration being prepared: requests wait in ``pause``."""

    __slots__ = ("pause",)
    migrating = PREPARE

    def __init__(self, source: ShardRoute, pause: Pause):
        super().__init__(source.index, source.name, source.backend, source.stats,
                         source.pinned_limit, None)
        self.pause = pause

    def send(self, payload: bytes, waiter: Waiter, session: Session,
             readonly: bool = False) -> None:
        self.pause.hold(payload, [waiter], session, readonly)

    def send_block(self, block: list[tuple[bytes, Waiter]], session: Session) -> None:
        self.pause.hold(block, [waiter for _, waiter in block], session, False)

    def pin(self, session: Session, reset: list[bytes], blocking: bool = False) -> Pin:
        raise Unroutable(errors.MIGRATION_PREPARING)


def migrate_prefix(target: ShardRoute, db: int, timeout_ms: int,
                   password: str | None) -> list[bytes]:
    """``MIGRATE host port "" db timeout [AUTH password]`` to the target's master."""
    backend = target.backend
    host, port = (backend.host, backend.port) if backend is not None else ("", 0)
    prefix = [b"MIGRATE", host.encode(), b"%d" % port, b"", b"%d" % db, b"%d" % timeout_ms]
    if password:
        prefix += [b"AUTH", password.encode()]
    return prefix

