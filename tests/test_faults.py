"""Faults against real processes: a SIGSTOPped shard, a SIGKILLed shard, ejection that must
never move keys, and a graceful SIGTERM of the proxy. Time bounds are generous deadlines."""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

import pytest

from tests.fakes import ScriptedRedis
from tests.servers import free_port
from tests.test_proxy import Raw, key_on, pool_yaml, two_shard_config

BOUND = 5.0  # "within about `timeout`" (500 ms here), asserted generously


def start(redis_factory: Any, proxy_factory: Any, **settings: Any) -> tuple[Any, Any, Any]:
    a, b = redis_factory(), redis_factory()
    proxy = proxy_factory(two_shard_config(a, b, **settings))
    return a, b, proxy


def timed(conn: Raw, *args: bytes | str) -> tuple[bytes, float]:
    started = time.monotonic()
    reply = conn.call(*args)
    return reply, time.monotonic() - started


def wait_for(check: Any, deadline: float = 10.0) -> float:
    """Poll ``check()`` until true; return how long it took (fails after ``deadline``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < deadline, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - started


class Watcher:
    """Keeps using shard B on its own connection while the test hurts shard A."""

    def __init__(self, port: int, key: bytes) -> None:
        self.port, self.key = port, key
        self.ops = 0
        self.worst = 0.0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            with Raw("127.0.0.1", self.port) as conn:
                while not self._stop.is_set():
                    value = b"%d" % self.ops
                    reply, took = timed(conn, "SET", self.key, value)
                    reply2, took2 = timed(conn, "GET", self.key)
                    if (reply, reply2) != (b"+OK\r\n", b"$%d\r\n%s\r\n" % (len(value), value)):
                        self.errors.append(f"{reply!r} {reply2!r}")
                    self.worst = max(self.worst, took, took2)
                    self.ops += 1
                    time.sleep(0.01)
        except Exception as exc:
            self.errors.append(repr(exc))

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()

    def more_ops(self, count: int = 5) -> None:
        """Wait until shard B has served ``count`` more rounds (while A is still hurt)."""
        target = self.ops + count
        wait_for(lambda: self.ops >= target or bool(self.errors))

    def check(self) -> None:
        assert self.errors == []
        assert self.worst < 2.0  # never stuck behind the sick shard


def test_sigstopped_shard_times_out_alone_and_recovers(redis_factory: Any,
                                                       proxy_factory: Any) -> None:
    a, b, proxy = start(redis_factory, proxy_factory, timeout=500)
    keys = [key_on(0, b"stop", i) for i in range(5)]
    with Raw("127.0.0.1", proxy.port) as conn:
        for i, key in enumerate(keys):
            assert conn.call("SET", key, f"v{i}") == b"+OK\r\n"
        with Watcher(proxy.port, key_on(1, b"stop")) as watcher:
            a.pause()
            try:
                for key in keys:  # each request errors within about the timeout
                    reply, took = timed(conn, "GET", key)
                    assert reply.startswith(b"-ERR pyproxy: backend "), reply
                    assert took < BOUND
                conn.send(b"".join(b"GET %s\r\n" % k for k in keys))  # a pipeline: same
                started = time.monotonic()
                assert all(r.startswith(b"-ERR") for r in conn.replies(len(keys)))
                assert time.monotonic() - started < BOUND
                watcher.more_ops()
            finally:
                a.resume()

            def recovered() -> bool:
                return conn.call("GET", keys[0]) == b"$2\r\nv0\r\n"

            assert wait_for(recovered) < BOUND
            # late replies to the timed-out requests were swallowed: pairing is intact
            conn.send(b"".join(b"GET %s\r\n" % k for k in keys))
            assert conn.replies(len(keys)) == [b"$2\r\nv%d\r\n" % i for i in range(5)]
        watcher.check()


def test_late_replies_to_timed_out_requests_are_swallowed(redis_factory: Any,
                                                           proxy_factory: Any) -> None:
    """The connection survives the timeouts (high failure limit): the timed-out requests
    stay in its FIFO and their late replies must not answer anyone else's requests."""
    a, b, proxy = start(redis_factory, proxy_factory, timeout=300, server_failure_limit=1000)
    keys = [key_on(0, b"late", i) for i in range(6)]
    with Raw("127.0.0.1", proxy.port) as conn, Raw("127.0.0.1", proxy.port) as other:
        conn.send(b"".join(b"SET %s v%d\r\n" % (k, i) for i, k in enumerate(keys)))
        assert conn.replies(6) == [b"+OK\r\n"] * 6
        a.pause()
        try:
            conn.send(b"".join(b"GET %s\r\n" % k for k in keys[:3]))
            assert all(r.startswith(b"-ERR pyproxy: backend ") and b"timed out" in r
                       for r in conn.replies(3))
            other.cmd("GET", keys[3])  # written while paused, answered after the resume
        finally:
            a.resume()
        assert other.reply() == b"$2\r\nv3\r\n"
        conn.send(b"".join(b"GET %s\r\n" % k for k in keys[4:]))
        assert conn.replies(2) == [b"$2\r\nv4\r\n", b"$2\r\nv5\r\n"]
    assert proxy.log_text().count(f"backend {a.address} connected") == 1  # never reconnected


