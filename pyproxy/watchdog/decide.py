"""The watchdog's brain: ``decide(State) -> [Action]``, pure, run once per loop turn.

The daemon gathers a ``State`` (last health check, ZooKeeper listing, our node, fence),
calls ``decide`` and executes the actions in order, stopping at the first that fails; the
next turn decides again from fresh state. Nothing here does I/O or keeps memory between
calls, so every rule is a table row in ``tests/test_watchdog_unit.py``.

Rules, first match wins:

1. Stopping: fence a master that has replicas registered (one of them takes over), then
   delete our node.
2. ``failures >= limit`` (the redis is dead or hung): fence it if it was a master (the
   command waits in its socket and runs first thing when a hung redis wakes), then delete
   our node — once ZooKeeper is reachable; until then the node dies with the session.
3. The last check failed but the limit is not reached: change nothing.
4. ZooKeeper not connected (or the listing failed): we cannot know whether we are still
   the lowest, so a master is fenced (lease renewed while this lasts); a replica is
   read-only anyway and is left unfenced so it keeps replicating.
5. Connected: clean up first — our node missing from the listing is forgotten; nodes of
   ours left by a create whose outcome was unknown ("orphans": our address, our session)
   are adopted (if we have no node) or deleted; a node registered for another run_id of
   the redis (it restarted, maybe empty) is deleted after the redis is made a replica of
   another member, so it rejoins as a replica and feeds no one meanwhile. Then:

   * no node: follow the lowest member (``REPLICAOF``) *before* registering, so the redis
     is never a writable master beside the current one, then register. A node of our
     address from another session ("ghost": a previous watchdog of this redis that has
     not expired yet) delays registering; while the ghost is the lowest, the redis is
     still the shard's master by its claim and is left as it is.
   * no node, the shard empty, and our redis a replica whose link to its master is up
     (after a ZooKeeper-wide session loss, say): registering now would make it the lowest
     node, and promote it over the master it copies, which may hold newer writes. So
     ``AwaitMaster``: do not register until that master's node is back (then the rule
     above registers us behind it) or the wait has run out (``await_over``, one session
     timeout; the master's watchdog is then taken as dead and we register, to be promoted
     by the handover sequence). A replica whose link is down registers at once: its
     master is most likely dead, and failing over is what it is for.
   * our node is the lowest: ``Confirm`` (re-read the members: a stale view must never
     promote), then ``REPLICAOF NO ONE`` if it is a replica, then lift our fence.
   * otherwise: replicate the lowest member; lift our fence (a paused replica does not
     apply its replication stream).

Invariant: a redis is made writable (``Promote``, or ``Unfence`` of a master) only right
after ``Confirm`` in the same turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cluster.zkschema import Member
from .probe import Health


@dataclass(frozen=True, slots=True)
class Listing:
    """The shard's children as read in this turn (``members`` by sequence)."""

    members: tuple[Member, ...]
    orphans: tuple[str, ...] = ()  # our address, our session, not our node: lowest first
    ghosts: tuple[str, ...] = ()  # our address, another session


@dataclass(frozen=True, slots=True)
class State:
    me: str  # our redis, "host:port": also the prefix of our node's name
    health: Health | None  # the last health check; None if it failed
    last_role: str | None  # the role at the last successful check
    failures: int  # consecutive failed checks
    failure_limit: int
    listing: Listing | None  # None: ZooKeeper not connected or not listed
    node: str | None  # our registered node's name
    node_run_id: str | None  # the redis run_id when the node was registered
    fenced: bool  # we asked our redis to pause writes (CLIENT PAUSE WRITE)
    fence_due: bool  # not fenced, or the fence lease needs renewing
    stopping: bool = False
    await_over: bool = False  # the wait of AwaitMaster has run out: register anyway


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Fence:
    """``CLIENT PAUSE <lease> WRITE`` on our redis (sent even if it does not answer)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unfence:
    """``CLIENT UNPAUSE`` on our redis."""


@dataclass(frozen=True, slots=True)
class Follow:
    """``REPLICAOF host port`` on our redis."""

    master: str


@dataclass(frozen=True, slots=True)
class Promote:
    """Fence ``previous`` (the master our redis followed), let our redis catch up with it,
    ``REPLICAOF NO ONE``, then make ``previous`` replicate us."""

    previous: str | None


@dataclass(frozen=True, slots=True)
class Confirm:
    """Re-read the members now; abort the turn unless our node is still the lowest."""


@dataclass(frozen=True, slots=True)
class Register:
    """Create ``<me>-`` ephemeral sequential under the shard."""


@dataclass(frozen=True, slots=True)
class AwaitMaster:
    """Do not register yet: wait for ``master``'s node (the daemon notes when it began)."""

    master: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """Take ``name`` (an orphan of ours) as our node."""

    name: str


