"""The interface between the executor and the code that serves commands.

* ``Context`` is what strategies, modes and local commands may use: the pool (its routes and
  counters), its settings, the strategy of every command, the pool's clients, and a read-only
  view of the whole proxy. The ``Executor`` is the one implementation.
* ``Strategy`` serves one kind of command (``run``) and says which shards a command touches
  (``routes``), which is how a transaction checks a command before it queues it: a strategy
  that cannot be queued keeps the default, which refuses.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from ..config import PoolConfig
from ..observe.snapshot import ClientSnapshot, ProxySnapshot
from ..observe.stats import PoolStats
from ..protocol.commands import Command
from . import errors
from .replies import Reply
from .session import Session

if TYPE_CHECKING:
    from .pool import Pool
    from .route import ShardRoute


class Context(Protocol):
    pool: Pool
    stats: PoolStats
    config: PoolConfig
    strategies: list[Strategy]  # by command index

    def snapshot(self) -> ProxySnapshot: ...

    def dispatch(self, session: Session, command: Command, args: list[bytes],
                 reply: Reply) -> None: ...

    def clients(self, now: float) -> Iterable[ClientSnapshot]: ...

    def kill(self, session_id: int) -> bool: ...


class Strategy:
    """How one kind of command is served."""

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        raise NotImplementedError

    def routes(self, ctx: Context, command: Command, args: list[bytes]) -> set[ShardRoute]:
        """The shards the command's keys live on (empty: it names no key), for a transaction
        to check the command before it queues it; an error when one shard cannot serve
        it as it is (the default): raises ``errors.Unroutable``."""
        raise errors.Unroutable(errors.not_in_transaction(command))
