"""The watchdog's ZooKeeper side: one kazoo session, the shard's members, our node.

Threading: kazoo runs its own threads. Its state listener and the children watch only put
an event on the daemon's queue (``on_event``); every ZooKeeper *request* is made from the
daemon's control loop, which is the only thread that decides. Requests are kazoo
``*_async`` calls waited on with a timeout (``op_timeout``, a sixth of the session
timeout): while the connection is down kazoo queues requests instead of failing them, and
a control loop blocked on one could not fence its redis in time.

Invariants:

* Requests are only made while kazoo says connected; a request that fails or times out
  raises ``ZkError`` and the loop tries again on a later turn.
* ``list`` re-arms the children watch each time it reads (kazoo drops watches when the
  connection is suspended), so after every delivery or reconnection the daemon re-reads.
* A child with our address that is not our node is classified by its ``ephemeralOwner``:
  our session -> an orphan of a create whose reply was lost (a create that timed
  out may still have happened); another session -> a ghost of a previous watchdog.
* A missing shard path is not created (the admin lays out shards and their weights): the
  daemon logs it and keeps retrying.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooState
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from ..cluster import zk as zkutil
from ..cluster import zkschema
from .decide import Listing

log = logging.getLogger("pyproxy.watchdog.zk")


class ZkError(Exception):
    """A ZooKeeper request failed, timed out, or could not be made (not connected)."""


class MissingShard(ZkError):
    """The shard path does not exist."""


class Registrar:
    def __init__(self, hosts: str, session_timeout: float, shard: str, me: str,
                 on_event: Callable[[str, Any], None], auth: str | None = None) -> None:
        self.shard = shard
        self.me = me
        self.op_timeout = session_timeout / 6
        self._on_event = on_event
        self.zk = zkutil.make_client(hosts, session_timeout, auth)
        self.zk.add_listener(self._on_state)

    # -- kazoo threads: enqueue only
    def _on_state(self, state: KazooState) -> None:
        self._on_event("zk-state", state)

    def _on_children(self, event: Any) -> None:
        self._on_event("zk-children", event)

    # -- control loop
    def start(self) -> None:
        self.zk.start_async()

    def stop(self) -> None:
        self.zk.stop()
        self.zk.close()

    @property
    def connected(self) -> bool:
        return bool(self.zk.connected)

    @property
    def session_id(self) -> int | None:
        return zkutil.session_id(self.zk)

    def _wait(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.connected:
            raise ZkError(f"{what}: not connected")
        try:
            return call(*args, **kwargs).get(timeout=self.op_timeout)
        except NoNodeError:
            raise
        except (KazooException, KazooTimeoutError) as exc:
            raise ZkError(f"{what}: {type(exc).__name__} {exc}".rstrip()) from None

    def path(self, name: str) -> str:
        return f"{self.shard}/{name}"

    def list(self, node: str | None) -> Listing:
        """Read the members (re-arming the watch) and classify the nodes of our address."""
        try:
            names = self._wait("list", self.zk.get_children_async, self.shard,
                               watch=self._on_children)
        except NoNodeError:
            raise MissingShard(f"shard path {self.shard} does not exist") from None
        members = tuple(zkschema.order_members(names))
        session = self.session_id
        orphans: list[str] = []
        ghosts: list[str] = []
        for m in members:
            if m.address != self.me or m.name == node:
                continue
            holder = zkutil.ownership(self._stat(m.name), session)
            if holder is zkutil.Ownership.MINE:
                orphans.append(m.name)
            elif holder is zkutil.Ownership.OTHER:
                ghosts.append(m.name)
        return Listing(members, tuple(orphans), tuple(ghosts))

    def _stat(self, name: str) -> Any:
        try:
            return self._wait("stat", self.zk.exists_async, self.path(name))
        except NoNodeError:
            return None

    def create(self) -> str:
        """Create our ephemeral sequential node; return its name."""
        prefix = self.path(zkschema.member_prefix(self.me))
        try:
            created = self._wait("create", self.zk.create_async, prefix, b"",
                                 ephemeral=True, sequence=True)
        except NoNodeError:
            raise MissingShard(f"shard path {self.shard} does not exist") from None
        return str(created).rsplit("/", 1)[1]

    def delete(self, name: str) -> None:
        try:
            self._wait("delete", self.zk.delete_async, self.path(name))
        except NoNodeError:
            pass
