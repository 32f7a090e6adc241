"""The watchdog's control loop: check the redis, read ZooKeeper, ``decide``, execute.

Threads: the main thread runs the loop and is the only one that talks to the redis, makes
ZooKeeper requests or changes state. kazoo's threads only enqueue events (session state,
"children changed"); SIGTERM/SIGINT enqueue "stop". The loop sleeps on that queue until the
next health check is due, so a membership change is acted on at once, while health checks
keep their own cadence (an event never adds a check, so failures are counted per interval).

Notation: I = healthCheckInterval, τ = healthCheckTimeout (the deadline of every redis
command), F = healthCheckFailures, T = zkSessionTimeout, L = fence lease = 3·T.

Fencing ("never two writable masters"). The fence is ``CLIENT PAUSE L WRITE``: writes
block (reads go on) until ``CLIENT UNPAUSE`` or L ms; it is renewed every T while it must
hold, so a dead watchdog leaves at most L of pause behind. Sequences:

* Promotion (our node is the lowest, our redis a replica of P):
  1. ``Confirm``: re-read the members; go on only if our node is still the lowest. Our
     session was alive at that read, and the lowest node can only change by being
     deleted, so a stale view (e.g. this process was frozen) never promotes. Steps 2-3
     are abandoned if the ZooKeeper connection drops meanwhile.
  2. Fence P, the master we followed: ``CLIENT PAUSE L WRITE`` + ``ROLE`` to P. If P
     answers as a master, wait (≤ 1 s) until our replication offset reaches P's, so writes
     P acknowledged before the pause are not lost (a crashed or partitioned watchdog
     beside a live redis). If P is hung the commands wait in its socket; if it is dead
     there is nothing to fence.
  3. ``REPLICAOF NO ONE`` on our redis, then ``CLIENT UNPAUSE`` if we had fenced it.
  4. ``REPLICAOF <us>`` + ``CLIENT UNPAUSE`` to P (or queued in a hung P's socket), so P is
     a read-only replica from then on, even if its own watchdog is gone.
* Giving up (F failed checks): if the redis was a master, send the fence first — to a hung
  redis it waits in the socket and is executed as soon as the process runs again, before
  its watchdog has even seen it healthy — then delete our node. The hung redis wakes
  paused; its watchdog sees it healthy, finds the new master, ``REPLICAOF new``,
  ``CLIENT UNPAUSE``, and only then registers (with a higher sequence: a replica).
  Commands already sitting in the redis's client sockets when it hung (sent before the
  failover) may still run as it wakes: the proxy has failed them on its own timeout.
* Losing ZooKeeper (SUSPENDED, or a listing that fails): a master is fenced at once;
  after reconnecting to the same session and confirming it is still the lowest, it is
  unfenced; after the session expired, it registers anew by the rules of registering
  (below), and is unfenced only once ``Confirm`` finds its node the lowest.
* Registering: a redis that has no node first becomes ``REPLICAOF`` the lowest member,
  then registers. If no member exists it registers as it is and is unfenced only after
  ``Confirm`` — except a replica whose link to its master is up: it waits (``AwaitMaster``)
  until its master's node is back, then registers behind it, or until T has passed since
  it first found the shard empty, then registers anyway (see "ZooKeeper-wide session loss").
  And a master whose own linked replica holds the lowest node right after ZooKeeper came
  back registers without following it, fenced (see "Some sessions survived" below).
* A redis restart (new ``run_id``), even within F·I, counts as a failure: the redis is
  first made ``REPLICAOF`` the next member (a replica without a master link refuses to
  feed replicas: NOMASTERLINK), then the node is deleted and it rejoins as a replica — an
  empty ex-master never stays master. Limit: a replica whose link to it reconnected
  before the watchdog's next check (≤ I) may already have copied the empty dataset; run
  redis with persistence, or restart it no sooner than F·I after a crash.
* A clean stop (SIGTERM) of a master's watchdog with replicas registered fences it, then
  deletes the node: the replica takes over through the promotion sequence above.

ZooKeeper-wide session loss (every node of a shard gone at once: an outage longer than T,
or a paused server whose clock ran on — on resume it expires every session). The sequence
must follow the data's recency: the redis that was master, if healthy, is master again.
Decisions, by case:

* Everyone healthy, every session expired: each master's watchdog registers as soon as it
  has a new session (its redis, fenced since SUSPENDED, is unfenced after ``Confirm``);
  each replica's watchdog, its link to that master up, waits for the master's node and
  registers behind it. The watchdogs reconnect within the reconnect backoff of
  ``cluster/zk.py`` (≤ 1 s, ×1.4 jitter) of ZooKeeper answering, well inside the wait T.
* Some sessions survived. Which ones is timing: as a paused server resumes, a session
  whose reconnection it handles before its expiry pass reaches that session lives on (a
  reconnection attempt sent during the pause and abandoned by the client counts too; the
  client then comes back to the same session after its backoff). A replica whose session
  expired and whose master's did not sees the master's node and registers behind it.
  A master whose session expired while its replicas' survived leaves a replica the lowest
  node; every side holds ("resumed": a hold begins less than T after the watchdog's own
  reconnection and lasts at most T, however often the connection comes back meanwhile —
  T from when the replica's node became the lowest, not from its reconnection: after a
  ZooKeeper restart the master's session expires up to T after the replica reconnected,
  and its watchdog learns it only when its own reconnection gets through):
  - the replica's watchdog, its node the lowest and its redis's link to its master up,
    does not promote (``Hold``); once the master's node appears (behind its own) it steps
    back: deletes its node and registers again, behind the master's.
  - any other replica's watchdog, its link to the master up, keeps its redis replicating
    the master rather than following the lowest node (it holds too); when the lowest has
    stepped back, its own node may be the lowest, and it steps back in turn.
  - the master's watchdog, with its new session, asks the redis of the lowest node (ROLE,
    ≤ τ); if it answers as a replica of ours with its link up, it does not follow it and
    keeps its fence (lease renewed), and registers as it is; when the replica has stepped
    back, its node is the lowest and ``Confirm`` unfences it.
  So the master stays master, unwritable meanwhile (fenced; the proxies route to the
  lowest node, a read-only replica). If the master's node has not appeared when the
  replica's hold ends (its watchdog is slow, dead, or cut off), the replica takes over by
  the promotion sequence (fence, catch up, promote, demote): the master moves, no
  acknowledged write is lost (it was fenced, the replica is linked and catches up). A
  master whose replica has not stepped back when its own hold ends follows the lowest node.
  Limits: the two sides recognise each other by address — the master's address as the
  replica's ROLE names it must be the master's watchdog address (it is, when the watchdogs'
  ``REPLICAOF`` set it) — otherwise the master follows its replica and moves, as above. A
  replica cannot tell this from a master's watchdog that lost ZooKeeper alone: one whose
  own connection came back less than T before its master's node went (for any reason, its
  master's redis still linked) waits T after that before promoting; a replica whose
  connection did not drop promotes at once, as ever.
* The master's redis died during the outage: its watchdog cannot register (failed
  checks); the replica's link is down, so it registers at once and is promoted.
* The master's redis hung: the replica's link stays up (until redis's repl-timeout), so it
  waits T, registers, and is promoted; the fence waits in the hung master's socket.
* The master's watchdog died: after T the replica registers and takes over by the
  promotion sequence — what the death of a master's watchdog costs with ZooKeeper up.
  Writes the master took after the dead watchdog's lease ran out (from proxies still
  routing to it) are copied by the catch-up.
* The replica's link is down (the master alive all the same, say a link that broke during
  the outage): it registers at once, as its master is most likely dead and failing over
  is what it is for. Limit: if that master is alive and registers later, the replica is
  the lowest and is promoted; the fence stops the master, but with the link down the
  catch-up cannot copy the writes made since the link broke, and they are lost when the
  master is demoted.

ZooKeeper-loss policy, both sides:

* Watchdog, connection lost: a master is fenced when kazoo declares SUSPENDED — one ping
  unanswered: between T/3 − 0.4 s and 2T/3 after ZooKeeper stopped answering (kazoo pings
  after T/3 idle less a jitter of 0.01-0.4 s) — plus the call in flight. Writes stay
  possible until then, and not after; reads go on. A replica is left replicating.
  Same session back: ``Confirm``, unfence. Session expired: register again as above.
* Proxy (``cluster/topology.py``): keeps routing by its last table while ZooKeeper is
  unreachable (writes to a fenced master wait in it and hit the proxy's ``timeout``); on
  a new session it registers its node again and re-reads the layout. A shard whose nodes
  expired and whose master's watchdog has not registered again has no master in that
  table: its keys get a prompt error until the master's node is back.
* Never two writable masters: a master is writable only while its watchdog is connected
  and has confirmed its node is the lowest. Cut off, it is fenced (bound below) before its
  session can expire (≥ T after its last contact) — the earliest another node can become
  the lowest. Nobody is promoted without ``Confirm``, a read in a live session, so while
  ZooKeeper is down for everyone nobody is promoted; and a promotion fences the master it
  followed first.
* No writes through an outage longer than the session. A master cut off from ZooKeeper
  cannot tell an outage of the whole ensemble (nobody can be promoted) from its own
  isolation (its node expires after T and a replica is promoted); writable beyond its
  session it would rest on the promoter's fence reaching it. "Writable while every
  registered replica is attached and nothing else can be promoted" fails on both halves:
  a replica promoted by its watchdog detaches, and the master sees that only at its next
  check (I + τ later), both writable meanwhile unless the promoter's fence arrived — not
  guaranteed: a fence that times out is queued, not confirmed; a watchdog need not run on
  its redis's host; a silently partitioned replica stays listed as attached for
  repl-timeout. And who else can be promoted is unknowable while cut off: a replica that
  registered after the master's last listing, or a redis registering into a shard whose
  nodes all expired, is promoted without the master hearing of it. A paused ZooKeeper
  expires every session the moment it resumes, so such a promotion can come at once. The
  session is the master's lease, and only ZooKeeper can renew it.

Timing bounds (measured numbers are in the test report / README):

* Dead master: its watchdog gives up after F checks, ≈ F·I (connection refused is
  immediate), deletes its node; the replica's watchdog is woken by the watch and promotes
  (nothing to fence or catch up): failover ≈ F·I + a few ms.
* Hung master: ≈ F·max(I, τ) + τ (its watchdog queues the fence without waiting; the
  replica waits τ for the hung master's answer to its own fence before promoting).
* Master's watchdog crashed, or its whole host lost: the node expires T to T + tickTime
  after the watchdog's last contact; failover ≈ T (+ τ if the old master's address does
  not answer the fence, + the catch-up if it does, ≤ 1 s).
* Watchdog cut off from ZooKeeper: kazoo pings after T/3 idle and drops the connection
  when that ping is unanswered T/3 later, so SUSPENDED comes ≤ 2T/3 after the last
  contact (at once on a reset connection). The loop fences after finishing the call in
  flight: normally one redis command (≤ τ; also the ROLE a master asks of the lowest
  node's redis just after ZooKeeper came back); in the worst case a ZooKeeper request queued
  just as the connection dropped (≤ T/6) and two more redis commands of a promotion.
  Fenced ≤ 2T/3 + τ typically, ≤ 5T/6 + 2τ at worst, against ≥ T before the session can
  expire and a replica be promoted: keep τ < T/12 (defaults T = 4000, τ = 250 ms).
* ZooKeeper back after an outage: same session — writable again once reconnected and
  confirmed (the reconnect backoff, ≤ 1.4 s, + a round trip); sessions expired — once the
  new session's node is created and confirmed (the same, + two round trips); only the
  master's session expired — once its replica has stepped back (+ a ROLE to the replica and
  three round trips more). A linked replica waits ≤ T for its master's node, and holds the
  lowest node ≤ T.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import replace
from typing import Any

from kazoo.client import KazooState

from .. import address
from . import decide as d
from .conf import Conf
from .metrics import Metrics
from .probe import Conn, Health, NotSent, RedisError, ReplyError, check, parse_role
from .registrar import MissingShard, Registrar, ZkError
from .status import EVENTS_KEPT, Event, Member, View

log = logging.getLogger("pyproxy.watchdog")

CATCH_UP_LIMIT = 1.0  # seconds a promotion waits for our replica to reach the old master
CATCH_UP_POLL = 0.01


class Daemon:
    def __init__(self, conf: Conf, me: str, shard: str, metrics: Metrics | None = None) -> None:
        self.conf = conf
        self.me = me
        self.shard = shard
        self.started = time.time()
        self.lease_ms = 3 * conf.zk_session_timeout_ms
        self.metrics = metrics or Metrics()
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.redis = Conn(me, conf.probe_timeout, conf.redis_password)
        self.zk = Registrar(conf.zk_servers, conf.session_timeout, shard, me, self.post_event,
                            conf.zk_auth)
        # what decide() sees
        self.health: Health | None = None
        self.last_role: str | None = None
        self.failures = 0
        self.listing: d.Listing | None = None
        self.node: str | None = None
        self.node_run_id: str | None = None
        self.fenced = False
        self.fenced_at = 0.0
        self.stopping = False
        self.awaiting: tuple[str, float] | None = None  # AwaitMaster: (master, since when)
        self.reconnected_at: float | None = None  # ZooKeeper back after a loss: when
        self.held_since: float | None = None  # the first of the current run of Hold turns
        # loop bookkeeping
        self.connected = False
        self.lost = False  # the ZooKeeper connection was lost since it was last up
        self.holding: str | None = None  # the reason of the current Hold, once logged
        self.dirty = True  # the listing must be read again
        self.next_check = 0.0
        self.shard_missing = False
        self.recent: deque[Event] = deque(maxlen=EVENTS_KEPT)  # for the status page

    # ------------------------------------------------------------------ events
    def post_event(self, kind: str, value: Any = None) -> None:
        """Thread-safe: the only thing other threads (kazoo, signals) may call."""
        self.events.put((kind, value))

    def _wait_events(self) -> None:
        timeout = max(0.0, self.next_check - time.monotonic())
        try:
            self._on_event(*self.events.get(timeout=timeout))
        except queue.Empty:
            return
        while True:
            try:
                self._on_event(*self.events.get_nowait())
            except queue.Empty:
                return

    def _on_event(self, kind: str, value: Any) -> None:
        if kind == "stop":
            self.stopping = True
        elif kind == "zk-children":
            self.dirty = True
        elif kind == "zk-state":
            self._on_zk_state(value)

    def _on_zk_state(self, state: KazooState) -> None:
        if state == KazooState.CONNECTED:
            self.connected = self.dirty = True
            if self.lost:
                self.reconnected_at = time.monotonic()
                self.lost = False
            log.info("ZooKeeper connected, session 0x%x", self.zk.session_id or 0)
            return
        self.connected = False
        self.lost = True
        self.listing = None
        if state == KazooState.LOST:
            if self.node is not None:
                log.warning("ZooKeeper session expired: node %s is gone", self.node)
            self.node = self.node_run_id = None
        else:
            log.warning("ZooKeeper connection lost (suspended)")

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.zk.start()
        try:
            self._await_first_session()
            while not self.stopping:  # the turn that sees "stop" unregisters
                self._wait_events()
                try:
                    self._turn()
                except Exception:  # a bug must not drop the node: log it, go on
                    log.exception("unexpected error in the control loop")
        finally:
            self.zk.stop()
            self.redis.close()

    def _await_first_session(self) -> None:
        """Wait for the first ZooKeeper session, at most T/6, before the first decision:
        deciding without a view fences a master (rule 4 of ``decide``), so every normal start
        would pause it for nothing. Safe: a starting watchdog holds no node, so no promotion
        waits on its fence, and a replica being promoted fences its old master itself."""
        deadline = time.monotonic() + self.conf.session_timeout / 6
        while not self.connected and not self.stopping:
            try:
                self._on_event(*self.events.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return

    def _turn(self) -> None:
        now = time.monotonic()
        if now >= self.next_check and not self.stopping:
            self.next_check = now + self.conf.interval
            self._check()
        self._refresh()
        state = self._state()
        actions = d.decide(state)
        if any(isinstance(a, d.Hold) for a in actions):
            if self.held_since is None:
                self.held_since = now
        elif state.health is not None and state.listing is not None:  # decided on a full view
            self.held_since = self.holding = None
        self._execute(actions)
        self._gauges()
        self.metrics.publish(self._view())

    def _check(self) -> None:
        try:
            health = check(self.redis)
        except RedisError as exc:
            self.health = None
            self.failures += 1
            self.metrics.checks.labels("fail").inc()
            if self.failures in (1, self.conf.health_failures):
                log.warning("health check %d/%d failed: %s", self.failures,
                            self.conf.health_failures, exc)
            return
        if self.failures:
            log.info("redis answers again after %d failed checks", self.failures)
        self.failures = 0
        self.health = health
        self.last_role = health.role
        self.metrics.checks.labels("ok").inc()

    def _refresh(self) -> None:
        if not self.connected:
            self.listing = None
            return
        if not self.dirty:
            return
        self.dirty = False
        try:
            self.listing = self.zk.list(self.node)
        except ZkError as exc:
            self.listing = None
            self.dirty = True
            if not isinstance(exc, MissingShard):
                log.warning("cannot list members: %s", exc)
            elif not self.shard_missing:
                log.error("%s; waiting for it (create it with its weight)", exc)
            self.shard_missing = isinstance(exc, MissingShard)
            return
        self.shard_missing = False

    def _state(self) -> d.State:
        now = time.monotonic()
        renew = self.fenced_at + self.conf.session_timeout
        await_over = (self.awaiting is not None
                      and now >= self.awaiting[1] + self.conf.session_timeout)
        # a hold begins less than one session timeout after our reconnection and lasts one
        # session timeout at most (however often the connection comes back meanwhile)
        hold_from = now if self.held_since is None else self.held_since
        resumed = (self.reconnected_at is not None
                   and hold_from < self.reconnected_at + self.conf.session_timeout
                   and now < hold_from + self.conf.session_timeout)
        state = d.State(
            me=self.me, health=self.health, last_role=self.last_role, failures=self.failures,
            failure_limit=self.conf.health_failures, listing=self.listing, node=self.node,
            node_run_id=self.node_run_id, fenced=self.fenced,
            fence_due=not self.fenced or now >= renew, stopping=self.stopping,
            await_over=await_over, resumed=resumed,
        )
        target = d.probe_target(state)
        if target is None:
            return state
        return replace(state, lowest_follows_us=self._follows_us(target))

    def _follows_us(self, address: str) -> bool:
        """Whether the redis at ``address`` is a replica of ours with its link up (ROLE)."""
        conn = Conn(address, self.conf.probe_timeout, self.conf.redis_password)
        try:
            health = check(conn)
        except RedisError as exc:
            log.info("cannot ask %s whether it replicates us: %s", address, exc)
            return False
        finally:
            conn.close()
        return health.role == "slave" and health.master == self.me and health.master_link_up

    def _gauges(self) -> None:
        m = self.metrics
        m.master.set(1 if self.health is not None and self.health.role == "master" else 0)
        m.registered.set(1 if self.node is not None else 0)
        m.fenced.set(1 if self.fenced else 0)
        m.zk_connected.set(1 if self.connected else 0)

    def _view(self) -> View:
        health, listing = self.health, self.listing
        return View(
            redis=self.me, shard=self.shard, started=self.started,
            role=health.role if health else None, follows=health.master if health else None,
            link_up=bool(health and health.master_link_up),
            offset=health.offset if health else None, failures=self.failures,
            failure_limit=self.conf.health_failures, connected=self.connected,
            session=self.zk.session_id if self.connected else None, node=self.node,
            members=None if listing is None else tuple(
                Member(m.name, m.address) for m in listing.members),
            fenced_for=time.monotonic() - self.fenced_at if self.fenced else None,
            events=tuple(reversed(self.recent)))

    # ------------------------------------------------------------------ actions
    def _execute(self, actions: list[d.Action]) -> None:
        for action in actions:
            fenced = self.fenced
            try:
                if self._do(action) is False:
                    return
            except (RedisError, ZkError) as exc:
                log.warning("%s failed: %s", type(action).__name__, exc)
                self._note(f"{_describe(action)}: failed ({exc})")
                self.dirty = True
                return
            if not isinstance(action, d.Confirm | d.Fence) or (self.fenced and not fenced):
                self._note(_describe(action))  # a fence's renewals are not news

    def _note(self, text: str) -> None:
        """Keep ``text`` for the status page's recent actions (not twice in a row)."""
        if not self.recent or self.recent[-1].text != text:
            self.recent.append(Event(time.time(), text))

    def _do(self, action: d.Action) -> bool | None:
        match action:
            case d.Fence(reason):
                self._fence(reason)
            case d.Unfence():
                self.redis.call("CLIENT", "UNPAUSE")
                self.fenced = False
                log.info("fence lifted (CLIENT UNPAUSE)")
            case d.Follow(master):
                host, port = address.parse(master)
                self.redis.call("REPLICAOF", host, port)
                self._set_role("slave", master)
                log.info("now a replica of %s (REPLICAOF %s %d)", master, host, port)
            case d.Promote(previous):
                self._promote(previous)
            case d.Confirm():
                return self._confirm()
            case d.Register():
                self._register()
            case d.AwaitMaster(master):
                self._await(master)
            case d.Hold(reason):
                if reason != self.holding:
                    log.warning("holding for at most %.1f s after ZooKeeper came back: %s",
                                self.conf.session_timeout, reason)
                    self.holding = reason
            case d.Adopt(name):
                self._own(name)
                log.warning("adopted %s, left by a create whose reply was lost", name)
            case d.Unregister(reason):
                assert self.node is not None
                self.zk.delete(self.node)
                log.warning("deleted node %s: %s", self.node, reason)
                self.node = self.node_run_id = None
                self.dirty = True
            case d.Delete(name):
                self.zk.delete(name)
                log.warning("deleted %s, left by a create whose reply was lost", name)
                self.dirty = True
            case d.Forget(reason):
                log.warning("%s", reason)
                self.node = self.node_run_id = None
        return None

    def _set_role(self, role: str, master: str | None) -> None:
        if self.health is not None:
            self.health = replace(self.health, role=role, master=master)
            self.last_role = role

    def _fence(self, reason: str) -> None:
        pause = ("CLIENT", "PAUSE", self.lease_ms, "WRITE")
        try:
            if self.health is None:  # not answering: queue it, don't wait for a reply
                self.redis.post(pause)
                how = "CLIENT PAUSE queued: the redis does not answer"
            else:
                self.redis.call(*pause)
                how = f"CLIENT PAUSE {self.lease_ms} WRITE"
        except NotSent as exc:
            if self.failures <= self.conf.health_failures:  # once per outage, not every turn
                log.warning("cannot fence the redis: %s", exc)
            return
        except ReplyError as exc:
            log.error("the redis refused CLIENT PAUSE: %s", exc)
            return
        except RedisError as exc:
            how = f"CLIENT PAUSE queued, not confirmed: {exc}"
        if not self.fenced:
            log.warning("fenced (%s): %s", reason, how)
        self.fenced = True
        self.fenced_at = time.monotonic()

    def _confirm(self) -> bool:
        self.listing = self.zk.list(self.node)
        members = self.listing.members
        if members and members[0].name == self.node:
            return True
        log.warning("not promoting: %s is no longer the lowest node", self.node)
        self.dirty = True
        return False

    def _promote(self, previous: str | None) -> None:
        answered = None
        if previous is not None and previous != self.me:
            answered = self._fence_previous(previous)
        self._still_connected()
        self.redis.call("REPLICAOF", "NO", "ONE")
        self._set_role("master", None)
        self.metrics.promotions.inc()
        log.warning("promoted to master (REPLICAOF NO ONE); previous master %s", previous)
        if previous is not None and answered is not None:
            self._demote(previous, answered)

    def _fence_previous(self, previous: str) -> bool | None:
        """Pause writes on the master we followed. True: it answered; False: it did not (the
        commands wait in its socket); None: unreachable, nothing sent."""
        conn = Conn(previous, self.conf.probe_timeout, self.conf.redis_password)
        try:
            _, role_reply = conn.pipeline(("CLIENT", "PAUSE", self.lease_ms, "WRITE"), ("ROLE",))
            role, _, offset = parse_role(role_reply)
        except NotSent as exc:
            log.info("previous master %s is down, nothing to fence (%s)", previous, exc)
            return None
        except RedisError as exc:
            log.warning("previous master %s did not answer, fence queued: %s", previous, exc)
            return False
        finally:
            conn.close()
        log.warning("previous master %s fenced (was %s at offset %d)", previous, role, offset)
        if role == "master":
            self._catch_up(offset)
        return True

    def _still_connected(self) -> None:
        """Abort a promotion if ZooKeeper went away since ``Confirm``."""
        if not self.zk.connected:
            raise ZkError("ZooKeeper connection lost: not promoting")

    def _catch_up(self, target: int) -> None:
        deadline = time.monotonic() + CATCH_UP_LIMIT
        while True:
            self._still_connected()
            health = check(self.redis)
            if health.role != "slave" or health.offset >= target:
                return
            if time.monotonic() >= deadline:
                log.warning("replication offset %d < %d after %.1f s: promoting anyway",
                            health.offset, target, CATCH_UP_LIMIT)
                return
            time.sleep(CATCH_UP_POLL)

    def _demote(self, previous: str, answered: bool) -> None:
        host, port = address.parse(self.me)
        commands = (("REPLICAOF", host, port), ("CLIENT", "UNPAUSE"))
        conn = Conn(previous, self.conf.probe_timeout, self.conf.redis_password)
        try:
            if answered:
                conn.pipeline(*commands)
                log.warning("previous master %s is now our replica", previous)
            else:
                conn.post(*commands)
                log.warning("previous master %s: REPLICAOF %s queued", previous, self.me)
        except RedisError as exc:
            log.warning("previous master %s: REPLICAOF %s not confirmed: %s",
                        previous, self.me, exc)
        finally:
            conn.close()

    def _await(self, master: str) -> None:
        if self.awaiting is None or self.awaiting[0] != master:
            self.awaiting = (master, time.monotonic())
            log.warning("the shard is empty and our redis replicates %s (link up): waiting up "
                        "to %.1f s for its node before registering", master,
                        self.conf.session_timeout)

    def _register(self) -> None:
        try:
            name = self.zk.create()
        except ZkError as exc:
            if not isinstance(exc, MissingShard):
                log.warning("create's outcome is unknown: the next listing adopts or deletes it")
            raise
        waited = self.awaiting
        self._own(name)
        log.info("registered %s", self.zk.path(name))
        if waited is not None:
            log.warning("registered %.1f s after we began waiting for %s's node",
                        time.monotonic() - waited[1], waited[0])

    def _own(self, name: str) -> None:
        assert self.health is not None
        self.node = name
        self.node_run_id = self.health.run_id
        self.awaiting = None
        self.dirty = True


def _describe(action: d.Action) -> str:
    """An action in the words of the status page."""
    match action:
        case d.Fence(reason):
            return f"fenced (CLIENT PAUSE WRITE): {reason}"
        case d.Unfence():
            return "fence lifted (CLIENT UNPAUSE)"
        case d.Follow(master):
            return f"made a replica of {master}"
        case d.Promote(previous):
            return f"promoted to master (previous master {previous or 'none'})"
        case d.Register():
            return "registered in ZooKeeper"
        case d.AwaitMaster(master):
            return f"waiting for {master}'s node before registering"
        case d.Hold(reason):
            return f"holding: {reason}"
        case d.Adopt(name):
            return f"adopted node {name}"
        case d.Unregister(reason):
            return f"node deleted: {reason}"
        case d.Delete(name):
            return f"deleted leftover node {name}"
        case d.Forget(reason):
            return f"node lost: {reason}"
        case d.Confirm():
            return "confirmed the lowest node"
