"""Scripts through the proxy: SCRIPT on every master, and EVALSHA that survives a failover.

* ``SCRIPT LOAD`` goes to every master; every one must answer the same sha (any error is the
  reply). ``SCRIPT FLUSH`` goes to every master (+OK when all did), ``SCRIPT EXISTS`` answers
  1 for a sha only when every master has it, ``SCRIPT KILL`` (and ``FUNCTION KILL``) stops the
  script where one is busy (+OK if any shard killed one, else the shards' NOTBUSY), sent on a
  pinned connection of its own per shard — the shared one may be the busy script's.
* The proxy remembers the bodies it has seen (SCRIPT LOAD, EVAL, EVAL_RO) by sha, in a bounded
  ``ScriptCache``. When EVALSHA/EVALSHA_RO meets ``-NOSCRIPT`` — the shard's master changed or
  restarted and lost its script cache — and the body is known, the proxy sends ``SCRIPT LOAD``
  and the EVALSHA again to that shard, back to back, once; the client sees only the second
  answer. (Commands the client pipelined behind the EVALSHA to the same shard have then run
  before it, as they would with a client that reloads the script itself.) SCRIPT FLUSH
  forgets every body, so EVALSHA after it gets NOSCRIPT, as from Redis.
* A script that names no key runs on the first shard (Redis allows scripts without keys;
  every key such a script touches must live on that shard).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from ..protocol import resp
from ..protocol.commands import Command
from ..protocol.resp import encode_command
from . import errors, fanout
from .dispatch import Context, Strategy
from .errors import Unroutable
from .keyspace import to_shards
from .replies import Reply, Swallow, Waiter
from .session import Pinned, Session
from .strategies import SameShard, first_shard

MAX_SCRIPTS = 1024
MAX_SCRIPT_BYTES = 16 * 1024 * 1024


class ScriptCache:
    """sha (lower-case hex, as bytes) -> body, least recently used out first, bounded in count
    and in bytes."""

    def __init__(self, max_scripts: int = MAX_SCRIPTS, max_bytes: int = MAX_SCRIPT_BYTES):
        self.bodies: OrderedDict[bytes, bytes] = OrderedDict()
        self.size = 0
        self.max_scripts = max_scripts
        self.max_bytes = max_bytes

    def remember(self, body: bytes) -> bytes:
        sha = hashlib.sha1(body).hexdigest().encode()
        if sha in self.bodies:
            self.bodies.move_to_end(sha)
            return sha
        if len(body) > self.max_bytes:
            return sha
        self.bodies[sha] = body
        self.size += len(body)
        while len(self.bodies) > self.max_scripts or self.size > self.max_bytes:
            _, dropped = self.bodies.popitem(last=False)
            self.size -= len(dropped)
        return sha

    def body(self, sha: bytes) -> bytes | None:
        return self.bodies.get(sha.lower())

    def clear(self) -> None:
        self.bodies.clear()
        self.size = 0


class Scripts(Strategy):
    """SCRIPT LOAD | FLUSH | EXISTS | KILL (and HELP, from the first shard)."""

    def __init__(self, cache: ScriptCache):
        self.cache = cache

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        sub = args[1].lower()
        shards = ctx.pool.routes.shards
        frame = encode_command(args)
        if sub == b"load" and len(args) == 3:
            self.cache.remember(args[2])
            to_shards(shards, session, frame, reply, fanout.MERGES["same"])
        elif sub == b"flush" and len(args) <= 3:
            self.cache.clear()
            to_shards(shards, session, frame, reply, fanout.MERGES["ok"])
        elif sub == b"exists" and len(args) >= 3:
            to_shards(shards, session, frame, reply, fanout.MERGES["all"], readonly=True)
        elif sub == b"kill" and len(args) == 2:
            kill_everywhere(ctx, session, frame, reply)
        elif sub == b"help":
            first_shard(ctx).send(frame, reply, session)
        elif sub in (b"load", b"flush", b"exists", b"kill"):
            reply.settle(resp.error(f"ERR wrong number of arguments for 'script|"
                                    f"{sub.decode()}' command"))
        else:
            ctx.stats.refused += 1
            reply.settle(errors.refused(command, "only SCRIPT LOAD, FLUSH, EXISTS, KILL and "
                                                 "HELP are served through the proxy"))


def kill_everywhere(ctx: Context, session: Session, frame: bytes, reply: Reply) -> None:
    """SCRIPT KILL / FUNCTION KILL to every master, each on a connection of its own: on the
    shared one it would wait behind the busy script it is meant to stop."""
    shards = ctx.pool.routes.shards
    fan = fanout.FanOut(reply, fanout.MERGES["any_ok"], [[] for _ in shards])
    for index, route in enumerate(shards):
        try:
            pin = route.pin(session, reset=[])
        except Unroutable as refusal:
            fan.part(index).settle(refusal.reply)
            continue
        pin.send(frame, _Released(pin, fan.part(index)))


class _Released:
    """Hands the reply on, then gives the pinned connection back."""

    __slots__ = ("pin", "waiter")

    def __init__(self, pin: Pinned, waiter: Waiter):
        self.pin = pin
        self.waiter = waiter

    def settle(self, raw: bytes) -> None:
        self.pin.release()
        self.waiter.settle(raw)


class Functions(Strategy):
    """FUNCTION LOAD | DELETE | FLUSH on every master (all must agree), KILL where one runs,
    LIST from the first shard (every master has the same libraries when they were loaded
    through the proxy)."""

    MERGE = {b"load": "same", b"delete": "ok", b"flush": "ok"}

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        sub = args[1].lower()
        frame = encode_command(args)
        merge = self.MERGE.get(sub)
        if sub == b"kill":
            kill_everywhere(ctx, session, frame, reply)
        elif merge is not None:
            to_shards(ctx.pool.routes.shards, session, frame, reply, fanout.MERGES[merge])
        elif sub in (b"list", b"help"):
            first_shard(ctx).send(frame, reply, session, readonly=True)
        else:
            ctx.stats.refused += 1
            reply.settle(errors.refused(command, "only FUNCTION LOAD, DELETE, FLUSH, KILL, LIST "
                                                 "and HELP are served through the proxy"))


class ScriptCall(SameShard):
    """EVAL, EVAL_RO, EVALSHA, EVALSHA_RO: routed like SameShard; bodies remembered, and
    EVALSHA reloaded once on NOSCRIPT when its body is known."""

    def __init__(self, cache: ScriptCache):
        self.cache = cache

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        try:
            route = self.target(ctx, command, args)
        except Unroutable as refusal:
            reply.settle(refusal.reply)
            return
        session.written.add(route.name)  # a script may write
        frame = encode_command(args)
        if command.name in ("eval", "eval_ro"):
            self.cache.remember(args[1])
            route.send(frame, reply, session, command.readonly)
            return
        body = self.cache.body(args[1])
        if body is None:
            route.send(frame, reply, session, command.readonly)
        else:
            route.send(frame, Reload(ctx, session, route.name, body, frame, reply), session)


class Reload:
    """The waiter of an EVALSHA whose body the proxy knows: NOSCRIPT the first time means
    SCRIPT LOAD + EVALSHA again on that shard; whatever comes next is the client's reply."""

    __slots__ = ("ctx", "session", "shard", "body", "frame", "reply", "tried")

    def __init__(self, ctx: Context, session: Session, shard: str, body: bytes, frame: bytes,
                 reply: Reply):
        self.ctx, self.session, self.shard = ctx, session, shard
        self.body, self.frame, self.reply = body, frame, reply
        self.tried = False

    def settle(self, raw: bytes) -> None:
        if self.tried or not raw.startswith(b"-NOSCRIPT"):
            self.reply.settle(raw)
            return
        self.tried = True
        shards = self.ctx.pool.routes.shards
        route = next((r for r in shards if r.name == self.shard), None)
        if route is None:  # the shard is gone from the topology meanwhile
            self.reply.settle(raw)
            return
        load = encode_command([b"SCRIPT", b"LOAD", self.body])
        route.send_block([(load, Swallow(self._load_failed)), (self.frame, self)], self.session)

    def _load_failed(self, raw: bytes) -> None:
        self.tried = True  # the EVALSHA behind it answers (NOSCRIPT again): that is the reply
