"""Memory per client and per pool is bounded in bytes, against real redis-servers: a client
that pipelines 2,000 GETs of a 1 MB value without reading is disconnected past
``client_output_limit`` with the proxy's RSS growing by about that much at most, and past
``proxy_memory_limit`` new requests get -OOM until the clients read.

A client that does not read is also paused (flow control: reading stops once its socket's
write buffer is full), so how much of its pipeline the proxy takes in before pausing depends
on how the kernel split it into reads: read whole, 2,000 replies are owed and the limit cuts
the client off; read in pieces, the proxy stops early, holds a few MB and the client just
waits. The tests make the first case certain: the shard is stopped (SIGSTOP) while the
pipeline is sent and resumed once the proxy has read every byte of it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from tests.servers import free_port
from tests.test_proxy import Raw, key_on, pool_yaml

MB = 1024 * 1024
DEADLINE = 30.0  # generous: 2 GB flow through the proxy on a shared 2-core machine


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def start(redis_factory: Any, proxy_factory: Any, timeout: int = 5000,
          **settings: Any) -> tuple[Any, Any, bytes]:
    """A proxy over two shards; the first one (returned) holds a 1 MB value at the key."""
    a, b = redis_factory(), redis_factory()
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers, timeout=timeout, **settings))
    big = key_on(0, b"big")
    a.client().set(big, b"x" * MB)
    return proxy, a, big


def queued_bytes(local_port: int, remote_port: int) -> int:
    """Bytes in the kernel on the 127.0.0.1 TCP socket local_port -> remote_port, not yet
    sent (acknowledged) or not yet read by its process: its tx_queue plus rx_queue."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (
                    local_port, remote_port):
                tx, rx = fields[4].split(":")
                return int(tx, 16) + int(rx, 16)
    raise AssertionError(f"no socket {local_port} -> {remote_port}")


def send_unread(proxy: Any, shard: Any, requests: bytes) -> socket.socket:
    """A client with a small receive buffer that sends ``requests`` and reads nothing. The
    shard is stopped until the proxy has read all of them (none is left in either socket),
    so no reply can pause the reading half-way."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", proxy.port))
        port = sock.getsockname()[1]
        shard.pause()
        try:
            sock.sendall(requests)
            deadline = time.monotonic() + DEADLINE
            while queued_bytes(port, proxy.port) + queued_bytes(proxy.port, port):
                assert time.monotonic() < deadline, "the proxy did not read the pipeline"
                time.sleep(0.01)
        finally:
            shard.resume()
    except BaseException:
        sock.close()
        raise
    return sock


def test_a_client_that_does_not_read_is_cut_off_with_rss_bounded(redis_factory: Any,
                                                                 proxy_factory: Any) -> None:
    limit = 32 * MB
    # Redis runs all 2,000 GETs and builds its 2 GB of output before writing a byte of it;
    # on a busy machine that outlasts a 5 s timeout, and replies that come late are dropped
    proxy, a, big = start(redis_factory, proxy_factory, timeout=int(DEADLINE * 1000),
                          client_output_limit=limit)
    before = rss(proxy.pid)
    greedy = send_unread(proxy, a, b"GET %s\r\n" % big * 2000)  # 2 GB of replies, never read
    round_trips = []
    with greedy, Raw("127.0.0.1", proxy.port) as other:
        deadline = time.monotonic() + DEADLINE
        while True:
            started = time.monotonic()
            assert other.call("PING") == b"+PONG\r\n"  # everyone else is served meanwhile
            round_trips.append(time.monotonic() - started)
            if "output unread: over its limit" in proxy.log_text():
                break
            assert time.monotonic() < deadline, "the greedy client was not cut off"
            time.sleep(0.05)
        peak = rss(proxy.pid)
        assert other.call("GET", key_on(1, b"small")) == b"$-1\r\n"
    grown = peak - before
    print(f"MEMORY-BOUND rss {before // MB} MiB -> {peak // MB} MiB (limit {limit // MB} MiB); "
          f"longest PING meanwhile {max(round_trips) * 1000:.0f} ms of {len(round_trips)}")
    assert grown < limit + 48 * MB, grown  # the limit plus a margin (kernel buffers, parsing)
    assert max(round_trips) < 0.2, sorted(round_trips)[-5:]  # and promptly


def test_past_the_pool_budget_new_requests_get_oom(redis_factory: Any,
                                                   proxy_factory: Any) -> None:
    proxy, a, big = start(redis_factory, proxy_factory, client_output_limit=0,
                          proxy_memory_limit=8 * MB)
    reader = send_unread(proxy, a, b"GET %s\r\n" % big * 40)  # 40 MB held: not read (yet)
    with reader, Raw("127.0.0.1", proxy.port) as other:
        deadline = time.monotonic() + DEADLINE
        while (reply := other.call("GET", key_on(1, b"oom"))) == b"$-1\r\n":
            assert time.monotonic() < deadline, "the budget never filled"
            time.sleep(0.05)
        assert reply.startswith(b"-OOM pyproxy: "), reply
        assert other.call("PING") == b"+PONG\r\n"  # answered by the proxy: still fine
        got = 0
        reader.settimeout(DEADLINE)
        while got < 40 * (MB + 12):  # "$1048576\r\n" + the value + "\r\n", 40 times
            got += len(reader.recv(4 * MB))
        assert other.call("GET", key_on(1, b"oom")) == b"$-1\r\n"


def test_unauthenticated_half_bulks_are_refused_at_their_header(redis_factory: Any,
                                                               proxy_factory: Any) -> None:
    """Finding 4's other half: 200 clients that never AUTH sending half of a 5 MB bulk held
    1 GB. Before AUTH a bulk over 16 KB is refused at its header, as Redis refuses it; the
    proxy holds next to nothing and an authenticated client's round trips stay fast."""
    import threading

    a, b = redis_factory(), redis_factory()
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers, redis_auth="pw"))
    before = rss(proxy.pid)
    half = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000000\r\n" + b"x" * 2_500_000
    answers: list[bytes] = []

    def attack() -> None:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as s:
                try:
                    s.sendall(half)
                except OSError:  # refused and closed before all of it was sent
                    pass
                try:
                    answers.append(s.recv(200))
                except OSError:  # the reset of our unread bytes may win the race
                    answers.append(b"reset")

    attackers = [threading.Thread(target=attack) for _ in range(10)]
    peak, round_trips = before, []
    with Raw("127.0.0.1", proxy.port) as other:
        assert other.call("AUTH", "pw") == b"+OK\r\n"
        for thread in attackers:
            thread.start()
        while any(t.is_alive() for t in attackers):
            started = time.monotonic()
            assert other.call("PING") == b"+PONG\r\n"
            round_trips.append(time.monotonic() - started)
            peak = max(peak, rss(proxy.pid))
            time.sleep(0.01)
        for thread in attackers:
            thread.join(DEADLINE)
    refused = b"-ERR Protocol error: unauthenticated bulk length\r\n"  # Redis 7's words
    assert len(answers) == 200 and answers.count(refused) >= 100, set(answers)
    assert set(answers) <= {refused, b"", b"reset"}
    print(f"\nHALF-BULKS rss {before // MB} MiB -> peak {peak // MB} MiB; "
          f"{answers.count(refused)} of 200 read the refusal")
    assert peak - before < 48 * MB  # was 1 GB
    assert max(round_trips) < 0.2, sorted(round_trips)[-5:]
