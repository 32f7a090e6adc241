"""ZooKeeper plumbing shared by the proxy's topology, the watchdog's registrar and the admin.

* ``make_client``: a ``KazooClient`` with the reconnect policy every pyproxy process uses —
  0.1 s doubling to 1 s, forever (kazoo's default backoff grows to an hour: 18 s to
  reconnect after a 15 s outage) — and kazoo's reconnect chatter rate-limited (``zklog``).
* ``session_id``: the current session, or None before the first one.
* ``auth``: with ``USER:PASSWORD`` (pool key ``zookeeper_auth``, watchdog ``zkAuth``) the
  client authenticates with ZooKeeper's digest scheme and every node it creates gets an ACL
  that lets only that identity change it; anyone may read (the layout is no secret, and
  operators read it with zkCli).
* ``ownership``: who holds an ephemeral node, the one question both registration paths ask
  after a create whose reply may have been lost: this session (``MINE`` — the create went
  through after all), an earlier session of this same process (``LEFTOVER``), someone else
  (``OTHER``), or nobody (``GONE``).

kazoo is imported here and nowhere else outside ``cluster/``, the watchdog's registrar and
the admin tool (``admin``, ``reshard``: a CLI, blocking calls are right there).
"""

from __future__ import annotations

import enum
from typing import Any

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry
from kazoo.security import make_acl, make_digest_acl

from . import zklog

CONNECTION_RETRY = dict(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0)
COMMAND_RETRY = dict(max_tries=3, delay=0.1, backoff=2, max_delay=1.0)


def make_client(hosts: str, session_timeout: float, auth: str | None = None,
                **kwargs: Any) -> KazooClient:
    """A client for ``hosts`` (``host:port,...[/chroot]``); ``session_timeout`` in seconds;
    ``auth`` ``USER:PASSWORD`` or None."""
    zklog.quiet_kazoo_reconnects()
    if auth is not None:
        user, _, password = auth.partition(":")
        kwargs["auth_data"] = [("digest", auth)]
        kwargs["default_acl"] = [make_digest_acl(user, password, all=True),
                                 make_acl("world", "anyone", read=True)]
    return KazooClient(hosts=hosts, timeout=session_timeout,
                       connection_retry=KazooRetry(**CONNECTION_RETRY), **kwargs)


def session_id(zk: KazooClient) -> int | None:
    client_id = zk.client_id
    return client_id[0] if client_id else None


class Ownership(enum.Enum):
    GONE = "gone"  # no such node
    MINE = "mine"  # created by this session
    LEFTOVER = "leftover"  # this process's, from a session that ended
    OTHER = "other"  # another live session's


def ownership(stat: Any, session: int | None, leftover: bool = False) -> Ownership:
    """Classify a node from its ``ZnodeStat`` (None when it does not exist); ``leftover``
    says whether its data shows it is this process's own."""
    if stat is None:
        return Ownership.GONE
    if session is not None and stat.ephemeralOwner == session:
        return Ownership.MINE
    return Ownership.LEFTOVER if leftover else Ownership.OTHER