def test_sigkilled_shard_errors_at_once_and_recovers_after_restart(redis_factory: Any,
                                                                   proxy_factory: Any) -> None:
    a, b, proxy = start(redis_factory, proxy_factory, timeout=500)
    ka, kb = key_on(0, b"kill"), key_on(1, b"kill")
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("MSET", ka, "1", kb, "2") == b"+OK\r\n"
        with Watcher(proxy.port, key_on(1, b"kill", 1)) as watcher:
            a.kill()
            for _ in range(20):  # connection refused: prompt errors, never a hang
                reply, took = timed(conn, "GET", ka)
                assert reply.startswith(b"-ERR pyproxy: backend "), reply
                assert took < 3.0
            reply, took = timed(conn, "MGET", ka, kb)
            assert reply.startswith(b"-ERR pyproxy: backend ") and took < 3.0
            assert conn.call("GET", kb) == b"$1\r\n2\r\n"
            watcher.more_ops()
            a.restart()  # same port, empty

            def recovered() -> bool:
                return conn.call("SET", ka, "back") == b"+OK\r\n"

            assert wait_for(recovered) < BOUND
            assert conn.call("MGET", ka, kb) == b"*2\r\n$4\r\nback\r\n$1\r\n2\r\n"
        watcher.check()


@pytest.mark.parametrize("eject", ["true", "false"])
def test_a_down_shard_never_moves_its_keys(redis_factory: Any, proxy_factory: Any,
                                           eject: str) -> None:
    a, b, proxy = start(redis_factory, proxy_factory, timeout=500, auto_eject_hosts=eject,
                        server_failure_limit=1, server_retry_timeout=300)
    keys = [key_on(0, b"eject", i) for i in range(20)]
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("SET", keys[0], "x") == b"+OK\r\n"
        a.kill()
        deadline = time.monotonic() + 1.5  # several retry periods
        while time.monotonic() < deadline:
            for key in keys:
                assert conn.call("SET", key, "moved?").startswith(b"-ERR pyproxy: backend ")
                assert conn.call("GET", key).startswith(b"-ERR pyproxy: backend ")
            time.sleep(0.05)
        other = b.client()
        assert other.exists(*keys) == 0  # the surviving shard never saw them
        assert other.dbsize() == 0
        a.restart()
        wait_for(lambda: conn.call("SET", keys[1], "y") == b"+OK\r\n")
        assert a.client().get(keys[1]) == b"y" and other.dbsize() == 0


def test_proxy_starts_with_a_shard_down_and_picks_it_up(redis_factory: Any,
                                                         proxy_factory: Any) -> None:
    a = redis_factory()
    port = free_port()
    down = f"127.0.0.1:{port}"
    proxy = proxy_factory(lambda: pool_yaml(free_port(), [f"{a.address}:0-2047",
                                                          f"{down}:2048-4095"],
                                            preconnect="true", timeout=500))
    ka, kb = key_on(0, b"late"), key_on(1, b"late")
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("SET", ka, "a") == b"+OK\r\n"
        reply, took = timed(conn, "SET", kb, "b")
        assert reply.startswith(f"-ERR pyproxy: backend {down} ".encode()) and took < 3.0
        redis_factory(port=port)
        wait_for(lambda: conn.call("SET", kb, "b") == b"+OK\r\n")
        assert conn.call("MGET", ka, kb) == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"


