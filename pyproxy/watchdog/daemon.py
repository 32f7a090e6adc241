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
  unfenced; after the session expired, it follows the new master and registers anew.
* Registering: a redis that has no node first becomes ``REPLICAOF`` the lowest member,
  then registers. If no member exists it registers as it is and is unfenced only after
  ``Confirm``.
* A redis restart (new ``run_id``), even within F·I, counts as a failure: the redis is
  first made ``REPLICAOF`` the next member (a replica without a master link refuses to
  feed replicas: NOMASTERLINK), then the node is deleted and it rejoins as a replica — an
  empty ex-master never stays master. Limit: a replica whose link to it reconnected
  before the watchdog's next check (≤ I) may already have copied the empty dataset; run
  redis with persistence, or restart it no sooner than F·I after a crash.
* A clean stop (SIGTERM) of a master's watchdog with replicas registered fences it, then
  deletes the node: the replica takes over through the promotion sequence above.

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
  flight: normally one redis command (≤ τ); in the worst case a ZooKeeper request queued
  just as the connection dropped (≤ T/6) and two more redis commands of a promotion.
  Fenced ≤ 2T/3 + τ typically, ≤ 5T/6 + 2τ at worst, against ≥ T before the session can
  expire and a replica be promoted: keep τ < T/12 (defaults T = 4000, τ = 250 ms).
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import replace
from typing import Any

from kazoo.client import KazooState

from .. import address
from . import decide as d
from .conf import Conf
from .metrics import Metrics
from .probe import Conn, Health, NotSent, RedisError, ReplyError, check, parse_role
from .registrar import MissingShard, Registrar, ZkError

log = logging.getLogger("pyproxy.watchdog")

CATCH_UP_LIMIT = 1.0  # seconds a promotion waits for our replica to reach the old master
CATCH_UP_POLL = 0.01


class Daemon:
    def __init__(self, conf: Conf, me: str, shard: str, metrics: Metrics | None = None) -> None:
        self.conf = conf
        self.me = me
        self.lease_ms = 3 * conf.zk_session_timeout_ms
        self.metrics = metrics or Metrics()
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.redis = Conn(me, conf.probe_timeout)
        self.zk = Registrar(conf.zk_servers, conf.session_timeout, shard, me, self.post_event)
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
        # loop bookkeeping
        self.connected = False
        self.dirty = True  # the listing must be read again
        self.next_check = 0.0
        self.shard_missing = False

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
            log.info("ZooKeeper connected, session 0x%x", self.zk.session_id or 0)
            return
        self.connected = False
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
        self._execute(d.decide(self._state()))
        self._gauges()

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
        renew = self.fenced_at + self.conf.session_timeout
        return d.State(
            me=self.me, health=self.health, last_role=self.last_role, failures=self.failures,
            failure_limit=self.conf.health_failures, listing=self.listing, node=self.node,
            node_run_id=self.node_run_id, fenced=self.fenced,
            fence_due=not self.fenced or time.monotonic() >= renew, stopping=self.stopping,
        )

    def _gauges(self) -> None:
        m = self.metrics
        m.master.set(1 if self.health is not None and self.health.role == "master" else 0)
        m.registered.set(1 if self.node is not None else 0)
        m.fenced.set(1 if self.fenced else 0)
        m.zk_connected.set(1 if self.connected else 0)

    # ------------------------------------------------------------------ actions
    def _execute(self, actions: list[d.Action]) -> None:
        for action in actions:
            try:
                if self._do(action) is False:
                    return
            except (RedisError, ZkError) as exc:
                log.warning("%s failed: %s", type(action).__name__, exc)
                self.dirty = True
                return

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
        conn = Conn(previous, self.conf.probe_timeout)
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
        conn = Conn(previous, self.conf.probe_timeout)
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

    def _register(self) -> None:
        try:
            name = self.zk.create()
        except ZkError as exc:
            if not isinstance(exc, MissingShard):
                log.warning("create's outcome is unknown: the next listing adopts or deletes it")
            raise
        self._own(name)
        log.info("registered %s", self.zk.path(name))

    def _own(self, name: str) -> None:
        assert self.health is not None
        self.node = name
        self.node_run_id = self.health.run_id
        self.dirty = True
