"""Pub/sub through the proxy: every client's channels multiplexed over one subscriber
connection per shard.

* A channel lives on the shard its name hashes to (the key rule), so ``PUBLISH ch`` and
  ``SUBSCRIBE ch`` meet on one shard whichever proxy each goes through; a shard channel
  (``SSUBSCRIBE``/``SPUBLISH``) likewise; a pattern listens on every shard.
* Fan-in: per pool, the ``Hub`` keeps every channel, pattern and shard channel its clients
  listen to, and one ``Feed`` (a subscriber connection) per shard's master. A name is
  subscribed on the backend once, when its first client subscribes, and unsubscribed when the
  last one leaves; 10,000 subscribers of one channel cost one backend subscription.
* Replies are Redis's: the proxy answers (un)subscribe confirmations itself with the client's
  own count (a confirmation for a name new to the backend waits for the backend's
  confirmation, so a PUBLISH after SUBSCRIBE returned is heard); messages are forwarded as
  Redis framed them, as RESP3 pushes (``>``) to clients that said ``HELLO 3``.
* RESP2 clients with a subscription are in ``Subscribed`` mode: only (P|S)SUBSCRIBE,
  (P|S)UNSUBSCRIBE, PING (answered ``pong`` as an array) and QUIT are served, others get
  Redis's error. RESP3 clients go on running ordinary commands.
* Failover: when the routes name a new master (or a shard's owner of a channel changes), the
  hub moves each feed to it and subscribes there again: subscribers keep their subscriptions
  without resubscribing. Messages published meanwhile are lost — pub/sub is at most once, as
  in Redis. A feed that breaks reconnects to its master with backoff (50 ms to 1 s).
* A slow subscriber cannot grow the proxy's memory without bound: past its output limit
  (``pubsub_output_limit``, or ``pubsub_output_soft_limit`` for ``pubsub_output_soft_seconds``;
  Redis's defaults 32 MB / 8 MB for 60 s) it is disconnected, as Redis does.
* ``PUBSUB CHANNELS``/``SHARDCHANNELS`` combine every shard, ``NUMSUB``/``SHARDNUMSUB`` sum the
  shards' counts (a proxy's feed counts as one subscriber, whatever clients it serves),
  ``NUMPAT`` is the largest shard count (every pattern is on every shard).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import hiredis

from .. import address as addresses
from ..config import PoolConfig
from ..protocol import resp
from ..protocol.commands import Command
from ..protocol.resp import encode_command
from . import errors, fanout
from .dispatch import Context, Strategy
from .keyspace import to_shards
from .replies import Reply
from .session import Mode, Session

if TYPE_CHECKING:
    from ..routing.routes import Routes
    from .pool import Pool
    from .route import ShardRoute

log = logging.getLogger("pyproxy.pubsub")

CHANNEL, PATTERN, SHARD = "channel", "pattern", "shard"
# per kind: the command that subscribes, the one that unsubscribes, and what Redis calls a
# message for it
_VERBS = {
    CHANNEL: (b"subscribe", b"unsubscribe", b"message"),
    PATTERN: (b"psubscribe", b"punsubscribe", b"pmessage"),
    SHARD: (b"ssubscribe", b"sunsubscribe", b"smessage"),
}
_KIND_OF = {verb: kind for kind, verbs in _VERBS.items() for verb in verbs[:2]}
_MESSAGE_KIND = {verbs[2]: kind for kind, verbs in _VERBS.items()}
_RETRY_MIN, _RETRY_MAX = 0.05, 1.0


class Subscriptions:
    """One client's channels, patterns and shard channels (``session.subscriptions``)."""

    __slots__ = ("session", "hub", "names")

    def __init__(self, session: Session, hub: Hub):
        self.session = session
        self.hub = hub
        self.names: dict[str, set[bytes]] = {CHANNEL: set(), PATTERN: set(), SHARD: set()}

    def forget(self) -> None:
        """The client is gone: its names leave the hub."""
        self.hub.forget(self)

    def counts(self) -> tuple[int, int, int]:
        """Channels, patterns, shard channels (CLIENT LIST's sub, psub, ssub)."""
        names = self.names
        return len(names[CHANNEL]), len(names[PATTERN]), len(names[SHARD])

    def count(self, kind: str) -> int:
        """What Redis reports in a confirmation: channels + patterns, or shard channels."""
        if kind == SHARD:
            return len(self.names[SHARD])
        return len(self.names[CHANNEL]) + len(self.names[PATTERN])

    @property
    def total(self) -> int:
        return sum(len(names) for names in self.names.values())

    def push(self, raw: bytes) -> None:
        """A message, framed as Redis frames it for RESP2; a RESP3 client gets a push."""
        self.session.push(b">" + raw[1:] if self.session.resp3 else raw)