@dataclass(frozen=True, slots=True)
class Unregister:
    """Delete our node."""

    reason: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``name``, an orphan of ours."""

    name: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Our node is gone from ZooKeeper: stop counting it as ours."""

    reason: str


Action = (Fence | Unfence | Follow | Promote | Confirm | Register | AwaitMaster | Adopt | Unregister
          | Delete | Forget)


# --------------------------------------------------------------------------- rules

NO_ZOOKEEPER = "not a confirmed master: no ZooKeeper view"


def decide(s: State) -> list[Action]:
    if s.stopping:
        return _stop(s)
    if s.failures >= s.failure_limit:
        return _down(s)
    if s.health is None:
        return []
    if s.listing is None:
        return _isolated(s, s.health)
    return _connected(s, s.health, s.listing)


def _stop(s: State) -> list[Action]:
    if s.node is None or s.listing is None:
        return []
    others = [m for m in s.listing.members if m.address != s.me]
    fence: list[Action] = []
    if others and s.health is not None and s.health.role == "master" and s.fence_due:
        fence = [Fence("shutting down: a replica takes over")]
    return [*fence, Unregister("shutting down")]


def _down(s: State) -> list[Action]:
    acts: list[Action] = []
    if s.last_role == "master" and s.fence_due:
        acts.append(Fence("the redis is down or hung"))
    if s.node is not None and s.listing is not None:
        acts.append(Unregister(f"redis failed {s.failures} health checks in a row"))
    return acts


def _isolated(s: State, h: Health) -> list[Action]:
    if h.role == "master":
        return [Fence(NO_ZOOKEEPER)] if s.fence_due else []
    return [Unfence()] if s.fenced else []


def _connected(s: State, h: Health, listing: Listing) -> list[Action]:
    acts: list[Action] = []
    node = s.node
    members = [m for m in listing.members if m.name not in listing.orphans]
    if node is not None and node not in {m.name for m in members}:
        acts.append(Forget(f"node {node} is no longer in ZooKeeper"))
        node = None
    if listing.orphans:
        if node is None:
            first, *rest = listing.orphans
            return [*acts, Adopt(first), *(Delete(o) for o in rest)]
        acts.extend(Delete(o) for o in listing.orphans)
    if node is not None and s.node_run_id != h.run_id:
        return [*acts, *_restarted(s, h, members)]
    if node is None:
        return acts + _join(s, h, members, bool(listing.ghosts))
    return acts + _serve(s, h, members, node)


def _restarted(s: State, h: Health, members: list[Member]) -> list[Action]:
    """The redis restarted under our node (maybe empty, quicker than F failed checks): make
    it a replica at once — a replica not linked to its master refuses to feed others
    (NOMASTERLINK), so the shard's replicas cannot sync the empty dataset from it — then
    give up the node; it registers anew, as a replica."""
    others = [m for m in members if m.address != s.me]
    follow = _follow(s, h, others[0].address) if others else []
    return [*follow, Unregister("the redis restarted (new run_id)")]


def _join(s: State, h: Health, members: list[Member], ghosts: bool) -> list[Action]:
    """Not registered: become a replica of the lowest member, then register; into an empty
    shard, a replica linked to its master waits for that master's node first."""
    acts: list[Action] = []
    if members:
        lowest = members[0]
        if lowest.address == s.me:
            return []  # our previous incarnation still holds the master node
        acts = _follow(s, h, lowest.address)
    elif h.role == "slave" and h.master_link_up and h.master is not None and not s.await_over:
        return [*([Unfence()] if s.fenced else []), AwaitMaster(h.master)]
    return acts if ghosts else [*acts, Register()]


def _serve(s: State, h: Health, members: list[Member], node: str) -> list[Action]:
    """Registered: be what our position says."""
    lowest = members[0]
    if lowest.name == node:
        promote: list[Action] = [Promote(h.master)] if h.role != "master" else []
        unfence: list[Action] = [Unfence()] if s.fenced else []
        return [Confirm(), *promote, *unfence] if promote or unfence else []
    if lowest.address == s.me:
        return [Unregister(f"an older node of this redis ({lowest.name}) is the master")]
    return _follow(s, h, lowest.address)


def _follow(s: State, h: Health, master: str) -> list[Action]:
    acts: list[Action] = []
    if h.role != "slave" or h.master != master:
        acts.append(Follow(master))
    if s.fenced:
        acts.append(Unfence())
    return acts
