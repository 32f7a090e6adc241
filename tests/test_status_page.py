"""The status page: rendered by headless Chromium against a live two-shard ZooKeeper proxy,
its shards, masters, replicas and slot ranges found in the rendered DOM; its JSON twin; a
screenshot (``PYPROXY_SCREENSHOT=docs/status-page.png`` keeps it there; the README shows it
through ``pngquant --quality=80-95``, a third of the size).

Chromium comes from Debian's ``chromium`` package (``scripts/deps.py test``). It runs with
every background service off and a resolver that resolves nothing, so the only connection
it makes is to the page on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pyproxy.cluster import zkschema
from pyproxy.routing.hashing import slot_of
from pyproxy.routing.table import MOVING, Migration
from tests.keys import keys_for_shard
from tests.servers import REPO_ROOT, free_port, pool_config, redis_client, two_shards, wait_until

MOVING_SLOTS = ((1000, 1023),)  # redis-0000's slots shown moving to redis-0001
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-default-apps", "--disable-extensions",
                  "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                  "--hide-scrollbars")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed: `python3 scripts/deps.py test` (as root) "
                    "installs Debian's chromium package")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


class Rows(HTMLParser):
    """The text of each cell of each row of the table with class ``shards``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.depth = 0  # inside table.shards
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("class", "shards") in attrs:
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag == "td":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.depth = 0
        elif tag == "td" and self.cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=10) as page:
        return dict(json.loads(page.read()))


def test_status_page_in_headless_chromium(redis_factory: Any, proxy_factory: Any,
                                          zk_hosts: str, tmp_path: Path) -> None:
    binary = chromium()
    from kazoo.client import KazooClient

    a, b, replica = redis_factory(), redis_factory(), redis_factory()
    replica.client().slaveof(a.host, a.port)
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    try:
        zk.create("/c/redis-0000", zkschema.shard_data(
            ((0, 2047),), Migration(MOVING_SLOTS, "redis-0001", "m1", MOVING)), makepath=True)
        zk.create("/c/redis-0001", zkschema.weight_data(2048, 4095))
        zk.create(f"/c/redis-0000/{a.address}-", ephemeral=True, sequence=True)
        zk.create(f"/c/redis-0000/{replica.address}-", ephemeral=True, sequence=True)
        zk.create(f"/c/redis-0001/{b.address}-", ephemeral=True, sequence=True)
        port, metrics = free_port(), free_port()
        proxy_factory(pool_config(port, two_shards(a, b), zookeeper_host=zk_hosts,
                                  zookeeper_path=f"/p/127.0.0.1:{port}", zookeeper_redis_path="/c",
                                  slowlog_log_slower_than=400000),
                      extra_args=("--metrics", f"127.0.0.1:{metrics}"))

        def replica_seen() -> bool:
            shards = status(metrics)["pools"][0]["shards"]
            members = [m for s in shards for m in s["members"]]
            return (shards[0]["name"] == "redis-0000"
                    and any(m.get("link") == "connected" for m in members))

        wait_until(replica_seen, 20, "the ZooKeeper table and the replica's ROLE")
        slow_get(port, b)
        stop = threading.Event()
        load = threading.Thread(target=traffic, args=(port, stop))
        load.start()
        try:
            status(metrics)  # a first look: the next ones have rates
            time.sleep(1.1)
            look(binary, metrics, tmp_path, a, b, replica)
        finally:
            stop.set()
            load.join(timeout=30)
    finally:
        zk.stop()
        zk.close()