def confirmation(verb: bytes, name: bytes | None, count: int, resp3: bool) -> bytes:
    """``*3 $9 subscribe $2 ch :1`` (``>3`` for RESP3; a null name for an empty UNSUBSCRIBE)."""
    head = b">3\r\n" if resp3 else b"*3\r\n"
    shown = resp.bulk(name) if name is not None else resp.null(resp3)
    return head + resp.bulk(verb) + shown + resp.integer(count)


class Hub:
    """One pool's subscriptions and its feeds (one per shard that has listeners)."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.config: PoolConfig = pool.config
        self.listeners: dict[str, dict[bytes, set[Subscriptions]]] = {
            CHANNEL: {}, PATTERN: {}, SHARD: {}}
        self.feeds: dict[str, Feed] = {}  # by shard name
        pool.on_routes.append(self.resync)

    # -- what the clients say

    def subscribe(self, kind: str, name: bytes, subs: Subscriptions,
                  confirmed: Callable[[], None]) -> None:
        """``confirmed`` runs once every feed the name needs has it (at once if they do)."""
        self.listeners[kind].setdefault(name, set()).add(subs)
        subs.names[kind].add(name)
        feeds = self._feeds_for(kind, name, create=True)
        left = [len(feeds)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                confirmed()

        if not feeds:  # no shard has a master now: subscribed when one does
            confirmed()
        for feed in feeds:
            feed.want(kind, name)
            feed.on_confirmed(kind, name, one_done)

    def unsubscribe(self, kind: str, name: bytes, subs: Subscriptions) -> None:
        subs.names[kind].discard(name)
        listeners = self.listeners[kind].get(name)
        if listeners is None:
            return
        listeners.discard(subs)
        if not listeners:
            del self.listeners[kind][name]
            for feed in self._feeds_for(kind, name, create=False):
                feed.drop(kind, name)

    def forget(self, subs: Subscriptions) -> None:
        """The client is gone."""
        for kind, names in subs.names.items():
            for name in list(names):
                self.unsubscribe(kind, name, subs)

    # -- what the feeds hear

    def deliver(self, kind: str, name: bytes, raw: bytes) -> None:
        for subs in list(self.listeners[kind].get(name, ())):
            subs.push(raw)

    # -- where names live

    def _feeds_for(self, kind: str, name: bytes, create: bool) -> list[Feed]:
        routes = self.pool.routes
        shards = routes.shards if kind == PATTERN else (routes.locate(name),)
        feeds = []
        for route in shards:
            feed = self.feeds.get(route.name)
            if feed is None and create and route.backend is not None:
                feed = self.feeds[route.name] = Feed(self, route.name, route.backend.address)
            if feed is not None:
                feeds.append(feed)
        return feeds

    def resync(self, routes: Routes[ShardRoute]) -> None:
        """New routes: feeds follow their shard's master; every name is wanted where it now
        lives and dropped where it no longer does."""
        masters = {r.name: r.backend.address if r.backend else None for r in routes.shards}
        for shard, feed in list(self.feeds.items()):
            if masters.get(shard) != feed.address:
                feed.close()
                del self.feeds[shard]
        wanted: dict[str, set[tuple[str, bytes]]] = {}
        for kind, names in self.listeners.items():
            for name in names:
                for feed in self._feeds_for(kind, name, create=True):
                    wanted.setdefault(feed.shard, set()).add((kind, name))
                    feed.want(kind, name)
        for shard, feed in self.feeds.items():
            for kind, name in feed.subscribed() - wanted.get(shard, set()):
                feed.drop(kind, name)


class Feed(asyncio.Protocol):
    """One subscriber connection to a shard's master, shared by every client of the pool."""

    def __init__(self, hub: Hub, shard: str, address: str):
        self.hub, self.shard, self.address = hub, shard, address
        self.host, self.port = addresses.parse(address)
        self.loop = asyncio.get_running_loop()
        self.names: dict[str, set[bytes]] = {CHANNEL: set(), PATTERN: set(), SHARD: set()}
        self.pending: deque[tuple[str, bytes, list[Callable[[], None]]]] = deque()
        # confirmations owed while the first connect is under way: due once it subscribed
        self.connecting: dict[tuple[str, bytes], list[Callable[[], None]]] = {}
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.closed = False
        self.failures = 0
        self.task: asyncio.Task[None] | None = self.loop.create_task(self._connect())

    def subscribed(self) -> set[tuple[str, bytes]]:
        return {(kind, name) for kind, names in self.names.items() for name in names}

    def want(self, kind: str, name: bytes) -> None:
        """Subscribe ``name`` unless it is already."""
        if name not in self.names[kind]:
            self.names[kind].add(name)
            self._send(kind, _VERBS[kind][0], name)

    def drop(self, kind: str, name: bytes) -> None:
        if name in self.names[kind]:
            self.names[kind].discard(name)
            self._send(kind, _VERBS[kind][1], name)

    def on_confirmed(self, kind: str, name: bytes, callback: Callable[[], None]) -> None:
        """``callback`` when the backend confirms the last request for ``name`` — at once if
        none is pending; after the subscription on connect while a first connect is under
        way (a feed that cannot connect confirms at once: messages come once it can)."""
        for pending_kind, pending_name, callbacks in reversed(self.pending):
            if (pending_kind, pending_name) == (kind, name):
                callbacks.append(callback)
                return
        if self.transport is None and not self.failures and not self.closed:
            self.connecting.setdefault((kind, name), []).append(callback)
            return
        callback()

    def _send(self, kind: str, verb: bytes, name: bytes) -> None:
        if self.transport is not None:  # otherwise subscribed on connect
            self.pending.append((kind, name, []))
            self.transport.write(encode_command([verb, name]))

    # -- the connection

    async def _connect(self) -> None:
        while not self.closed:
            try:
                await self.loop.create_connection(lambda: self, self.host, self.port)
                return
            except OSError as exc:
                self.failures += 1
                self._release_connecting()
                delay = min(_RETRY_MIN * 2 ** (self.failures - 1), _RETRY_MAX)
                log.warning("pubsub feed of shard %s (%s): connect failed: %s (retry in %.2fs)",
                            self.shard, self.address, exc.strerror or exc, delay)
                await asyncio.sleep(delay)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        self.failures = 0
        self.reader = hiredis.Reader()
        settings = self.hub.config
        prelude = []
        if settings.redis_auth:
            prelude.append(encode_command([b"AUTH", settings.redis_auth.encode()]))
        if settings.redis_db:
            prelude.append(encode_command([b"SELECT", str(settings.redis_db).encode()]))
        self.pending = deque(("", b"", []) for _ in prelude)
        transport.write(b"".join(prelude))  # type: ignore[attr-defined]
        for kind, names in self.names.items():
            for name in names:
                self._send(kind, _VERBS[kind][0], name)
        waiting, self.connecting = self.connecting, {}
        for (kind, name), callbacks in waiting.items():
            for callback in callbacks:
                self.on_confirmed(kind, name, callback)
        log.info("pubsub feed of shard %s connected to %s", self.shard, self.address)

    def _release_connecting(self) -> None:
        waiting, self.connecting = self.connecting, {}
        for callbacks in waiting.values():
            for callback in callbacks:
                callback()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (frame := self.reader.gets()) is not False:
                self._frame(frame)
        except hiredis.ProtocolError:
            log.error("pubsub feed of shard %s: %s sent a malformed reply; reconnecting",
                      self.shard, self.address)
            if self.transport is not None:
                self.transport.abort()

    def _frame(self, frame: object) -> None:
        if not isinstance(frame, list) or not frame or not isinstance(frame[0], bytes):
            if self.pending and self.pending[0][0] == "":  # the prelude's answer
                self.pending.popleft()
            if isinstance(frame, hiredis.ReplyError):
                log.error("pubsub feed of shard %s: %s refused: %s", self.shard, self.address,
                          frame)
            return
        verb = frame[0]
        kind = _MESSAGE_KIND.get(verb)
        if kind is not None:
            name = frame[1]
            raw = resp.array([resp.bulk(part) for part in frame])
            self.hub.deliver(kind, name, raw)
            return
        if verb in _KIND_OF and self.pending:
            _, _, callbacks = self.pending.popleft()
            for callback in callbacks:
                callback()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        pending, self.pending = self.pending, deque()
        for _, _, callbacks in pending:  # confirmed now: at most once, as Redis's pub/sub
            for callback in callbacks:
                callback()
        if not self.closed:
            log.warning("pubsub feed of shard %s lost %s; reconnecting", self.shard, self.address)
            self.task = self.loop.create_task(self._connect())

    def close(self) -> None:
        self.closed = True
        self._release_connecting()
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.close()


