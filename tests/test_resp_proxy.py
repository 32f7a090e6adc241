"""The request parser's limits and its element rule through a real proxy, beside a real
redis-server that gets the same bytes: a header announcing billions of elements is refused at
once while other clients stay fast, a nested array smuggles nothing, and the limits before
AUTH are Redis's."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from pyproxy.protocol import resp
from tests.servers import free_port, pool_config, two_shards

PASSWORD = "s3cret-pw"
DEADLINE = 10.0  # generous bound for what should take milliseconds


def exchange(port: int, data: bytes, replies: int | None = None) -> bytes:
    """Send ``data`` on a new connection; read ``replies`` whole replies, or (None) until the
    server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(data)
        buf = b""
        while True:
            if replies is not None:
                pos, count = 0, 0
                while count < replies and (end := resp.reply_end(buf, pos)) > 0:
                    pos, count = end, count + 1
                if count == replies:
                    return buf[:pos]
            chunk = sock.recv(65536)
            if not chunk:
                assert replies is None, f"closed after {buf!r}"
                return buf
            buf += chunk


@pytest.fixture
def plain(redis_factory: Any, proxy_factory: Any) -> tuple[Any, Any, Any]:
    """A proxy over two shards (no password), and a reference redis-server."""
    a, b, reference = redis_factory(), redis_factory(), redis_factory()
    proxy = proxy_factory(pool_config(free_port(), two_shards(a, b), timeout=2000))
    return proxy, (a, b), reference


@pytest.fixture
def with_auth(redis_factory: Any, proxy_factory: Any) -> tuple[Any, Any, Any]:
    """The same with ``redis_auth``: the backends and the reference require the password."""
    args = ["--requirepass", PASSWORD]
    a, b = redis_factory(extra_args=args), redis_factory(extra_args=args)
    reference = redis_factory(extra_args=args)
    proxy = proxy_factory(pool_config(free_port(), two_shards(a, b), timeout=2000,
                                      redis_auth=f'"{PASSWORD}"'))
    return proxy, (a, b), reference


@pytest.mark.parametrize("setup", ["plain", "with_auth"])
@pytest.mark.parametrize("header", [b"*3000000000\r\n", b"*2147483647\r\n"])
def test_a_13_byte_header_is_refused_at_once_and_others_stay_fast(
        setup: str, header: bytes, request: pytest.FixtureRequest) -> None:
    proxy, _, reference = request.getfixturevalue(setup)
    if setup == "with_auth":  # Redis's own answer before AUTH (for 2147483647: the 10 limit)
        refused = exchange(reference.port, header)
    else:  # Redis waits for 2^31 - 1 elements; the proxy's max_multibulk_length refuses it
        refused = b"-ERR Protocol error: invalid multibulk length\r\n"
    assert refused.startswith(b"-ERR Protocol error: ")
    auth = resp.encode_command([b"AUTH", PASSWORD.encode()]) if setup == "with_auth" else b""
    stop = threading.Event()
    attacks: list[tuple[bytes, float]] = []

    def attack() -> None:
        while not stop.is_set() and len(attacks) < 2000:
            started = time.monotonic()
            attacks.append((exchange(proxy.port, header), time.monotonic() - started))

    attackers = [threading.Thread(target=attack) for _ in range(3)]
    for thread in attackers:
        thread.start()
    round_trips = []
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as sock:
            if auth:
                sock.sendall(auth)
                assert sock.recv(100) == b"+OK\r\n"
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                started = time.monotonic()
                sock.sendall(resp.encode_command([b"SET", b"fast", b"1"]))
                assert sock.recv(100) == b"+OK\r\n"
                round_trips.append(time.monotonic() - started)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(DEADLINE)
    assert len(attacks) >= 10 and len(round_trips) >= 10
    assert {reply for reply, _ in attacks} == {refused}
    assert max(t for _, t in attacks) < 1.0  # the error at once, then the close
    assert max(round_trips) < 0.2, sorted(round_trips)[-5:]


NESTED = [
    [b"INFO"], [b"AUTH"], [b"QUIT"], [b"KEYS"], [b"PING"], [b"GET", b"k", b"extra"],
    [b"ECHO"], [b"MGET", b"a"],
]


@pytest.mark.parametrize("before", NESTED, ids=lambda args: b" ".join(args).decode())
def test_a_nested_array_smuggles_no_command(before: list[bytes], plain: Any) -> None:
    """The element after ``before`` is a whole SET frame: Redis answers "expected '$', got
    '*'" and closes, and so does the proxy — the SET runs nowhere, nothing after it either."""
    proxy, shards, reference = plain
    hidden = resp.encode_command([b"SET", b"smuggled", b"1"])
    data = (b"*%d\r\n" % (len(before) + 1) + b"".join(map(resp.bulk, before)) + hidden
            + resp.encode_command([b"SET", b"after", b"1"]))
    expected = b"-ERR Protocol error: expected '$', got '*'\r\n"
    assert exchange(reference.port, data) == expected
    assert exchange(proxy.port, data) == expected
    for i in (1, 5, len(data) - len(hidden) - 3):  # split into two writes
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as sock:
            sock.sendall(data[:i])
            time.sleep(0.05)
            sock.sendall(data[i:])
            assert sock.recv(1000) == expected
    for shard in shards:
        with shard.client() as direct:
            assert direct.exists("smuggled", "after") == 0