def test_sigterm_finishes_in_flight_requests_and_exits_0(redis_factory: Any,
                                                         proxy_factory: Any) -> None:
    a, b, proxy = start(redis_factory, proxy_factory, timeout=4000)
    key = key_on(0, b"term")
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("SET", key, "done") == b"+OK\r\n"
        a.pause()
        try:
            conn.cmd("GET", key)  # in flight while the proxy is told to stop
            time.sleep(0.2)
            proxy.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: not accepts(proxy.port), BOUND)  # stopped accepting at once
            assert proxy.is_running()
        finally:
            a.resume()
        assert conn.reply() == b"$4\r\ndone\r\n"
        assert conn.until_eof() == b""
    assert proxy.proc.wait(BOUND) == 0


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- pairing, fake transport


class FakeTransport:
    """Records what a backend Connection writes; replies are fed by the test."""

    def __init__(self) -> None:
        self.written = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


class Waiter:
    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def settle(self, raw: bytes) -> None:
        if not self.replies:  # idempotent, as replies.Reply
            self.replies.append(raw)


def fake_connection(**settings: Any) -> tuple[Any, Any, FakeTransport]:
    """A backend Connection whose current link is "connected" to a FakeTransport."""
    from pyproxy import config
    from pyproxy.observe.stats import PoolStats
    from pyproxy.proxy.backend import Backend, Link

    pool = config.parse(pool_yaml(1, ["127.0.0.1:1:0-4095"], **settings)).pools[0]
    connection = Backend("127.0.0.1:1", pool, PoolStats()).connections[0]
    transport = FakeTransport()
    link = connection.link = Link(connection)
    link.connection_made(transport)
    return connection, link, transport


REPLIES = [b"+OK\r\n", b"$-1\r\n", b"*2\r\n$1\r\na\r\n*-1\r\n", b"-ERR x\r\n", b":7\r\n",
           b"$4\r\n\r\n\r\n\r\n", b"*0\r\n"]


def test_backend_pairs_replies_split_at_every_byte() -> None:
    import asyncio

    async def run() -> None:
        stream = b"".join(REPLIES)
        for cut in range(1, len(stream)):
            connection, link, transport = fake_connection()
            waiters = [Waiter() for _ in REPLIES]
            for i, waiter in enumerate(waiters):
                connection.send(b"*1\r\n$1\r\n%d\r\n" % i, waiter)
            await asyncio.sleep(0)  # one batched write per loop turn
            assert transport.written == b"".join(b"*1\r\n$1\r\n%d\r\n" % i
                                                 for i in range(len(REPLIES)))
            link.data_received(stream[:cut])
            link.data_received(stream[cut:])
            assert [w.replies for w in waiters] == [[r] for r in REPLIES], cut
            assert not connection.fifo and not transport.aborted
            link.data_received(b"+unasked\r\n")
            assert transport.aborted  # a reply nobody asked for: the connection is dropped

    asyncio.run(run())


