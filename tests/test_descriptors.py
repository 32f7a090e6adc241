"""Issue 15, finding 11: a flood of clients cannot take the file descriptors backends need.

A proxy runs with ``RLIMIT_NOFILE`` 256 over two real redis-servers. A client connects and
uses one shard; then more clients connect than the proxy has descriptors. Those past the
limit must get Redis's ``-ERR max number of clients reached`` and be closed (without sending
anything first: a request to a closed socket draws a reset that can destroy the error); those
admitted are served in full; and the first client's first request to the other shard — a new
backend connection — and a WATCH (a pinned connection) still work. Without the reserve the
flood takes every descriptor and that backend connect fails with "Too many open files".
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from tests.servers import free_port, two_shards
from tests.test_proxy import Raw, key_on, pool_yaml

OPEN_FILES = 256
BACKLOG = 32
MAX_CLIENTS = b"-ERR max number of clients reached\r\n"
BATCH = 24  # connects at once, below the backlog: no SYN is dropped (and retried a second later)
SETTLED = 0.3  # s without another refusal: the batch's refusals have all arrived
DEADLINE = 10.0


def connect_batch(port: int, count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """``count`` new clients, split into (admitted, refused); the refused ones got the error
    and EOF, the admitted ones answered a PING."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
             for _ in range(count)]
    refused: list[socket.socket] = []
    waiting = list(socks)
    deadline = time.monotonic() + DEADLINE
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(waiting, [], [], SETTLED)
        if not readable:
            break
        for sock in readable:
            waiting.remove(sock)
            refused.append(sock)
    for sock in refused:
        got = b""
        while chunk := sock.recv(100):
            got += chunk
        assert got == MAX_CLIENTS
        sock.close()
    for sock in waiting:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
    return waiting, refused


def open_files(pid: int) -> int:
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_client_flood_is_refused_and_connected_clients_keep_their_backends(
        redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    proxy = proxy_factory(lambda: pool_yaml(free_port(), two_shards(a, b), backlog=BACKLOG,
                                            timeout=2000), open_files=OPEN_FILES)
    reserve = 32 + BACKLOG + 2 * 2 * 1  # the formula of pyproxy/proxy/descriptors.py
    headroom = 2 * 16
    for_clients = OPEN_FILES - reserve - headroom
    assert (f"open files limit {OPEN_FILES}: {reserve} kept for backends and the process, "
            f"{headroom} for pinned connections, {for_clients} for clients") in proxy.log_text()
    k0, k1 = key_on(0, b"fd"), key_on(1, b"fd")
    admitted: list[socket.socket] = []
    refused = 0
    with Raw("127.0.0.1", proxy.port) as veteran:
        assert veteran.call("SET", k0, "zero") == b"+OK\r\n"  # shard 1: never connected yet
        try:
            for _ in range(OPEN_FILES // BATCH + 2):  # more clients than descriptors
                served, turned_away = connect_batch(proxy.port, BATCH)
                admitted += served
                refused += len(turned_away)
                assert open_files(proxy.pid) < OPEN_FILES
            assert refused > BATCH  # every client past the limit was refused cleanly
            # all but the veteran (a readiness probe may still be counted for a moment)
            assert for_clients - 2 <= len(admitted) <= for_clients - 1
            # a new backend connection for a client already connected, then a pinned one
            assert veteran.call("SET", k1, "one") == b"+OK\r\n"
            assert veteran.call("MGET", k0, k1) == b"*2\r\n$4\r\nzero\r\n$3\r\none\r\n"
            assert veteran.call("WATCH", k1) == b"+OK\r\n"
            veteran.send(b"MULTI\r\nINCR %s\r\nEXEC\r\n" % key_on(1, b"fd", 1))
            assert veteran.replies(3) == [b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n:1\r\n"]
            with Raw("127.0.0.1", proxy.port) as late:  # still full: refused
                assert late.until_eof() == MAX_CLIENTS
            for sock in admitted[:5]:  # room again for as many
                sock.close()
            deadline = time.monotonic() + DEADLINE
            served = []
            while len(served) < 5:
                assert time.monotonic() < deadline, "the freed room was not given to clients"
                more, _ = connect_batch(proxy.port, 1)
                served += more
            admitted = admitted[5:] + served
            admitted[-1].sendall(b"GET %s\r\n" % k1)
            assert admitted[-1].recv(100) == b"$3\r\none\r\n"
        finally:
            for sock in admitted:
                sock.close()
    log = proxy.log_text()
    assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]
    assert log.count("refusing new clients") == 1  # one line, not one per refusal


class CountedPool:
    """What ``Descriptors`` reads of a pool: its config, backends and clients."""

    def __init__(self, backends: int, clients: int, **keys: Any) -> None:
        from pyproxy import config

        self.config = config.parse(pool_yaml(1, ["127.0.0.1:1:0-4095"], **keys)).pools[0]
        self.backends = list(range(backends))
        self.clients = list(range(clients))


def test_the_reserve_formula_and_who_may_take_the_rest() -> None:
    import asyncio

    from pyproxy.observe.stats import PoolStats
    from pyproxy.proxy.backend import Backend
    from pyproxy.proxy.descriptors import Descriptors

    descriptors = Descriptors(300)
    one = CountedPool(2, 50, backlog=10, server_connections=3)  # 2 × 16 pinned headroom
    two = CountedPool(1, 20, backlog=20, pinned_connections=4)  # 1 × 4
    descriptors.pools += [one, two]
    assert descriptors.reserve() == 32 + (10 + 2 * 2 * 3) + (20 + 2 * 1 * 1)
    assert descriptors.headroom() == 2 * 16 + 4
    room = 300 - descriptors.reserve()  # 224, of which the headroom 36 stays for pins
    assert descriptors.room() == room
    one.clients = list(range(room - 36 - 20 - 1))
    assert descriptors.admits_client(0.0)
    one.clients.append(0)
    assert not descriptors.admits_client(0.0) and descriptors.admits_pinned()

    async def leases() -> None:
        backend = Backend("127.0.0.1:1", two.config, PoolStats(), descriptors)
        pins = [backend.lease(False) for _ in range(4)]  # pinned_connections: 4
        assert None not in pins and backend.lease(False) is None
        assert descriptors.pinned == 4
        for pin in pins:
            assert pin is not None
            backend.close_pinned(pin)
        assert descriptors.pinned == 0
        wide = Backend("127.0.0.1:1", one.config, PoolStats(), descriptors)
        held = []
        while (pin := wide.lease(False)) is not None:  # the headroom, then what is left
            held.append(pin)
        assert len(held) == 36 and descriptors.pinned == 36
        assert not descriptors.admits_client(0.0)
        one.clients = one.clients[:-10]  # ten clients leave: ten more pins, or clients
        assert descriptors.admits_client(0.0)
        assert wide.lease(False) is not None and descriptors.pinned == 37
        wide.retire()
        for pin in held:
            wide.give_back(pin, [])  # a retired backend's pins are closed when given back
        assert descriptors.pinned == 1

    asyncio.run(leases())
    assert Descriptors(None).admits_client(0.0) and Descriptors(None).room() is None