@pytest.mark.parametrize(
    "data, replies",
    [
        (b"*11\r\n", None),
        (b"*1\r\n$16385\r\n", None),
        (b"*3000000000\r\n", None),
        (b"ECHO x\r\n*11\r\n", None),
        (resp.encode_command([b"AUTH", PASSWORD.encode()])
         + resp.encode_command([b"SET", b"big", b"v" * 20000])
         + resp.encode_command([b"MSET", *[b"k%d" % i for i in range(20)]]), 3),
        (resp.encode_command([b"AUTH", b"wrong"]) + b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n",
         None),
    ],
)
def test_before_auth_the_limits_are_redis_own(data: bytes, replies: int | None,
                                              with_auth: Any) -> None:
    proxy, _, reference = with_auth
    expected = exchange(reference.port, data, replies)
    assert expected.startswith((b"-", b"+OK"))
    assert exchange(proxy.port, data, replies) == expected


@pytest.mark.parametrize(
    "data, replies",
    [
        (b"*1\rX$4\r\nPING\r\n", 1),  # a header ends at its '\r'
        (b"ECHO a\vb\r\nECHO \va\fb\r\n", 2),  # \v and \f split only between words
        (b'ECHO "a"\vb\r\n', 1),  # ECHO with 2 arguments: wrong arity
        (b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", 2),  # two bytes after a bulk: unchecked
        (b"*-0\r\n", None),
        (b"*1\r\n$-1\r\n", None),
        (b"*2\r\n$4\r\nECHO\r\n+x\r\n", None),
    ],
)
def test_odd_requests_get_redis_answers(data: bytes, replies: int | None, plain: Any) -> None:
    proxy, _, reference = plain
    expected = exchange(reference.port, data, replies)
    assert exchange(proxy.port, data, replies) == expected


def test_a_huge_reply_costs_linear_time_and_others_stay_fast(plain: Any) -> None:
    """Finding 3: a partial reply used to be parsed again from its start on every read — an
    LRANGE of a million elements took 2.1 s, blocking every client for as long (measured with
    benchmarks/big_reply.py). Now it costs its bytes once: the reply arrives intact (Redis's
    bytes) and another client's PING through the proxy stays under 200 ms meanwhile — in the
    best of three LRANGEs, as a busy shared machine may deschedule the proxy for that long
    (the old code blocked for 2 s in every one)."""
    import hashlib

    proxy, (_, b), _ = plain
    elements, key = 1_000_000, b"huge"  # slot 4023: on shard 1 (b)
    with socket.create_connection(("127.0.0.1", b.port), timeout=DEADLINE) as direct:
        for start in range(0, elements, 20_000):
            direct.sendall(resp.encode_command(
                [b"RPUSH", key, *(b"%07d" % i for i in range(start, start + 20_000))]))
            assert direct.recv(100).startswith(b":")
    expected = resp.array([resp.bulk(b"%07d" % i) for i in range(elements)])
    longest = []
    for _ in range(3):
        stop = threading.Event()
        round_trips: list[float] = []

        def ping(stop: threading.Event = stop, round_trips: list[float] = round_trips) -> None:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as sock:
                while not stop.is_set():
                    started = time.monotonic()
                    sock.sendall(b"PING\r\n")
                    assert sock.recv(100) == b"+PONG\r\n"
                    round_trips.append(time.monotonic() - started)
                    time.sleep(0.002)

        pinger = threading.Thread(target=ping)
        pinger.start()
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as sock:
                sock.sendall(resp.encode_command([b"LRANGE", key, b"0", b"-1"]))
                digest, got = hashlib.sha256(), 0
                while got < len(expected):
                    chunk = sock.recv(1 << 20)
                    assert chunk, f"closed after {got} bytes"
                    digest.update(chunk)
                    got += len(chunk)
        finally:
            stop.set()
            pinger.join(DEADLINE)
        assert got == len(expected)
        assert digest.digest() == hashlib.sha256(expected).digest()
        assert len(round_trips) >= 5
        longest.append(max(round_trips))
    print(f"\nBIG-REPLY longest PING during each LRANGE of {elements:,}: "
          + ", ".join(f"{t * 1000:.0f} ms" for t in longest))
    assert min(longest) < 0.2, longest
