#!/usr/bin/env python3
"""Pub/sub fan-in, measured: N clients subscribed to one channel through one proxy.

    python benchmarks/pubsub_fanout.py [--subscribers 10000] [--messages 5]

Starts two redis-servers and pyproxy on 127.0.0.1 (tests/servers.py classes, stopped by pid
in a ``finally``), connects N subscribers (asyncio, this process), and reports: the backend
connections the proxy holds for them (the shard's CLIENT LIST, subscriber connections), the
proxy's RSS before and after subscribing, and for each PUBLISH the time until every
subscriber has read the message. Everything is bounded: N connections, M messages, a 60 s
deadline per step.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.servers import ProxyProcess, RedisServer, free_port, pool_config  # noqa: E402

STEP_DEADLINE = 60.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def run(port: int, subscribers: int, messages: int, pid: int) -> dict[str, object]:
    channel = b"fanout"
    confirm = b"*3\r\n$9\r\nsubscribe\r\n$6\r\nfanout\r\n:1\r\n"
    conns = []
    rss_before = rss_mib(pid)
    for _ in range(subscribers):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"SUBSCRIBE %s\r\n" % channel)
        conns.append((reader, writer))
    await asyncio.wait_for(asyncio.gather(*(r.readexactly(len(confirm)) for r, _ in conns)),
                           STEP_DEADLINE)
    rss_subscribed = rss_mib(pid)
    _, publisher = await asyncio.open_connection("127.0.0.1", port)
    timings = []
    for i in range(messages):
        payload = b"message-%d" % i
        frame = b"*3\r\n$7\r\nmessage\r\n$6\r\nfanout\r\n$%d\r\n%s\r\n" % (len(payload), payload)
        started = time.perf_counter()
        publisher.write(b"PUBLISH %s %s\r\n" % (channel, payload))
        got = await asyncio.wait_for(
            asyncio.gather(*(r.readexactly(len(frame)) for r, _ in conns)), STEP_DEADLINE)
        timings.append(time.perf_counter() - started)
        assert all(g == frame for g in got), "a subscriber read something else"
    for _, writer in conns:
        writer.close()
    publisher.close()
    return {"rss_before_mib": rss_before, "rss_subscribed_mib": rss_subscribed,
            "fanout_ms": [round(t * 1000, 1) for t in timings]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=5)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.subscribers + 100 > hard:
        print(f"need {args.subscribers + 100} descriptors, the limit is {hard}")
        return 2
    with RedisServer() as a, RedisServer() as b:
        servers = [f"{a.address}:0-2047", f"{b.address}:2048-4095"]
        with ProxyProcess(lambda: pool_config(free_port(), servers)) as proxy:
            assert proxy.pid is not None
            figures = asyncio.run(run(proxy.port, args.subscribers, args.messages, proxy.pid))
            feeds = [line for s in (a, b)
                     for line in s.client().execute_command("CLIENT", "LIST").decode()
                     .splitlines() if " sub=" in line and " sub=0 " not in line]
    print(f"subscribers: {args.subscribers}, backend subscriber connections: {len(feeds)}")
    print(f"proxy RSS: {figures['rss_before_mib']:.1f} MiB before, "
          f"{figures['rss_subscribed_mib']:.1f} MiB with every subscriber connected")
    print(f"one PUBLISH to all of them, ms per message: {figures['fanout_ms']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