def test_backend_timeouts_keep_waiters_until_their_late_replies() -> None:
    import asyncio

    async def run() -> None:
        connection, link, transport = fake_connection(timeout=50, server_failure_limit=100,
                                                redis_auth="pw", redis_db=3)
        early = [Waiter() for _ in range(3)]
        for waiter in early:
            connection.send(b"GET\r\n", waiter)
        await asyncio.sleep(0.2)
        assert transport.written.startswith(b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
                                            b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n")
        assert all(w.replies[0].startswith(b"-ERR pyproxy: backend 127.0.0.1:1 timed out")
                   for w in early)
        assert len(connection.fifo) == 5  # the prelude and the timed-out waiters stay
        late = Waiter()
        connection.send(b"GET\r\n", late)
        link.data_received(b"+OK\r\n+OK\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n")
        assert [w.replies for w in early] == [[w.replies[0]] for w in early]  # unchanged
        assert late.replies == [] and len(connection.fifo) == 1
        link.data_received(b"$4\r\nmine\r\n")
        assert late.replies == [b"$4\r\nmine\r\n"]
        assert not transport.aborted

    asyncio.run(run())


def test_malformed_reply_drops_only_that_backend_connection(redis_factory: Any,
                                                             proxy_factory: Any) -> None:
    """A backend that answers ``$abc``: its request gets a clear error, the proxy logs one
    line and no traceback, and the other shard and other clients carry on."""
    b = redis_factory()
    with ScriptedRedis(lambda args: b"$abc\r\n") as fake:
        proxy = proxy_factory(lambda: pool_yaml(free_port(), [f"{fake.address}:0-2047",
                                                              f"{b.address}:2048-4095"],
                                                timeout=2000))
        ka, kb = key_on(0, b"garbled"), key_on(1, b"garbled")
        with Raw("127.0.0.1", proxy.port) as conn, Watcher(proxy.port, kb) as watcher:
            watcher.more_ops()
            assert conn.call("GET", ka) == (f"-ERR pyproxy: backend {fake.address} failed: "
                                            "it sent a malformed reply\r\n").encode()
            assert conn.call("SET", kb, "fine") == b"+OK\r\n"
            assert conn.call("GET", kb) == b"$4\r\nfine\r\n"
            watcher.more_ops()
        watcher.check()
        assert fake.requests == [[b"GET", ka]]
    log = proxy.log_text()
    (line,) = [line for line in log.splitlines() if "malformed" in line]
    assert f"backend {fake.address} sent a malformed reply" in line
    assert "Traceback" not in log


def test_a_refused_setup_fails_the_requests_and_writes_nowhere(redis_factory: Any,
                                                              proxy_factory: Any) -> None:
    """redis_db beyond the server's databases, or a wrong redis_auth: the proxy must not send
    requests on a connection whose SELECT or AUTH failed (they would run in database 0, or
    answer NOAUTH); the client gets the reason."""
    a, b = redis_factory(), redis_factory()
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers, redis_db=20))
    key = key_on(0, b"db20")
    with Raw("127.0.0.1", proxy.port) as conn:
        reply = conn.call("SET", key, "x")
        assert reply.startswith(f"-ERR pyproxy: backend {a.address} ".encode())
        assert b"refused the connection setup (ERR DB index is out of range)" in reply, reply
    assert a.client().dbsize() == 0  # nothing ran in database 0
    locked = redis_factory(extra_args=("--requirepass", "right"))
    servers = [f"{locked.address}:0-2047", f"{b.address}:2048-4095"]
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers, redis_auth="wrong"))
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("AUTH", "wrong") == b"+OK\r\n"  # the proxy's own password
        reply = conn.call("SET", key, "x")
        assert b"refused the connection setup (WRONGPASS" in reply, reply
    assert proxy.log_text().count("refused the connection setup (WRONGPASS") == 1


def test_commands_that_would_reach_other_keys_or_databases_are_refused(
        redis_factory: Any, proxy_factory: Any) -> None:
    a, b, proxy = start(redis_factory, proxy_factory)
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("RPUSH", "{l}list", "1", "2", "3") == b":3\r\n"
        assert conn.call("MSET", "{l}w_1", "3", "{l}w_2", "2", "{l}w_3", "1") == b"+OK\r\n"
        # the pattern carries the list's hash tag: the weights live with it
        assert conn.call("SORT", "{l}list", "BY", "{l}w_*") == (
            b"*3\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n")
        for bad in (["SORT", "{l}list", "BY", "w_*"], ["SORT", "{l}list", "GET", "w_*"],
                    ["SORT_RO", "{l}list", "GET", "{x}w_*"], ["COPY", "{l}w_1", "{l}c", "DB", "1"]):
            assert conn.call(*bad).startswith(f"-ERR pyproxy: '{bad[0]}' is not "
                                              "supported: ".encode()), bad
        assert conn.call("SORT", "{l}list", "BY", "nosort", "GET", "#") == (
            b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n")
    assert a.client().exists("{l}c") + b.client().exists("{l}c") == 0


def test_a_backend_that_is_back_is_used_at_once(redis_factory: Any, proxy_factory: Any) -> None:
    """Probed while down: requests sent a little after the backend accepts again all succeed
    (a lazy reconnect with backoff used to fail them for up to a second), and the outage is
    logged once, not once per retry."""
    a, b, proxy = start(redis_factory, proxy_factory, timeout=500)
    key = key_on(0, b"back")
    with Raw("127.0.0.1", proxy.port) as conn:
        assert conn.call("SET", key, "1") == b"+OK\r\n"
        a.kill()
        assert conn.call("GET", key).startswith(b"-ERR pyproxy: backend ")
        time.sleep(1.5)  # ~15 retries while nobody asks
        a.restart()
        time.sleep(0.3)  # the probe connects within ~100 ms of the server accepting
        replies = [conn.call("SET", key, str(i)) for i in range(50)]
        assert replies == [b"+OK\r\n"] * 50
    log = proxy.log_text()
    assert log.count(f"backend {a.address} down") == 1, log
    assert f"backend {a.address} is back" in log