# ---------------------------------------------------------------- the client's side


class PubSub(Strategy):
    """(P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE."""

    def __init__(self, hub: Hub):
        self.hub = hub

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        hub = self.hub
        verb = command.name.encode()
        kind = _KIND_OF[verb]
        subs = session.subscriptions
        if not isinstance(subs, Subscriptions):
            subs = Subscriptions(session, hub)
            session.subscriptions = subs
        if verb.endswith(b"unsubscribe"):
            reply.settle(self._unsubscribe(verb, kind, args[1:], subs))
        else:
            self._subscribe(verb, kind, args[1:], subs, reply)
        if subs.total and not session.resp3 and not isinstance(session.mode, Subscribed):
            session.mode = Subscribed()
        elif not subs.total and isinstance(session.mode, Subscribed):
            session.mode = None


    def _unsubscribe(self, verb: bytes, kind: str, names: list[bytes],
                     subs: Subscriptions) -> bytes:
        """One confirmation per name (every name when none is given), at once."""
        resp3 = subs.session.resp3
        parts = []
        for name in names or sorted(subs.names[kind]):
            self.hub.unsubscribe(kind, name, subs)
            parts.append(confirmation(verb, name, subs.count(kind), resp3))
        return b"".join(parts) or confirmation(verb, None, subs.count(kind), resp3)

    def _subscribe(self, verb: bytes, kind: str, names: list[bytes], subs: Subscriptions,
                   reply: Reply) -> None:
        """One confirmation per name, each once the backend has the name (``Gather``)."""
        gather = Gather(reply, len(names))
        for index, name in enumerate(names):
            subs.names[kind].add(name)  # the count Redis shows includes this name
            ready = confirmation(verb, name, subs.count(kind), subs.session.resp3)
            self.hub.subscribe(kind, name, subs, gather.part(index, ready))


