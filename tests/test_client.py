"""proxy/client.py and proxy/flow.py on a fake transport: ordered replies, one write per
flush, protocol errors, and flow control — no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pyproxy.protocol.resp import encode_command
from pyproxy.proxy.client import Client
from pyproxy.proxy.flow import FlowControl
from pyproxy.proxy.replies import Flusher
from tests.fakes import FakePool, FakeTransport, executor_for
from tests.keys import keys_for_shard

A1 = keys_for_shard(0, 1)[0].encode()
B1 = keys_for_shard(1, 1)[0].encode()


def with_client(test: Callable[[FakePool, Client, FakeTransport, Flusher], None]) -> None:
    """Run ``test`` inside an event loop (the client reads the loop's clock)."""

    async def scenario() -> None:
        pool = FakePool()
        flusher = Flusher()  # no scheduler: the test flushes
        client = Client(pool, executor_for(pool), flusher)  # type: ignore[arg-type]
        transport = FakeTransport()
        client.connection_made(transport)  # type: ignore[arg-type]
        test(pool, client, transport, flusher)

    asyncio.run(scenario())


def test_pipelined_replies_leave_in_request_order_in_one_write() -> None:
    def test(pool: FakePool, client: Client, transport: FakeTransport, flusher: Flusher) -> None:
        a, b = pool.endpoints
        client.data_received(encode_command([b"GET", B1]) + encode_command([b"GET", A1])
                             + encode_command([b"PING"]))
        assert transport.written == b""  # the first reply is still owed
        a.answer(b"$1\r\na\r\n")
        flusher.flush()
        assert transport.written == b""
        writes: list[bytes] = []
        transport.write = writes.append  # type: ignore[method-assign]
        b.answer(b"$1\r\nb\r\n")
        flusher.flush()
        assert writes == [b"$1\r\nb\r\n$1\r\na\r\n+PONG\r\n"]  # all three, one write
        assert pool.stats.requests == 3 and not client.queue

    with_client(test)


def test_protocol_error_is_answered_after_earlier_replies_then_closes() -> None:
    def test(pool: FakePool, client: Client, transport: FakeTransport, flusher: Flusher) -> None:
        client.data_received(encode_command([b"GET", A1]) + b"*1\r\n$x\r\n")
        assert not transport.closed
        pool.endpoints[0].answer(b"$-1\r\n")
        flusher.flush()
        assert transport.written == b"$-1\r\n-ERR Protocol error: invalid bulk length\r\n"
        assert transport.closed and pool.stats.protocol_errors == 1
        client.data_received(encode_command([b"GET", A1]))  # ignored once closing
        assert len(pool.endpoints[0].sent) == 0

    with_client(test)


def test_reading_pauses_while_too_many_replies_are_owed() -> None:
    def test(pool: FakePool, client: Client, transport: FakeTransport, flusher: Flusher) -> None:
        assert client.flow is not None
        client.flow.pause_above, client.flow.resume_below = 10, 3
        client.data_received(encode_command([b"GET", A1]) * 11)
        assert not transport.reading
        pool.endpoints[0].answer(*[b"$-1\r\n"] * 8)  # 3 still owed: not below 3 yet
        flusher.flush()
        assert not transport.reading
        pool.endpoints[0].answer(b"$-1\r\n")
        flusher.flush()
        assert transport.reading and transport.pauses == 1

    with_client(test)


def test_reading_pauses_while_the_client_does_not_read_its_replies() -> None:
    def test(pool: FakePool, client: Client, transport: FakeTransport, flusher: Flusher) -> None:
        client.pause_writing()
        assert not transport.reading
        client.data_received(encode_command([b"PING"]))  # already read bytes are served
        client.resume_writing()
        assert transport.reading and transport.written == b"+PONG\r\n"

    with_client(test)


def test_connection_lost_ends_the_session_and_leaves_the_pool() -> None:
    def test(pool: FakePool, client: Client, transport: FakeTransport, flusher: Flusher) -> None:
        assert client in pool.clients and client.session.peer == "127.0.0.1:50000"
        client.data_received(encode_command([b"GET", A1]))
        client.connection_lost(None)
        assert client not in pool.clients and not client.queue
        pool.endpoints[0].answer(b"$-1\r\n")  # a late reply for a gone client is harmless
        flusher.flush()
        assert pool.stats.client_eof == 1

    with_client(test)


class Reading:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_flow_control_hysteresis_and_write_pressure() -> None:
    transport: Any = Reading()
    flow = FlowControl(transport, pause_above=4, resume_below=2)
    for outstanding in (1, 4, 5, 6, 3, 2, 1, 0, 5):
        flow.check(outstanding)
    assert transport.calls == ["pause", "resume", "pause"]
    flow.check(0)
    flow.write_paused(0)  # the client stopped reading: stay paused even with nothing owed
    flow.check(0)
    assert transport.calls == ["pause", "resume", "pause", "resume", "pause"]
    flow.write_resumed(0)
    assert transport.calls[-1] == "resume" and not flow.paused


def test_a_client_whose_flush_raises_is_closed_and_the_others_still_flushed() -> None:
    """A bug in one client's flush must not strand the other clients of the loop turn (their
    replies settled, never written) nor leave the failing client to read replies in another
    request's place."""
    from pyproxy.proxy.replies import Flusher

    class Broken:
        def __init__(self) -> None:
            self.dirty, self.held, self.closed, self.flusher = False, 0, False, flusher

        def flush(self) -> None:
            raise IndexError("a bug")

        def close(self) -> None:
            self.closed = True

    class Fine(Broken):
        flushed = False

        def flush(self) -> None:
            self.flushed = True

    flusher = Flusher()
    broken, fine = Broken(), Fine()
    for owner in (broken, fine):
        owner.dirty = True
        flusher.mark(owner)
    flusher.flush()
    assert broken.closed and fine.flushed and not fine.closed
    assert not broken.dirty and not fine.dirty
