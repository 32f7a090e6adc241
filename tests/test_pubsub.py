"""Pub/sub through the proxy against real redis-servers: Redis's bytes in subscribed mode,
messages published through a second proxy on both shards, redis-py's pubsub() in RESP2 and
RESP3, fan-in (1,000 subscribers, one backend subscription), a slow subscriber cut off, and
PUBSUB introspection."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.servers import ProxyProcess, free_port
from tests.test_proxy import (
    Cluster,
    Raw,
    key_on,
    pool_yaml,
    second_proxy,
    two_shard_cluster,
)

DEADLINE = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_shard_cluster(timeout=1000) as running:
        yield running


@pytest.fixture(scope="module")
def second(cluster: Cluster) -> Iterator[ProxyProcess]:
    with second_proxy(cluster) as proxy:
        yield proxy


def publish(port: int, channel: bytes | str, message: bytes | str) -> bytes:
    with Raw("127.0.0.1", port) as conn:
        return conn.call("PUBLISH", channel, message)


def test_subscribed_mode_answers_redis_bytes(cluster: Cluster) -> None:
    script = ["SUBSCRIBE sm:a sm:b", "PING", "PING hi", "GET x", "PSUBSCRIBE sm:*",
              "UNSUBSCRIBE sm:a", "UNSUBSCRIBE", "PUNSUBSCRIBE", "PING", "UNSUBSCRIBE",
              "SSUBSCRIBE sm:{s}1", "SUNSUBSCRIBE", "SUNSUBSCRIBE"]
    with cluster.raw() as proxy, Raw("127.0.0.1", cluster.ref.port) as ref:
        for line in script:
            proxy.cmd(*line.split())
            ref.cmd(*line.split())
            frames = 2 if line == "SUBSCRIBE sm:a sm:b" else 1
            assert proxy.replies(frames) == ref.replies(frames), line


def test_messages_cross_proxies_and_shards(cluster: Cluster, second: ProxyProcess) -> None:
    c0, c1 = key_on(0, b"news"), key_on(1, b"news")
    with cluster.raw() as sub:
        sub.cmd("SUBSCRIBE", c0, c1)
        assert sub.replies(2) == [b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:%d\r\n"
                                  % (len(c), c, n) for n, c in ((1, c0), (2, c1))]
        sub.cmd("PSUBSCRIBE", "news*")
        assert sub.reply() == b"*3\r\n$10\r\npsubscribe\r\n$5\r\nnews*\r\n:3\r\n"
        assert publish(second.port, c0, "zero") == b":2\r\n"  # the channel and the pattern
        assert publish(second.port, c1, "one") == b":2\r\n"
        got = sub.replies(4)
        assert cluster.a.client().pubsub_numsub(c0) == [(c0, 1)]  # the channel lives on shard 0
        assert cluster.b.client().pubsub_numsub(c1) == [(c1, 1)]
    assert got == [
        b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$4\r\nzero\r\n" % (len(c0), c0),
        b"*4\r\n$8\r\npmessage\r\n$5\r\nnews*\r\n$%d\r\n%s\r\n$4\r\nzero\r\n" % (len(c0), c0),
        b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$3\r\none\r\n" % (len(c1), c1),
        b"*4\r\n$8\r\npmessage\r\n$5\r\nnews*\r\n$%d\r\n%s\r\n$3\r\none\r\n" % (len(c1), c1),
    ]


def test_redis_py_pubsub_resp2_and_resp3(cluster: Cluster, second: ProxyProcess) -> None:
    channels = [key_on(0, b"rp:ch").decode(), key_on(1, b"rp:ch").decode()]
    for protocol in (2, 3):
        client = redis.Redis("127.0.0.1", cluster.port, protocol=protocol,
                             socket_timeout=DEADLINE)
        p = client.pubsub(ignore_subscribe_messages=True)
        p.subscribe(*channels)
        p.psubscribe("rp:pat:*")
        for _ in range(3):  # the confirmations
            p.get_message(timeout=DEADLINE, ignore_subscribe_messages=False)
        publisher = redis.Redis("127.0.0.1", second.port, socket_timeout=DEADLINE)
        for i, ch in enumerate(channels):
            assert publisher.publish(ch, f"m{i}") == 1
        assert publisher.publish("rp:pat:x", "pattern") == 1
        received = []
        deadline = time.monotonic() + DEADLINE
        while len(received) < 3 and time.monotonic() < deadline:
            message = p.get_message(timeout=1.0)
            if message:
                received.append((message["type"], message["data"]))
        assert received == [("message", b"m0"), ("message", b"m1"), ("pmessage", b"pattern")]
        p.close()
        publisher.close()
        client.close()


def test_a_resp3_subscriber_gets_pushes_and_runs_ordinary_commands(cluster: Cluster) -> None:
    with cluster.raw() as conn, Raw("127.0.0.1", cluster.ref.port) as ref:
        for c in (conn, ref):
            assert c.call("HELLO", "3").startswith(b"%")
            c.cmd("SUBSCRIBE", "r3:ch")
        assert conn.reply() == ref.reply() == b">3\r\n$9\r\nsubscribe\r\n$5\r\nr3:ch\r\n:1\r\n"
        assert conn.call("SET", "r3:k", "v") == b"+OK\r\n"
        assert conn.call("GET", "r3:k") == b"$1\r\nv\r\n"
        assert conn.call("PING") == ref.call("PING") == b"+PONG\r\n"
        assert publish(cluster.port, "r3:ch", "pushed") == b":1\r\n"
        assert conn.reply() == b">3\r\n$7\r\nmessage\r\n$5\r\nr3:ch\r\n$6\r\npushed\r\n"
        conn.cmd("UNSUBSCRIBE")
        ref.cmd("UNSUBSCRIBE")
        assert conn.reply() == ref.reply()


def test_redis_py_listen_and_run_in_thread(cluster: Cluster, second: ProxyProcess) -> None:
    client = redis.Redis("127.0.0.1", cluster.port, socket_timeout=DEADLINE)
    heard: list[bytes] = []
    done = threading.Event()

    def handler(message: dict[str, Any]) -> None:
        heard.append(message["data"])
        if len(heard) == 20:
            done.set()

    p = client.pubsub()
    p.subscribe(**{"thr:ch": handler})
    worker = p.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        publisher = redis.Redis("127.0.0.1", second.port)
        deadline = time.monotonic() + DEADLINE
        while publisher.pubsub_numsub("thr:ch")[0][1] < 1:  # the subscription reached Redis
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for i in range(20):
            publisher.publish("thr:ch", f"{i}")
        assert done.wait(DEADLINE)
        assert heard == [f"{i}".encode() for i in range(20)]
        publisher.close()
    finally:
        worker.stop()
        worker.join(5)
        p.close()
        client.close()
    listener = redis.Redis("127.0.0.1", cluster.port, socket_timeout=DEADLINE).pubsub()
    listener.subscribe("listen:ch")
    publish(second.port, "listen:ch", "via listen")
    messages = listener.listen()
    assert next(messages)["type"] == "subscribe"
    assert next(messages)["data"] == b"via listen"
    listener.close()


def test_1000_subscribers_share_one_backend_subscription(cluster: Cluster) -> None:
    channel = key_on(1, b"fan")
    subscribers = []
    try:
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=DEADLINE)
            sock.sendall(b"SUBSCRIBE %s\r\n" % channel)
            subscribers.append(sock)
        confirmation = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
        for sock in subscribers:
            assert _read_exactly(sock, len(confirmation)) == confirmation
        backend = cluster.b.client()
        assert backend.pubsub_numsub(channel) == [(channel, 1)]
        feeds = [line for line in backend.execute_command("CLIENT", "LIST").decode().splitlines()
                 if " sub=1 " in line]
        assert len(feeds) == 1  # one subscriber connection for the 1,000 clients
        started = time.monotonic()
        assert publish(cluster.port, channel, "to all") == b":1\r\n"
        message = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$6\r\nto all\r\n" % (len(channel),
                                                                               channel)
        for sock in subscribers:
            assert _read_exactly(sock, len(message)) == message
        print(f"PUBSUB-FANOUT 1000 subscribers: {1000 * (time.monotonic() - started):.1f} ms")
    finally:
        for sock in subscribers:
            sock.close()
    deadline = time.monotonic() + DEADLINE
    while cluster.b.client().pubsub_numsub(channel) != [(channel, 0)]:  # the last one left
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_a_slow_subscriber_is_cut_off_and_the_others_go_on(redis_factory: Any,
                                                           proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
    proxy = proxy_factory(lambda: pool_yaml(free_port(), servers,
                                            pubsub_output_limit=1024 * 1024))
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: it sticks
    slow.settimeout(DEADLINE)
    slow.connect(("127.0.0.1", proxy.port))
    slow.sendall(b"SUBSCRIBE flood\r\n")
    with Raw("127.0.0.1", proxy.port) as fast, Raw("127.0.0.1", proxy.port) as publisher:
        fast.cmd("SUBSCRIBE", "flood")
        fast.reply()
        time.sleep(0.2)
        payload = b"x" * 65536
        cut = "pub/sub output unread: over its limit, disconnected"
        for _ in range(512):  # up to 32 MB: the kernel's socket buffers take the first MBs
            assert publisher.call("PUBLISH", "flood", payload) == b":1\r\n"
            fast.reply()
            if cut in proxy.log_text():
                break
        assert cut in proxy.log_text()
        assert publisher.call("PUBLISH", "flood", "still") == b":1\r\n"
        assert fast.reply().endswith(b"$5\r\nstill\r\n")
    try:  # what was sent before the cut, then EOF (or a reset); a timeout fails the test
        while slow.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    slow.close()


def test_shard_channels_and_introspection(cluster: Cluster, second: ProxyProcess) -> None:
    s0, s1 = key_on(0, b"sch"), key_on(1, b"sch")
    with cluster.raw() as sub, cluster.raw() as other, Raw("127.0.0.1", second.port) as pub:
        sub.cmd("SSUBSCRIBE", s0, s1)
        sub.replies(2)
        other.cmd("SUBSCRIBE", "intro:a", "intro:b")
        other.replies(2)
        other.cmd("PSUBSCRIBE", "intro:*")
        other.reply()
        assert pub.call("SPUBLISH", s1, "hi") == b":1\r\n"
        assert sub.reply() == b"*3\r\n$8\r\nsmessage\r\n$%d\r\n%s\r\n$2\r\nhi\r\n" % (len(s1), s1)
        channels = pub.call("PUBSUB", "CHANNELS", "intro:*")
        assert sorted(re.findall(rb"intro:[ab]", channels)) == [b"intro:a", b"intro:b"]
        assert pub.call("PUBSUB", "NUMSUB", "intro:a", "intro:none") == (
            b"*4\r\n$7\r\nintro:a\r\n:1\r\n$10\r\nintro:none\r\n:0\r\n")
        assert pub.call("PUBSUB", "NUMPAT") == b":1\r\n"
        shard_channels = pub.call("PUBSUB", "SHARDCHANNELS")
        assert s0 in shard_channels and s1 in shard_channels
        assert pub.call("PUBSUB", "SHARDNUMSUB", s0) == b"*2\r\n$%d\r\n%s\r\n:1\r\n" % (len(s0),
                                                                                       s0)