class Gather:
    """A reply made of several frames that become ready in any order: settled, in order,
    when the last one is."""

    __slots__ = ("reply", "parts", "left")

    def __init__(self, reply: Reply, count: int):
        self.reply = reply
        self.parts: list[bytes] = [b""] * count
        self.left = count

    def part(self, index: int, raw: bytes) -> Callable[[], None]:
        def ready() -> None:
            self.parts[index] = raw
            self.left -= 1
            if self.left == 0:
                self.reply.settle(b"".join(self.parts))
        return ready


class Subscribed(Mode):
    """A RESP2 client with subscriptions: only what Redis allows in subscribed mode."""

    flag = "P"
    ALLOWED = frozenset({"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
                         "punsubscribe", "sunsubscribe", "ping", "quit", "reset"})

    def intercept(self, command: Command, args: list[bytes], reply: Reply) -> bool:
        name = command.name
        if name == "ping":
            reply.settle(resp.array([resp.bulk(b"pong"), resp.bulk(args[1] if len(args) > 1
                                                                  else b"")]))
            return True
        if name in self.ALLOWED:
            return False
        reply.settle(resp.error(f"ERR Can't execute '{name}': only (P|S)SUBSCRIBE / "
                                "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this "
                                "context"))
        return True


class PubSubInfo(Strategy):
    """PUBSUB CHANNELS | NUMSUB | NUMPAT | SHARDCHANNELS | SHARDNUMSUB (| HELP)."""

    MERGE = {b"channels": "union", b"shardchannels": "union", b"numsub": "pairs",
             b"shardnumsub": "pairs", b"numpat": "max"}

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        sub = args[1].lower()
        merge = self.MERGE.get(sub)
        if sub == b"help":
            ctx.pool.routes.shards[0].send(encode_command(args), reply, session)
        elif merge is None:
            ctx.stats.refused += 1
            reply.settle(errors.refused(command, f"PUBSUB {sub.decode(errors='replace').upper()} "
                                                 "is not a PUBSUB subcommand the proxy knows"))
        else:
            to_shards(ctx.pool.routes.shards, session, encode_command(args), reply,
                      fanout.MERGES[merge])

