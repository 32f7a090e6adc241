"""Watchdog pieces without servers: decide() rules, the conf file, the RESP client, the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pyproxy.cluster.zkschema import order_members
from pyproxy.watchdog import cli
from pyproxy.watchdog import conf as confmod
from pyproxy.watchdog.decide import (
    BEHIND_REPLICA,
    NO_ZOOKEEPER,
    Adopt,
    AwaitMaster,
    Confirm,
    Delete,
    Fence,
    Follow,
    Forget,
    Hold,
    Listing,
    Promote,
    Register,
    State,
    Unfence,
    Unregister,
    decide,
    probe_target,
)
from pyproxy.watchdog.probe import (
    Conn,
    Health,
    NotSent,
    RedisError,
    ReplyError,
    check,
    encode,
    parse_role,
)

ROOT = Path(__file__).resolve().parent.parent

ME = "127.0.0.11:6379"
B = "127.0.0.12:6380"
C = "127.0.0.13:6381"
RUN = "run-1"

MASTER = Health("master", None, 100, RUN)


def replica_of(address: str, run_id: str = RUN, linked: bool = False) -> Health:
    return Health("slave", address, 90, run_id, linked)


def listing(*names: str, orphans: tuple[str, ...] = (), ghosts: tuple[str, ...] = ()) -> Listing:
    return Listing(tuple(order_members(list(names))), orphans, ghosts)


def state(**kw: object) -> State:
    base: dict[str, object] = dict(
        me=ME, health=MASTER, last_role="master", failures=0, failure_limit=3,
        listing=listing(), node=None, node_run_id=None, fenced=False, fence_due=True,
    )
    base.update(kw)
    return State(**base)  # type: ignore[arg-type]


MINE0 = f"{ME}-0000000000"
MINE3 = f"{ME}-0000000003"
B1 = f"{B}-0000000001"
B4 = f"{B}-0000000004"
DOWN = "the redis is down or hung"
C2 = f"{C}-0000000002"
C4 = f"{C}-0000000004"
HOLD_PROMOTION = (f"our node is the lowest and our redis replicates {B} (link up): not "
                  f"promoting it, for {B}'s node to come back")
KEEP_MASTER = f"our redis replicates {B} (link up): not following the lowest node, {C}'s, for now"
MINE5 = f"{ME}-0000000005"
HOLD_DEMOTION = (f"the lowest node is {B}'s, a replica of our redis (link up): not following "
                 "it, for it to step back behind our node")


# --------------------------------------------------------------------------- decide

CASES = [
    # (id, state, expected actions)
    ("first-of-shard-registers", state(), [Register()]),
    ("joiner-follows-lowest-then-registers", state(listing=listing(B1, C2)),
     [Follow(B), Register()]),
    ("joiner-already-following", state(health=replica_of(B), listing=listing(B1, C2)),
     [Register()]),
    ("joiner-following-wrong-master", state(health=replica_of(C), listing=listing(B1, C2)),
     [Follow(B), Register()]),
    ("fenced-joiner-unfences-after-follow", state(listing=listing(B1), fenced=True),
     [Follow(B), Unfence(), Register()]),
    ("lowest-master-steady", state(listing=listing(MINE0, B1), node=MINE0, node_run_id=RUN),
     []),
    ("lowest-replica-promotes-after-confirm",
     state(health=replica_of(B), listing=listing(MINE3), node=MINE3, node_run_id=RUN),
     [Confirm(), Promote(B)]),
    ("lowest-fenced-master-unfences-after-confirm",
     state(listing=listing(MINE0), node=MINE0, node_run_id=RUN, fenced=True),
     [Confirm(), Unfence()]),
    ("lowest-fenced-replica-promotes-and-unfences",
     state(health=replica_of(B), listing=listing(MINE3), node=MINE3, node_run_id=RUN,
           fenced=True),
     [Confirm(), Promote(B), Unfence()]),
    ("registered-replica-steady",
     state(health=replica_of(B), listing=listing(B1, MINE3), node=MINE3, node_run_id=RUN), []),
    ("registered-master-not-lowest-demotes",
     state(listing=listing(B1, MINE3), node=MINE3, node_run_id=RUN), [Follow(B)]),
    ("replica-follows-new-lowest",
     state(health=replica_of(B), listing=listing(C2, MINE3), node=MINE3, node_run_id=RUN),
     [Follow(C)]),
    ("fenced-replica-unfences",
     state(health=replica_of(B), listing=listing(B1, MINE3), node=MINE3, node_run_id=RUN,
           fenced=True),
     [Unfence()]),
    # failures
    ("one-miss-holds-still", state(health=None, failures=1, node=MINE0, node_run_id=RUN,
                                   listing=listing(MINE0)), []),
    ("down-master-fenced-then-unregistered",
     state(health=None, failures=3, node=MINE0, node_run_id=RUN, listing=listing(MINE0, B1)),
     [Fence(DOWN), Unregister("redis failed 3 health checks in a row")]),
    ("down-master-already-fenced-unregisters",
     state(health=None, failures=4, node=MINE0, node_run_id=RUN, listing=listing(MINE0),
           fenced=True, fence_due=False),
     [Unregister("redis failed 4 health checks in a row")]),
    ("down-replica-not-fenced",
     state(health=None, last_role="slave", failures=3, node=MINE3, node_run_id=RUN,
           listing=listing(B1, MINE3)),
     [Unregister("redis failed 3 health checks in a row")]),
    ("down-without-zookeeper-fences-only",
     state(health=None, failures=3, node=MINE0, node_run_id=RUN, listing=None), [Fence(DOWN)]),
    ("down-unregistered-replica-nothing",
     state(health=None, last_role="slave", failures=9, listing=listing(B1)), []),
    # ZooKeeper unreachable
    ("isolated-master-fenced", state(listing=None, node=MINE0, node_run_id=RUN),
     [Fence(NO_ZOOKEEPER)]),
    ("isolated-master-lease-fresh", state(listing=None, node=MINE0, fenced=True,
                                          fence_due=False), []),
    ("isolated-master-lease-renewed", state(listing=None, node=MINE0, fenced=True,
                                            fence_due=True), [Fence(NO_ZOOKEEPER)]),
    ("isolated-replica-left-alone", state(health=replica_of(B), listing=None, node=MINE3), []),
    ("isolated-fenced-replica-unfenced", state(health=replica_of(B), listing=None,
                                               fenced=True), [Unfence()]),
    # cleanup
    ("node-vanished-rejoins-as-replica",
     state(listing=listing(B1), node=MINE0, node_run_id=RUN),
     [Forget(f"node {MINE0} is no longer in ZooKeeper"), Follow(B), Register()]),
    ("restarted-master-demoted-then-unregisters",
     state(listing=listing(MINE0, B1), node=MINE0, node_run_id="run-0"),
     [Follow(B), Unregister("the redis restarted (new run_id)")]),
    ("restarted-sole-master-unregisters",
     state(listing=listing(MINE0), node=MINE0, node_run_id="run-0"),
     [Unregister("the redis restarted (new run_id)")]),
    ("restarted-replica-unregisters",
     state(health=replica_of(B), listing=listing(B1, MINE3), node=MINE3, node_run_id="run-0"),
     [Unregister("the redis restarted (new run_id)")]),
    ("orphan-adopted",
     state(listing=listing(B1, MINE3, f"{ME}-0000000004", orphans=(MINE3, f"{ME}-0000000004"))),
     [Adopt(MINE3), Delete(f"{ME}-0000000004")]),
    ("orphan-below-our-node-deleted",
     state(health=replica_of(B), listing=listing(B1, MINE3, f"{ME}-0000000004",
                                                 orphans=(MINE3,)),
           node=f"{ME}-0000000004", node_run_id=RUN),
     [Delete(MINE3)]),
    ("ghost-master-waits", state(listing=listing(MINE0, B1, ghosts=(MINE0,))), []),
    ("ghost-replica-follows-but-waits-to-register",
     state(listing=listing(B1, MINE3, ghosts=(MINE3,))), [Follow(B)]),
    ("older-node-of-ours-below-unregisters",
     state(health=replica_of(B), listing=listing(MINE0, B1, MINE3), node=MINE3,
           node_run_id=RUN),
     [Unregister(f"an older node of this redis ({MINE0}) is the master")]),
    # joining an empty shard (after a ZooKeeper-wide session loss): a linked replica waits
    ("linked-replica-waits-for-its-masters-node",
     state(health=replica_of(B, linked=True)), [AwaitMaster(B)]),
    ("linked-fenced-replica-unfenced-while-it-waits",
     state(health=replica_of(B, linked=True), fenced=True), [Unfence(), AwaitMaster(B)]),
    ("linked-replica-registers-once-the-wait-ran-out",
     state(health=replica_of(B, linked=True), await_over=True), [Register()]),
    ("unlinked-replica-registers-at-once", state(health=replica_of(B)), [Register()]),
    ("linked-replica-registers-behind-its-master",
     state(health=replica_of(B, linked=True), listing=listing(B1)), [Register()]),
    ("linked-replica-follows-another-lowest-without-waiting",
     state(health=replica_of(B, linked=True), listing=listing(C2)), [Follow(C), Register()]),
    ("registered-lowest-linked-replica-still-promotes",
     state(health=replica_of(B, linked=True), listing=listing(MINE3), node=MINE3,
           node_run_id=RUN),
     [Confirm(), Promote(B)]),
    ("down-linked-replica-does-not-wait",
     state(health=None, last_role="slave", failures=3), []),
    # just after ZooKeeper came back, a master's session expired and its replica's survived:
    # the replica holds the only node, steps back once the master's node is back
    ("resumed-lowest-linked-replica-holds",
     state(health=replica_of(B, linked=True), listing=listing(MINE3), node=MINE3,
           node_run_id=RUN, resumed=True), [Hold(HOLD_PROMOTION)]),
    ("resumed-lowest-linked-fenced-replica-unfenced-while-it-holds",
     state(health=replica_of(B, linked=True), listing=listing(MINE3), node=MINE3,
           node_run_id=RUN, resumed=True, fenced=True), [Unfence(), Hold(HOLD_PROMOTION)]),
    ("resumed-lowest-linked-replica-steps-back-behind-its-master",
     state(health=replica_of(B, linked=True), listing=listing(MINE3, B4), node=MINE3,
           node_run_id=RUN, resumed=True),
     [Unregister(f"stepping back: {B}'s node is back and our redis replicates it"),
      Register()]),
    ("resumed-lowest-linked-replica-ignores-other-nodes",
     state(health=replica_of(B, linked=True), listing=listing(MINE3, C4), node=MINE3,
           node_run_id=RUN, resumed=True), [Hold(HOLD_PROMOTION)]),
    ("resumed-lowest-unlinked-replica-promotes",
     state(health=replica_of(B), listing=listing(MINE3), node=MINE3, node_run_id=RUN,
           resumed=True), [Confirm(), Promote(B)]),
    # ... and with a second replica: it keeps its master, behind the replica that holds
    ("resumed-linked-replica-keeps-its-master-behind-a-lowest-replica",
     state(health=replica_of(B, linked=True), listing=listing(C2, MINE3), node=MINE3,
           node_run_id=RUN, resumed=True), [Hold(KEEP_MASTER)]),
    ("resumed-linked-fenced-replica-keeps-its-master-unfenced",
     state(health=replica_of(B, linked=True), listing=listing(C2, MINE3), node=MINE3,
           node_run_id=RUN, resumed=True, fenced=True), [Unfence(), Hold(KEEP_MASTER)]),
    ("resumed-linked-replica-joins-behind-a-lowest-replica-keeping-its-master",
     state(health=replica_of(B, linked=True), listing=listing(C2), resumed=True),
     [Hold(KEEP_MASTER), Register()]),
    ("resumed-linked-replica-keeps-its-master-behind-a-lowest-replica-still-stepping-back",
     state(health=replica_of(B, linked=True), listing=listing(C2, B4, MINE5), node=MINE5,
           node_run_id=RUN, resumed=True), [Hold(KEEP_MASTER)]),
    ("resumed-linked-replica-of-the-lowest-steady",
     state(health=replica_of(B, linked=True), listing=listing(B1, MINE3), node=MINE3,
           node_run_id=RUN, resumed=True), []),
    ("resumed-unlinked-replica-follows-the-lowest",
     state(health=replica_of(B), listing=listing(C2, MINE3), node=MINE3, node_run_id=RUN,
           resumed=True), [Follow(C)]),
    ("linked-replica-follows-the-lowest-once-resumed-is-over",
     state(health=replica_of(B, linked=True), listing=listing(C2, MINE3), node=MINE3,
           node_run_id=RUN), [Follow(C)]),
    ("resumed-lowest-master-steady",
     state(listing=listing(MINE0, B1), node=MINE0, node_run_id=RUN, resumed=True), []),
    ("resumed-master-registers-behind-its-replica-without-following",
     state(listing=listing(B1), resumed=True, lowest_follows_us=True),
     [Fence(BEHIND_REPLICA), Hold(HOLD_DEMOTION), Register()]),
    ("resumed-fenced-master-registers-behind-its-replica",
     state(listing=listing(B1), resumed=True, lowest_follows_us=True, fenced=True,
           fence_due=False), [Hold(HOLD_DEMOTION), Register()]),
    ("resumed-master-behind-its-replica-and-a-ghost-waits-fenced",
     state(listing=listing(B1, MINE3, ghosts=(MINE3,)), resumed=True, lowest_follows_us=True),
     [Fence(BEHIND_REPLICA), Hold(HOLD_DEMOTION)]),
    ("resumed-master-registered-behind-its-replica-holds",
     state(listing=listing(B1, MINE3), node=MINE3, node_run_id=RUN, resumed=True,
           lowest_follows_us=True, fenced=True, fence_due=False), [Hold(HOLD_DEMOTION)]),
    ("resumed-master-behind-its-replica-renews-the-lease",
     state(listing=listing(B1, MINE3), node=MINE3, node_run_id=RUN, resumed=True,
           lowest_follows_us=True, fenced=True, fence_due=True),
     [Fence(BEHIND_REPLICA), Hold(HOLD_DEMOTION)]),
    ("resumed-master-follows-a-lowest-that-does-not-replicate-it",
     state(listing=listing(B1), resumed=True, fenced=True),
     [Follow(B), Unfence(), Register()]),
    ("master-behind-its-replica-follows-once-resumed-is-over",
     state(listing=listing(B1, MINE3), node=MINE3, node_run_id=RUN, lowest_follows_us=True,
           fenced=True), [Follow(B), Unfence()]),
    # stopping
    ("stop-master-with-replicas-fences",
     state(stopping=True, listing=listing(MINE0, B1), node=MINE0, node_run_id=RUN),
     [Fence("shutting down: a replica takes over"), Unregister("shutting down")]),
    ("stop-sole-master-no-fence",
     state(stopping=True, listing=listing(MINE0), node=MINE0, node_run_id=RUN),
     [Unregister("shutting down")]),
    ("stop-replica",
     state(stopping=True, health=replica_of(B), listing=listing(B1, MINE3), node=MINE3,
           node_run_id=RUN),
     [Unregister("shutting down")]),
    ("stop-unregistered", state(stopping=True, listing=listing(B1)), []),
]


@pytest.mark.parametrize("st, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(st: State, expected: list[object]) -> None:
    assert decide(st) == expected


def test_decide_never_makes_writable_without_confirm() -> None:
    """Promote, or Unfence of a master, only ever follows Confirm."""
    for _, st, _ in CASES:
        actions = decide(st)
        for i, a in enumerate(actions):
            writable = isinstance(a, Promote) or (
                isinstance(a, Unfence) and st.health is not None and st.health.role == "master"
                and not any(isinstance(x, Follow) for x in actions[:i]))
            if writable:
                assert Confirm() in actions[:i], (st, actions)


PROBES = [
    ("resumed-master-asks-the-lowest", state(listing=listing(B1, MINE3), resumed=True), B),
    ("resumed-master-without-node-asks-the-lowest", state(listing=listing(B1), resumed=True),
     B),
    ("not-resumed-asks-nobody", state(listing=listing(B1, MINE3)), None),
    ("resumed-replica-asks-nobody", state(health=replica_of(B, linked=True),
                                          listing=listing(B1), resumed=True), None),
    ("resumed-lowest-master-asks-nobody", state(listing=listing(MINE0, B1), resumed=True),
     None),
    ("resumed-master-with-an-empty-shard-asks-nobody", state(resumed=True), None),
    ("resumed-isolated-master-asks-nobody", state(listing=None, resumed=True), None),
    ("resumed-down-master-asks-nobody", state(health=None, failures=1, listing=listing(B1),
                                              resumed=True), None),
    ("resumed-stopping-master-asks-nobody",
     state(listing=listing(B1, MINE3), node=MINE3, stopping=True, resumed=True), None),
    ("an-orphan-below-is-not-the-lowest",
     state(listing=listing(MINE0, B1, MINE3, orphans=(MINE0,)), node=MINE3, node_run_id=RUN,
           resumed=True), B),
]


@pytest.mark.parametrize("st, expected", [c[1:] for c in PROBES], ids=[c[0] for c in PROBES])
def test_probe_target(st: State, expected: str | None) -> None:
    """The daemon asks the lowest member's redis whether it replicates ours when decide()
    may act on the answer, and only then."""
    assert probe_target(st) == expected
    answer_matters = decide(replace(st, lowest_follows_us=True)) != decide(st)
    assert answer_matters == (expected is not None)


def test_decide_a_master_that_holds_stays_fenced() -> None:
    """A master that does not follow the lowest node (Hold) is fenced at the end of the turn."""
    held = 0
    for _, st, _ in CASES:
        actions = decide(st)
        if st.health is None or st.health.role != "master" or not any(
                isinstance(a, Hold) for a in actions):
            continue
        assert not any(isinstance(a, Follow | Unfence) for a in actions), (st, actions)
        assert st.fenced or Fence(BEHIND_REPLICA) in actions, (st, actions)
        held += 1
    assert held == 5


# --------------------------------------------------------------------------- conf

SEED_CONF = """\
# zookeeper servers list to connect
# zkServersList = "host:port,host:port,...,host:port"