def look(binary: str, metrics: int, tmp_path: Path, a: Any, b: Any, replica: Any) -> None:
    """The page, its DOM in chromium, a screenshot, the JSON twin: while traffic flows."""
    page = tmp_path / "status.html"
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
        page.write_bytes(answer.read())
    text = page.read_text()  # self-contained: nothing it would fetch but itself
    assert not re.search(r"\b(src|href)=|url\(|@import", text)
    assert set(re.findall(r"https?://[^\"\s<]*", text)) <= {"http://www.w3.org/2000/svg"}

    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom",
                       f"http://127.0.0.1:{metrics}/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = Rows()
    parser.feed(dom.stdout)
    rows = {row[0]: row for row in parser.rows if row}  # (the header row has no td)
    assert set(rows) == {"redis-0000", "redis-0001"}, (dom.stdout[:3000], dom.stderr[-3000:])
    zero, one = rows["redis-0000"], rows["redis-0001"]
    assert zero[1].startswith("0-2047") and one[1].startswith("2048-4095")
    assert zero[2].startswith(a.address) and "ROLE: master" in zero[2]
    assert replica.address in zero[3] and f"replica of {a.address}" in zero[3]
    assert one[2].startswith(b.address) and one[3] == "none"
    assert "moving: 1000-1023 -> redis-0001" in zero[8]
    slowlog = [(e["args"], e["shard"]) for e in status(metrics)["pools"][0]["slowlog"]]
    assert (["GET", "slow0"], "redis-0001") in slowlog
    assert "GET slow0" in dom.stdout, slowlog  # the slowlog section shows the slow GET
    assert "hot:page" in dom.stdout  # and the hot key

    shot = tmp_path / "status-page.png"
    taken = run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}",
                         "--window-size=1280,1180", f"http://127.0.0.1:{metrics}/")
    assert taken.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", \
        taken.stderr[-2000:]
    keep = os.environ.get("PYPROXY_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, REPO_ROOT / keep)

    twin = status(metrics)["pools"][0]
    assert [(s["name"], s["ranges_text"], s["master"], s["replicas"]) for s in
            twin["shards"]] == [("redis-0000", "0-2047", a.address, [replica.address]),
                                ("redis-0001", "2048-4095", b.address, [])]
    assert twin["zookeeper"]["registered"] is True
    assert len(twin["slot_requests"]) == 4096 and sum(twin["slot_recent"]) > 0
    assert twin["requests_per_s"] > 0


def traffic(port: int, stop: threading.Event) -> None:
    """GETs over both shards, one key taking a third of them (none in the moving slots), in
    pipelines of 150 until ``stop`` (at most 120 s)."""
    keys = [k for k in keys_for_shard(0, 400, "page") + keys_for_shard(1, 400, "page")
            if not any(lo <= slot_of(k.encode()) <= hi for lo, hi in MOVING_SLOTS)]
    client = redis_client("127.0.0.1", port)
    deadline = time.monotonic() + 120
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            for index, key in enumerate(random.sample(keys, 100)):
                pipe.get(key)
                if index % 2:
                    pipe.get("hot:page")
            pipe.execute()
            time.sleep(0.01)
    finally:
        client.close()


def slow_get(port: int, b: Any) -> None:
    """One GET that waits 600 ms for its SIGSTOPped shard (the slowlog shows it; the pool
    logs from 400 ms, so the traffic of a busy machine does not crowd it out)."""
    (slow_key,) = keys_for_shard(1, 1, "slow")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        b.pause()
        try:
            raw.sendall(b"GET %s\r\n" % slow_key.encode())
            time.sleep(0.6)
        finally:
            b.resume()
        assert raw.recv(64) == b"$-1\r\n"


# ------------------------------------------------------------------ pure: report and render


def _snapshot(table: Any, requests: int, events: tuple[Any, ...] = ()) -> Any:
    from pyproxy.observe.hotkeys import HotKey
    from pyproxy.observe.slowlog import SlowEntry
    from pyproxy.observe.snapshot import (
        ActivitySnapshot,
        BackendSnapshot,
        PoolSnapshot,
        ProxySnapshot,
    )
    from pyproxy.observe.stats import PoolStats, ServerStats

    stats, served = PoolStats(), ServerStats()
    stats.requests = served.requests = requests
    stats.latency.observe(0.0004)
    backend = BackendSnapshot("127.0.0.1:1", 1, 0, 0, 2, served)
    slots = [0] * 4096
    slots[7] = requests
    activity = ActivitySnapshot(
        slot_requests=tuple(slots),
        hot_keys=(HotKey(b"hot", 40, 1), HotKey(b"noise", 3, 2)), hot_samples=100,
        sample_every=32,
        slowlog=(SlowEntry(3, 1_700_000_000, 250_000, (b"GET", b"<k>"), "127.0.0.1:9",
                           b"app", "redis-0000"),),
        events=events, hash_tag=None)
    pool = PoolSnapshot("alpha", "127.0.0.1:22121", table, 3, stats,
                        {"127.0.0.1:1": backend}, activity=activity)
    return ProxySnapshot(1_700_000_000.0, (pool,))


def test_report_and_page_show_migration_failover_and_role_disagreement() -> None:
    from pyproxy.observe.history import TableHistory
    from pyproxy.observe.status import render, report
    from pyproxy.proxy.roles import Role
    from pyproxy.routing import table as routing
    from pyproxy.routing.table import Shard

    def table(master: str, version: int, migration: Any = None) -> Any:
        return routing.build([
            Shard("redis-0000", ((0, 2047),), master, ("127.0.0.1:3",), migration),
            Shard("redis-0001", ((2048, 4095),), "127.0.0.1:2")], 4096, version, "zookeeper")

    history = TableHistory(table("127.0.0.1:3", 1))
    moving = Migration(((0, 99),), "redis-0001", "m7", MOVING)
    history.observe(table("127.0.0.1:1", 2, moving), 1_700_000_100.0)
    events = history.recent()
    assert [(e.kind, e.text) for e in events] == [  # newest first
        ("migration", "migration m7: slots 0-99 to redis-0001: moving"),
        ("master", "master 127.0.0.1:3 -> 127.0.0.1:1")]
    now = table("127.0.0.1:1", 2, moving)
    roles = {"127.0.0.1:1": Role("master"), "127.0.0.1:3": Role("master"),
             "127.0.0.1:2": Role("", error="Connection refused")}
    status = report(_snapshot(now, 300, events), _snapshot(now, 100), 2.0, roles,
                    1_700_000_200.0)
    pool = status["pools"][0]
    zero = pool["shards"][0]
    assert pool["requests_per_s"] == 100.0 and zero["requests_per_s"] == 100.0
    assert zero["migration"] == {"slots": "0-99", "target": "redis-0001", "id": "m7",
                                 "state": "moving"}
    assert [m["agrees"] for m in zero["members"]] == [True, False]  # a replica saying master
    assert pool["slot_recent"][7] == 200 and pool["hot_keys"]["keys"][0]["key"] == "hot"
    page = render(status)
    assert "≠ ZooKeeper" in page and "Connection refused" in page
    assert "moving: 0-99 -&gt; redis-0001" in page
    assert "master 127.0.0.1:3 -&gt; 127.0.0.1:1" in page
    assert "GET &lt;k&gt;" in page  # text is escaped
    assert "<code>hot</code>" in page and "<code>noise</code>" not in page  # noise not shown
    assert json.loads(json.dumps(status)) == status  # the JSON twin is plain data


def test_status_json_is_strict_when_a_latency_is_past_the_last_bucket() -> None:
    """A request slower than the histogram's last bound makes a quantile ``inf``: the JSON
    twin says ">5000" there, which every JSON parser reads (``Infinity`` is not JSON)."""
    from pyproxy.observe.stats import LATENCY_BUCKETS
    from pyproxy.observe.status import quantile
    from pyproxy.statuspage import _strict

    counts = [0] * len(LATENCY_BUCKETS) + [1]
    assert quantile(counts, 0.99) == float("inf")
    text = json.dumps(_strict({"p99_ms": float("inf"), "rows": [(1.5, float("inf"))]}),
                      allow_nan=False)
    assert json.loads(text) == {"p99_ms": ">5000", "rows": [[1.5, ">5000"]]}


def test_rates_restart_when_a_backends_counters_did() -> None:
    """A backend made anew (its address left the table and came back) restarts its histogram:
    the page then shows what the new one counted, never negative counts."""
    from pyproxy.observe.stats import Histogram
    from pyproxy.observe.status import _since

    before, now = Histogram(), Histogram()
    for _ in range(5):
        before.observe(0.001)
    now.observe(0.001)
    assert _since(now, before) == list(now.counts)
    later = now.copy()
    later.observe(0.001)
    assert sum(_since(later, now)) == 1


def test_a_member_answering_garbage_is_its_own_error_not_the_pages() -> None:
    """ROLE asked of something that is not a redis (an HTTP server here) is that member's
    error; the other member's answer still comes back."""
    import asyncio

    from pyproxy.proxy.roles import probe

    async def scenario() -> dict[str, Any]:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await probe([f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"], None, 2.0)
        finally:
            server.close()

    answers = asyncio.run(scenario())
    assert len(answers) == 2 and all(role.error for role in answers.values()), answers
