"""Hot keys and per-slot counters: the Space-Saving summary keeps a fixed number of keys
whatever the number of distinct keys (unit), and through a real proxy 100,000 distinct keys
plus one key taking 10 % of the requests put that key first (with the proxy's RSS printed)."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from pyproxy.observe.hotkeys import HOT_CAPACITY, KeyLoad, SpaceSaving, kept_key
from pyproxy.routing import table as routing
from pyproxy.routing.hashing import slot_of
from pyproxy.routing.routes import Routes
from tests.servers import free_port, pool_config, two_shards, wait_until

DISTINCT = 100_000
HOT_SHARE = 0.10


def workload(seed: int = 18) -> list[bytes]:
    """100,000 distinct keys once each and one key for 10 % of all requests, shuffled."""
    hot = round(DISTINCT * HOT_SHARE / (1 - HOT_SHARE))
    keys = [b"user:%06d" % i for i in range(DISTINCT)] + [b"hot:key"] * hot
    random.Random(seed).shuffle(keys)
    return keys


def test_space_saving_keeps_its_capacity_and_finds_the_hot_key() -> None:
    summary = SpaceSaving(HOT_CAPACITY)
    keys = workload()
    for key in keys:
        summary.add(key)
        assert len(summary.counts) <= HOT_CAPACITY
    top = summary.top(5)
    assert top[0].key == b"hot:key"
    # its count overestimates by at most its error, and the guarantee bound holds
    true = keys.count(b"hot:key")
    assert top[0].count - top[0].error <= true <= top[0].count
    assert len(summary.buckets) <= HOT_CAPACITY and summary.total == len(keys)
    assert sum(summary.counts.values()) == summary.total  # Space-Saving's invariant


def test_halving_keeps_the_order_and_forgets_the_cold() -> None:
    summary = SpaceSaving(4)
    for key, times in ((b"a", 9), (b"b", 5), (b"c", 1)):
        for _ in range(times):
            summary.add(key)
    summary.halve()
    assert [(k.key, k.count) for k in summary.top(4)] == [(b"a", 4), (b"b", 2)]
    summary.add(b"d")
    assert summary.minimum == 1 and summary.top(1)[0].key == b"a"


def test_long_keys_stay_distinct_and_bounded() -> None:
    one, two = b"x" * 300 + b"1", b"x" * 300 + b"2"
    assert kept_key(one) != kept_key(two)
    assert len(kept_key(one)) < 200 and kept_key(b"short") == b"short"


def test_the_locator_counts_every_key_per_slot_and_samples_some() -> None:
    table = routing.build([routing.Shard.of("a", 0, 2047, "h:1"),
                           routing.Shard.of("b", 2048, 4095, "h:2")], 4096)
    load = KeyLoad(4096, sample_every=8)
    routes = Routes(table, ["a", "b"], None, load=load)
    keys = [b"k%d" % i for i in range(4000)]
    for key in keys:
        routes.locate(key)
    assert sum(load.slots) == 4000
    assert load.slots[slot_of(b"k7")] >= 1
    assert 250 < load.hot.total < 750  # 1 in 8 on average: 500
    assert Routes(table, ["a", "b"], None).locate(b"k7") == routes.locate(b"k7")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _pipeline_gets(port: int, keys: list[bytes], batch: int = 2000) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for start in range(0, len(keys), batch):
            part = keys[start:start + batch]
            sock.sendall(b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k)
                                  for k in part))
            replies, data = 0, b""
            while replies < len(part):  # every key is missing: each reply is $-1
                data += sock.recv(65536)
                replies = data.count(b"$-1\r\n")
            assert replies == len(part), data[-200:]


def _status(metrics: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/status.json", timeout=10) as page:
        return dict(json.loads(page.read()))


def test_one_hot_key_among_100000_is_first(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port, metrics = free_port(), free_port()
    proxy = proxy_factory(pool_config(port, two_shards(a, b)),
                          extra_args=("--metrics", f"127.0.0.1:{metrics}"))
    _pipeline_gets(port, [b"warm%d" % i for i in range(2000)])  # allocations of the first use
    wait_until(lambda: _status(metrics)["pools"], 10, "the status page answers")
    before = _rss_kib(proxy.pid)
    keys = workload()
    started = time.monotonic()
    _pipeline_gets(port, keys)
    took = time.monotonic() - started
    after = _rss_kib(proxy.pid)
    (pool,) = _status(metrics)["pools"]
    hot = pool["hot_keys"]
    assert hot["keys"][0]["key"] == "hot:key", hot["keys"][:3]
    assert hot["keys"][0]["share"] > 0.05
    assert hot["keys"][0]["shard"] == (b.address if slot_of(b"hot:key") >= 2048 else a.address)
    assert len(hot["keys"]) <= HOT_CAPACITY
    assert sum(pool["slot_requests"]) >= len(keys)
    print(f"HOTKEYS {len(keys)} GETs ({DISTINCT} distinct keys + hot:key at "
          f"{HOT_SHARE:.0%}) in {took:.1f} s; hot:key first with share "
          f"{hot['keys'][0]['share']:.3f} of {hot['samples']} samples; proxy RSS "
          f"{before / 1024:.1f} -> {after / 1024:.1f} MiB")
