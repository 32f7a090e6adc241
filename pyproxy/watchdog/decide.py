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

   Right after ZooKeeper came back (``resumed``: the first turn of a run of ``Hold`` comes
   less than one session timeout after our connection was regained, and the run lasts one
   session timeout at most; the daemon keeps the clock), three rules come
   first, for a shard where only the master's session expired and its replicas' survived —
   the lowest replica then holds the lowest node, and promoting it would move the master:

   * our node is the lowest and our redis a replica whose link to its master is up: do not
     promote (``Hold``). Once that master's node is back behind ours, step back: delete our
     node and register again, behind it. When ``resumed`` ends, the rule above promotes us
     (the master's watchdog is then taken as dead or cut off).
   * our redis is a replica whose link to its master is up, and the lowest node is
     another redis's: do not follow the lowest (``Hold``; register if we have no node).
     With more than one replica the lowest may be another replica of that master, holding
     it; once it steps back ours may be the lowest and steps back in turn, whereas
     following it would make our redis a replica of a replica, which the master's probe
     below does not recognise (the master would follow it and move).
   * our redis is a master and the lowest node is another redis that answers ROLE as a
     replica of ours with its link up (``lowest_follows_us``; the daemon asks the redis
     that ``probe_target`` names): do not follow it (``Hold``), stay fenced (lease
     renewed), and register if we have no node (a ghost delays it, as above), so that it
     sees our node and steps back. When ``resumed`` ends, we follow it as above.

Invariant: a redis is made writable (``Promote``, or ``Unfence`` of a master) only right
after ``Confirm`` in the same turn; a master that holds instead of following the lowest
node stays fenced.
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
    resumed: bool = False  # ZooKeeper came back just before: we may Hold (for ≤ T)
    lowest_follows_us: bool = False  # the redis of probe_target() replicates ours, link up


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
class Hold:
    """Leave the redis's role as it is for now (a wait bounded by ``resumed``); the daemon
    logs ``reason`` once."""

    reason: str


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


Action = (Fence | Unfence | Follow | Promote | Confirm | Register | AwaitMaster | Hold | Adopt
          | Unregister | Delete | Forget)


# --------------------------------------------------------------------------- rules

NO_ZOOKEEPER = "not a confirmed master: no ZooKeeper view"
BEHIND_REPLICA = "not a confirmed master: the lowest node is our replica's"


def probe_target(s: State) -> str | None:
    """The redis the daemon must ask (ROLE) for ``lowest_follows_us`` before ``decide``: the
    lowest member's, when our redis is a master, ``resumed`` holds and that member is
    another redis; None when the answer would change nothing."""
    h, listing = s.health, s.listing
    if h is None or h.role != "master" or not s.resumed or listing is None or s.stopping:
        return None
    members = _members(listing)
    if not members or members[0].address == s.me:
        return None
    return members[0].address


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
    members = _members(listing)
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


def _members(listing: Listing) -> list[Member]:
    return [m for m in listing.members if m.name not in listing.orphans]


def _restarted(s: State, h: Health, members: list[Member]) -> list[Action]:
    """The redis restarted under our node (maybe empty, quicker than F failed checks): make
    it a replica at once — a replica not linked to its master refuses to feed others
    (NOMASTERLINK), so the shard's replicas cannot sync the empty dataset from it — then
    give up the node; it registers anew, as a replica."""
    others = [m for m in members if m.address != s.me]
    follow = _follow(s, h, others[0].address) if others else []
    return [*follow, Unregister("the redis restarted (new run_id)")]


def _join(s: State, h: Health, members: list[Member], ghosts: bool) -> list[Action]:
    """Not registered: become a replica of the lowest member, then register (just after
    ZooKeeper came back, a master whose linked replica holds the lowest node, and a linked
    replica of another redis, register without following it); into an empty shard, a
    replica linked to its master waits for that master's node first."""
    acts: list[Action] = []
    if members:
        lowest = members[0]
        if lowest.address == s.me:
            return []  # our previous incarnation still holds the master node
        acts = (_behind_replica(s, h, lowest.address) or _keep_master(s, h, lowest.address)
                or _follow(s, h, lowest.address))
    elif h.role == "slave" and h.master_link_up and h.master is not None and not s.await_over:
        return [*([Unfence()] if s.fenced else []), AwaitMaster(h.master)]
    return acts if ghosts else [*acts, Register()]


def _serve(s: State, h: Health, members: list[Member], node: str) -> list[Action]:
    """Registered: be what our position says."""
    lowest = members[0]
    unfence: list[Action] = [Unfence()] if s.fenced else []
    if lowest.name == node:
        if s.resumed and h.role == "slave" and h.master_link_up and h.master is not None:
            return _step_back(h.master, members) or [*unfence, Hold(
                f"our node is the lowest and our redis replicates {h.master} (link up): not "
                f"promoting it, for {h.master}'s node to come back")]
        promote: list[Action] = [Promote(h.master)] if h.role != "master" else []
        return [Confirm(), *promote, *unfence] if promote or unfence else []
    if lowest.address == s.me:
        return [Unregister(f"an older node of this redis ({lowest.name}) is the master")]
    return (_behind_replica(s, h, lowest.address) or _keep_master(s, h, lowest.address)
            or _follow(s, h, lowest.address))


def _step_back(master: str, members: list[Member]) -> list[Action]:
    """Our node is the lowest, our redis replicates ``master``: if ``master``'s node is back
    (behind ours), register again behind it so that it stays master."""
    if not any(m.address == master for m in members):
        return []
    return [Unregister(f"stepping back: {master}'s node is back and our redis replicates it"),
            Register()]


def _behind_replica(s: State, h: Health, lowest: str) -> list[Action]:
    """Our redis is a master and the lowest node is its linked replica's, just after
    ZooKeeper came back: stay fenced and keep our role (that replica is to step back)."""
    if not (s.resumed and h.role == "master" and s.lowest_follows_us):
        return []
    fence: list[Action] = [Fence(BEHIND_REPLICA)] if s.fence_due else []
    return [*fence, Hold(f"the lowest node is {lowest}'s, a replica of our redis (link up): "
                         "not following it, for it to step back behind our node")]


def _keep_master(s: State, h: Health, lowest: str) -> list[Action]:
    """Just after ZooKeeper came back, our redis replicates a master (link up) that is not
    the lowest node's: keep it there rather than follow the lowest, which may be another
    replica of that master holding it — so that, once that one has stepped back, ours is
    the lowest, the master's probe recognises it as its replica, and it steps back too."""
    if not (s.resumed and h.role == "slave" and h.master_link_up and h.master is not None
            and h.master != lowest):
        return []
    return [*([Unfence()] if s.fenced else []), Hold(
        f"our redis replicates {h.master} (link up): not following the lowest node, "
        f"{lowest}'s, for now")]


def _follow(s: State, h: Health, master: str) -> list[Action]:
    acts: list[Action] = []
    if h.role != "slave" or h.master != master:
        acts.append(Follow(master))
    if s.fenced:
        acts.append(Unfence())
    return acts
