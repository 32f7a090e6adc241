"""The executor: from a parsed command to its reply, by strategy.

One ``Executor`` per pool sits between the sessions and the backends (the role of Envoy's
command splitter and router). ``run`` takes one command of one client and:

1. gives it a ``Reply`` at the tail of the client's queue (every command, answered or not,
   so replies leave in request order);
2. answers what needs no shard at all: unknown commands and wrong arity (Redis's own
   texts), ``NOAUTH`` before AUTH;
3. lets the session's ``Mode`` (a transaction being queued, subscribed mode, ...) take it;
4. otherwise dispatches it by the command table's ``kind`` to its ``Strategy``
   (``strategies_for``): ``strategies`` (by key, split, local, refused), ``keyspace`` (every
   shard, SCAN, WAIT), ``scripts``, ``info``, ``transaction``, ``blocking``, ``pubsub``.

Adding a command family is a ``Strategy`` (or a ``Mode``) in its own module, chosen by a new
``kind`` in ``protocol/commands.py`` and one line in ``strategies_for`` — never a branch in
``Client``.

Requests are re-framed from their parsed arguments before they reach a backend, never passed
through as received: hiredis tolerates element types a request must not have, and a frame
Redis rejects would close a backend connection that other clients share.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from ..config import PoolConfig
from ..observe.snapshot import ClientSnapshot, ProxySnapshot
from ..observe.stats import UNKNOWN_INDEX
from ..protocol.commands import (
    ANY,
    BLOCKING,
    COMMANDS,
    EACH,
    EVAL,
    FUNCTION,
    INFO,
    KEY,
    LOCAL,
    PUBLISH,
    PUBSUB,
    REFUSED,
    SAME,
    SCAN,
    SCRIPT,
    SPLIT,
    SUBSCRIBE,
    TRANSACTION,
    WAIT,
    Command,
    lookup,
)
from . import errors, fanout, local
from .blocking import BlockedCalls, Blocking
from .dispatch import Strategy
from .info import Info, OpsRate
from .keyspace import Any, Each, Scan, Wait
from .pubsub import Hub, PubSub, PubSubInfo
from .replies import Owner, Reply
from .scripts import Functions, ScriptCache, ScriptCall, Scripts
from .session import Session
from .strategies import Forward, Local, Refused, SameShard, Split
from .transaction import TransactionControl

if TYPE_CHECKING:
    from .pool import Pool


class Requester(Owner, Protocol):
    """What the executor needs of a client connection (``client.Client`` is one)."""

    queue: deque[Reply]
    session: Session  # its last_active: when the current read arrived (latency's start)


def strategies_for(commands: Iterable[Command], scripts: ScriptCache, rate: OpsRate,
                   hub: Hub, blocked: BlockedCalls) -> list[Strategy]:
    """One strategy per command, by its kind (and merge rule)."""
    forward = Forward()
    by_kind: dict[int, Strategy] = {
        KEY: forward, SAME: SameShard(), LOCAL: Local(), REFUSED: Refused(),
        EVAL: ScriptCall(scripts), SCRIPT: Scripts(scripts), FUNCTION: Functions(),
        ANY: Any(), SCAN: Scan(),
        WAIT: Wait(), INFO: Info(rate), TRANSACTION: TransactionControl(),
        BLOCKING: Blocking(blocked), SUBSCRIBE: PubSub(hub), PUBLISH: forward, PUBSUB: PubSubInfo(),
    }
    split: dict[int, type[Strategy]] = {SPLIT: Split, EACH: Each}
    return [
        split[c.kind](fanout.MERGES[c.merge]) if c.kind in split  # type: ignore[call-arg]
        else by_kind[c.kind]
        for c in commands
    ]


# ---------------------------------------------------------------- the executor

class Executor:
    """Serves one pool's commands (the ``dispatch.Context`` of its strategies); ``snapshot``
    gives them the proxy's view."""

    __slots__ = ("pool", "stats", "config", "snapshot", "strategies", "scripts", "rate", "hub",
                 "budget")

    def __init__(self, pool: Pool, snapshot: Callable[[], ProxySnapshot]):
        self.pool = pool
        self.stats = pool.stats
        self.config: PoolConfig = pool.config
        self.snapshot = snapshot
        self.budget = pool.budget
        self.scripts = ScriptCache()
        self.rate = OpsRate()
        self.hub = Hub(pool)
        self.strategies = strategies_for(COMMANDS.values(), self.scripts, self.rate, self.hub,
                                         BlockedCalls(pool))

    def clients(self, now: float) -> list[ClientSnapshot]:
        return [client.snapshot(now) for client in self.pool.clients]

    def kill(self, session_id: int) -> bool:
        for client in self.pool.clients:
            if client.session.id == session_id:
                client.close()
                return True
        return False

    def sample(self, now: float) -> None:
        """Called every 100 ms: the ops rate INFO reports."""
        self.rate.sample(now, self.stats.requests)

    def run(self, client: Requester, args: list[bytes]) -> None:
        command = lookup(args[0])
        session = client.session
        reply = Reply(client, session.last_active, args)
        client.queue.append(reply)
        stats = self.stats
        if command is None:
            stats.unknown += 1
            stats.commands[UNKNOWN_INDEX] += 1
            reply.settle(errors.unknown_command(args))
            if session.mode is not None:
                session.mode.rejected()
            return
        index = command.index
        reply.command = index
        stats.commands[index] += 1
        session.last_command = command.name
        if not command.arity_ok(len(args)):
            reply.settle(errors.wrong_arity(command))
            if session.mode is not None:
                session.mode.rejected()
            return
        if not session.authenticated and command.name not in local.BEFORE_AUTH:
            reply.settle(local.NOAUTH)
            return
        if self.budget.exceeded and command.kind != LOCAL:
            stats.refused += 1
            reply.settle(errors.OUT_OF_MEMORY)
            return
        self.dispatch(session, command, args, reply)

    def dispatch(self, session: Session, command: Command, args: list[bytes],
                 reply: Reply) -> None:
        """Serve a checked command: its session's mode first, then its strategy (also for a
        command held back and served later: a blocked client's pipeline)."""
        mode = session.mode
        if mode is not None and mode.intercept(command, args, reply):
            return
        self.strategies[command.index].run(self, session, command, args, reply)