zkServersList = 172.16.10.96:2181,172.16.10.163:2181

# log level (default to DEBUG)
logLevel = DEBUG

# log file
logFile = ./zoo-watchdog.log
"""


def test_conf_seed_file() -> None:
    c = confmod.parse(SEED_CONF, "zoo-watchdog.conf")
    assert c.zk_servers == "172.16.10.96:2181,172.16.10.163:2181"
    assert c.log_level == "DEBUG"
    assert c.log_file == "./zoo-watchdog.log"
    assert (c.zk_session_timeout_ms, c.health_interval_ms, c.health_failures) == (4000, 500, 3)
    assert c.probe_timeout == 0.25


def test_conf_quotes_comments_and_new_keys() -> None:
    c = confmod.parse(
        'zkServersList = "127.0.0.1:2181/t/x"\n'
        "logLevel = 'warn'\n"
        "zkSessionTimeout = 1500   # ms\n"
        "healthCheckInterval=100\n"
        "healthCheckTimeout = 250\n"
        "healthCheckFailures = 5\n",
        "f",
    )
    assert c.zk_servers == "127.0.0.1:2181/t/x"
    assert c.log_level == "WARNING"
    assert (c.session_timeout, c.interval, c.probe_timeout, c.health_failures) == \
        (1.5, 0.1, 0.25, 5)


BAD_CONFS = [
    ("zkServersList = h:1\nfoo = 1\n", "f:2: unknown key 'foo'"),
    ("zkServersList = h:1\nlogLevel\n", "f:2: expected 'key = value'"),
    ("zkServersList = h:1\nzkSessionTimeout = 4s\n", "f:2: bad zkSessionTimeout: '4s' is not"),
    ("zkServersList = h:1\nhealthCheckFailures = 0\n", "f:2: bad healthCheckFailures: 0 is"),
    ("zkServersList = h:1\nlogLevel = LOUD\n", "f:2: bad logLevel"),
    ("zkServersList = h:1,nope\n", "f:1: bad zkServersList: 'nope' is not host:port"),
    ("zkServersList = h:99999\n", "f:1: bad zkServersList"),
    ('zkServersList = "h:1\n', "f:1: bad zkServersList: unterminated quote"),
    ("zkServersList = h:1\nzkServersList = h:2\n", "f:2: zkServersList given twice"),
    ("zkServersList =\n", "f:1: bad zkServersList: empty value"),
    ("logLevel = INFO\n", "f: zkServersList is required"),
]


@pytest.mark.parametrize("text, message", BAD_CONFS)
def test_conf_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(confmod.ConfError) as info:
        confmod.parse(text, "f")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_conf_reports_every_bad_line_at_once() -> None:
    text = ("logLevel = LOUD\nfoo = 1\nhealthCheckFailures = 0\nlogLevel = INFO\n"
            "zkSessionTimeout = 4s\n")
    with pytest.raises(confmod.ConfError) as info:
        confmod.parse(text, "f")
    starts = ["f:1: bad logLevel", "f:2: unknown key 'foo'", "f:3: bad healthCheckFailures",
              "f:4: logLevel given twice (first on line 1)", "f:5: bad zkSessionTimeout",
              "f: zkServersList is required"]
    assert len(info.value.errors) == len(starts), info.value.errors
    for line, start in zip(info.value.errors, starts, strict=True):
        assert line.startswith(start) and "\n" not in line, line
    assert str(info.value) == "\n".join(info.value.errors)


def test_conf_redis_start_timeout() -> None:
    assert confmod.parse("zkServersList = h:1\n", "f").redis_start_timeout == 60.0
    assert confmod.parse("zkServersList = h:1\nredisStartTimeout = 0\n",
                         "f").redis_start_timeout_ms == 0


# --------------------------------------------------------------------------- RESP client


def test_encode() -> None:
    assert encode(("CLIENT", "PAUSE", 4500, "WRITE")) == \
        b"*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n$4\r\n4500\r\n$5\r\nWRITE\r\n"


@pytest.mark.parametrize("reply, parsed", [
    ([b"master", 123, [[b"127.0.0.12", b"6380", b"120"]]], ("master", None, 123)),
    ([b"slave", b"127.0.0.11", 6379, b"connected", 99], ("slave", "127.0.0.11:6379", 99)),
    ([b"slave", b"127.0.0.11", 6379, b"connect", -1], ("slave", "127.0.0.11:6379", -1)),
])
def test_parse_role(reply: object, parsed: tuple[str, str | None, int]) -> None:
    assert parse_role(reply) == parsed


@pytest.mark.parametrize("reply", [[b"sentinel", [b"m"]], [], None, [b"slave", b"h"]])
def test_parse_role_rejects(reply: object) -> None:
    with pytest.raises(RedisError):
        parse_role(reply)


class FakeRedis:
    """A scripted server: ``replies`` maps a command name to the raw bytes to answer."""

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        self.replies = replies
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import hiredis

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            reader = hiredis.Reader()
            with conn:
                while data := conn.recv(65536):
                    reader.feed(data)
                    while (cmd := reader.gets()) is not False:
                        self.seen.append(cmd[0])
                        answer = self.replies.get(cmd[0].upper())
                        if answer:
                            conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[FakeRedis]:
    f = FakeRedis({
        b"INFO": b"$20\r\n# Server\r\nrun_id:abc\r\n",
        b"PING": b"+PONG\r\n",
        b"ROLE": b"*5\r\n$5\r\nslave\r\n$10\r\n127.0.0.19\r\n:6379\r\n$9\r\nconnected\r\n:42\r\n",
        b"BAD": b"-ERR nope\r\n",
    })
    yield f
    f.close()


def test_check_reads_run_id_once_per_connection(fake: FakeRedis) -> None:
    conn = Conn(fake.address, 2.0)
    assert check(conn) == Health("slave", "127.0.0.19:6379", 42, "abc", master_link_up=True)
    assert check(conn).run_id == "abc"
    assert fake.seen == [b"INFO", b"PING", b"ROLE", b"PING", b"ROLE"]
    conn.close()


@pytest.mark.parametrize("state", [b"connect", b"connecting", b"sync", b"handshake"])
def test_check_replica_link_not_up(state: bytes) -> None:
    role = (b"*5\r\n$5\r\nslave\r\n$10\r\n127.0.0.19\r\n:6379\r\n$%d\r\n%s\r\n:-1\r\n"
            % (len(state), state))
    f = FakeRedis({b"INFO": b"$20\r\n# Server\r\nrun_id:abc\r\n", b"PING": b"+PONG\r\n",
                   b"ROLE": role})
    conn = Conn(f.address, 2.0)
    try:
        assert check(conn) == Health("slave", "127.0.0.19:6379", -1, "abc", master_link_up=False)
    finally:
        conn.close()
        f.close()


def test_error_reply_keeps_connection(fake: FakeRedis) -> None:
    conn = Conn(fake.address, 2.0)
    with pytest.raises(ReplyError, match="ERR nope"):
        conn.call("BAD")
    assert conn.call("PING") == b"PONG"
    assert fake.seen.count(b"INFO") == 1
    conn.close()


def test_silent_server_times_out_as_sent(fake: FakeRedis) -> None:
    conn = Conn(fake.address, 0.2)
    with pytest.raises(RedisError) as info:
        conn.call("NOANSWER")
    assert not isinstance(info.value, NotSent)
    assert "timed out" in str(info.value)


def test_refused_is_not_sent() -> None:
    port = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    with pytest.raises(NotSent):
        Conn(address, 0.5).call("PING")


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required"),
    (["-f", "x", "-dc", "nohost", "/a"], "'nohost' is not HOST:PORT"),
    (["-f", "x", "-dc", "h:1", "a/b"], "'a/b' is not a ZooKeeper path"),
    (["-f", "/nonexistent/zoo.conf", "-dc", "h:1", "/a"], "/nonexistent/zoo.conf: cannot read"),
])
def test_cli_usage_errors(argv: list[str], message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyproxy-watchdog: error: ") and message in err
    assert err.count("\n") == 1


def test_cli_conf_error_names_file_and_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "zoo-watchdog.conf"
    path.write_text("zkServersList = h:1\n\nhealthCheckInterval = soon\n")
    assert cli.main(["-f", str(path), "-dc", "127.0.0.1:1", "/a"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: bad healthCheckInterval" in err and err.count("\n") == 1


def test_cli_unreachable_redis(tmp_path: Path) -> None:
    """redisStartTimeout = 0: no waiting, exit 3 at the first failed check. In a process of
    its own: past the conf, the watchdog sets up the root logger."""
    path = tmp_path / "zoo-watchdog.conf"
    path.write_text("zkServersList = 127.0.0.1:1\nredisStartTimeout = 0\n")
    with socket.create_server(("127.0.0.1", 0)) as s:
        address = f"127.0.0.1:{s.getsockname()[1]}"
    result = subprocess.run([sys.executable, "-m", "pyproxy.watchdog", "-f", str(path), "-dc",
                             address, "/a"], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"pyproxy-watchdog: error: redis {address} does not answer")
    assert result.stderr.count("\n") == 1, result.stderr


def test_shipped_conf_loads() -> None:
    c = confmod.load(str(ROOT / "conf" / "zoo-watchdog.conf"))
    assert c.zk_servers
