"""Observability (issue 5): Prometheus metrics, nutcracker-style stats, against real servers."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pyproxy.cluster import zkschema
from tests.servers import free_port, pool_config, redis_client, two_shards, wait_until


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series_count(samples: dict[Any, float]) -> int:
    return len(samples)


def start(redis_factory: Any, proxy_factory: Any) -> tuple[Any, int, int, Any]:
    a, b = redis_factory(), redis_factory()
    port, metrics = free_port(), free_port()
    proxy = proxy_factory(pool_config(port, two_shards(a, b), timeout=1000),
                          extra_args=("--metrics", f"127.0.0.1:{metrics}"))
    return proxy, port, metrics, (a, b)


def test_counters_move_by_the_traffic_sent(redis_factory: Any, proxy_factory: Any) -> None:
    _, port, metrics, (a, b) = start(redis_factory, proxy_factory)
    client = redis_client("127.0.0.1", port)
    before = scrape(metrics)
    for i in range(300):
        client.set(f"m{i}", i)
    for i in range(200):
        client.get(f"m{i}")
    try:
        client.execute_command("NOSUCHCOMMAND")
    except Exception as exc:  # redis.ResponseError
        assert "unknown command" in str(exc)
    after = scrape(metrics)
    moved = lambda name, **kw: value(after, name, **kw) - value(before, name, **kw)  # noqa: E731
    assert moved("pyproxy_requests_total", pool="alpha", command="set") == 300
    assert moved("pyproxy_requests_total", pool="alpha", command="get") == 200
    assert moved("pyproxy_request_errors_total", pool="alpha", command="unknown") == 1
    assert moved("pyproxy_unknown_commands_total", pool="alpha") == 1
    assert moved("pyproxy_request_duration_seconds_count", pool="alpha") >= 501
    assert value(after, "pyproxy_request_duration_seconds_bucket", pool="alpha", le="+Inf") >= 501
    for server in (a, b):
        labels = dict(pool="alpha", shard=server.address, backend=server.address)
        assert value(after, "pyproxy_backend_up", **labels) == 1
        assert value(after, "pyproxy_backend_requests_total", **labels) > 0
        assert value(after, "pyproxy_backend_request_duration_seconds_count", **labels) > 0
    backend_total = sum(
        value(after, "pyproxy_backend_responses_total", pool="alpha", shard=s.address,
              backend=s.address) for s in (a, b))
    assert backend_total >= 500
    client.close()


def test_distinct_keys_add_no_series(redis_factory: Any, proxy_factory: Any) -> None:
    _, port, metrics, _ = start(redis_factory, proxy_factory)
    client = redis_client("127.0.0.1", port)
    client.set("warm", 1)
    client.get("warm")
    before = series_count(scrape(metrics))
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"distinct:{i}", i)
        pipe.get(f"distinct:{i}")
    pipe.execute()
    after = scrape(metrics)
    assert series_count(after) == before
    assert not any("distinct:" in str(labels) for _, labels in after)
    client.close()


def test_metrics_port_in_use_is_a_one_line_startup_error(
    redis_factory: Any, tmp_path: Any
) -> None:
    import subprocess
    import sys

    a, b = redis_factory(), redis_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        conf = tmp_path / "p.yml"
        conf.write_text(pool_config(free_port(), two_shards(a, b)))
        result = subprocess.run(
            [sys.executable, "-m", "pyproxy", "-c", str(conf), "--metrics", f"127.0.0.1:{busy}"],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("pyproxy:")]
    assert len(errors) == 1 and "metrics" in errors[0] and "Traceback" not in result.stderr


def _stats_json(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return dict(json.loads(b"".join(chunks)))


def test_stats_port_matches_nutcracker_field_names(
    redis_factory: Any, proxy_factory: Any, nutcracker_factory: Any
) -> None:
    a, b = redis_factory(), redis_factory()
    nut = nutcracker_factory([f"{a.address}:2048", f"{b.address}:2048"])
    port, stats_port = free_port(), free_port()
    proxy_factory(pool_config(port, two_shards(a, b)), extra_args=("-s", str(stats_port)))
    for target in (nut.port, port):
        client = redis_client("127.0.0.1", target)
        for i in range(50):
            client.set(f"s{i}", i)
        client.close()
    theirs, ours = nut.stats(), _stats_json(stats_port)
    assert set(ours) == set(theirs)  # top level, including the pool name "alpha"
    their_pool, our_pool = theirs["alpha"], ours["alpha"]
    their_servers = {k for k, v in their_pool.items() if isinstance(v, dict)}
    our_servers = {k for k, v in our_pool.items() if isinstance(v, dict)}
    assert {k for k in their_pool if k not in their_servers} == {
        k for k in our_pool if k not in our_servers}
    assert our_servers == {a.address, b.address}
    sample_theirs = their_pool[sorted(their_servers)[0]]
    for server in our_servers:
        assert set(our_pool[server]) == set(sample_theirs)
    assert sum(our_pool[s]["requests"] for s in our_servers) >= 50
    assert ours["total_connections"] >= 1


def test_describe_stats_lists_every_field() -> None:
    import subprocess
    import sys

    described = subprocess.run([sys.executable, "-m", "pyproxy", "-D"], capture_output=True,
                               text=True, timeout=30)
    theirs = subprocess.run(["nutcracker", "-D"], capture_output=True, text=True, timeout=30)
    assert described.returncode == 0

    def names(text: str) -> set[str]:
        return {line.split()[0] for line in text.splitlines() if line.startswith("  ")}

    assert names(described.stdout) == names(theirs.stdout + theirs.stderr) != set()


def _two_shards(zk: Any, cluster: str) -> None:
    """The seed's two shard nodes under ``cluster``: slots 0-2047 and 2048-4095."""
    for i, (lo, hi) in enumerate([(0, 2047), (2048, 4095)]):
        zk.create(f"{cluster}/{zkschema.shard_name(i)}", zkschema.weight_data(lo, hi),
                  makepath=True)


def test_scrape_during_traffic_and_topology_change(
    redis_factory: Any, proxy_factory: Any, zk_hosts: str
) -> None:
    from kazoo.client import KazooClient

    a, b, replica = redis_factory(), redis_factory(), redis_factory()
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    cluster = "/redis/cluster/m"
    try:
        _two_shards(zk, cluster)
        master = zk.create(f"{cluster}/redis-0000/{a.address}-", ephemeral=True, sequence=True)
        zk.create(f"{cluster}/redis-0000/{replica.address}-", ephemeral=True, sequence=True)
        zk.create(f"{cluster}/redis-0001/{b.address}-", ephemeral=True, sequence=True)
        port, metrics = free_port(), free_port()
        proxy_factory(pool_config(port, two_shards(a, b), zookeeper_host=zk_hosts,
                                  zookeeper_path=f"/redis/proxy/m/p{port}",
                                  zookeeper_redis_path=cluster, zookeeper_session_timeout=2000),
                      extra_args=("--metrics", f"127.0.0.1:{metrics}"))
        wait_until(lambda: value(scrape(metrics), "pyproxy_topology_changes_total",
                                 pool="alpha") >= 1, timeout=10, what="first topology")
        stop = threading.Event()
        errors: list[BaseException] = []

        def traffic() -> None:
            client = redis_client("127.0.0.1", port)
            try:
                for i in range(20000):
                    if stop.is_set():
                        break
                    client.set(f"t{i % 100}", i)
            except Exception as exc:  # a READONLY or no-master moment is allowed; record it
                errors.append(exc)
            finally:
                client.close()

        worker = threading.Thread(target=traffic)
        worker.start()
        scrapes = [scrape(metrics)]
        zk.delete(master)
        wait_until(lambda: value(scrape(metrics), "pyproxy_master_changes_total", pool="alpha",
                                 shard="redis-0000") == 1, timeout=10, what="master change")
        scrapes.append(scrape(metrics))
        stop.set()
        worker.join(timeout=30)
        last = scrapes[-1]
        assert value(last, "pyproxy_zookeeper_session", pool="alpha", state="CONNECTED") == 1
        assert value(last, "pyproxy_topology_version", pool="alpha") >= 2
        assert value(last, "pyproxy_topology_apply_seconds", pool="alpha") < 2
        labels = tuple(sorted(dict(pool="alpha", shard="redis-0000",
                                   backend=replica.address).items()))
        assert ("pyproxy_backend_up", labels) in last  # the new master is now the series
        assert value(last, "pyproxy_requests_total", pool="alpha", command="set") > value(
            scrapes[0], "pyproxy_requests_total", pool="alpha", command="set")
    finally:
        zk.stop()
        zk.close()


def test_a_scrape_reads_a_snapshot_built_on_the_event_loop() -> None:
    """prometheus_client scrapes from its own thread; the collector must never iterate what
    the loop is changing (a dict that grows during a scrape), so the snapshot is made there."""
    import asyncio

    from pyproxy.observe.metrics import ProxyCollector, on_loop
    from pyproxy.observe.snapshot import ProxySnapshot

    built_on: list[int] = []

    def make() -> ProxySnapshot:
        built_on.append(threading.get_ident())
        return ProxySnapshot(0.0)

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        collector = ProxyCollector(on_loop(make, loop))
        names = await loop.run_in_executor(None, lambda: [m.name for m in collector.collect()])
        return names

    names = asyncio.run(scenario())
    assert built_on == [threading.get_ident()]  # this (the loop's) thread, not the executor's
    assert "pyproxy_info" in names and "pyproxy_client_connections" in names


def test_registration_gauge_says_which_proxy_holds_its_node(
    redis_factory: Any, proxy_factory: Any, zk_hosts: str
) -> None:
    """Two proxies given the same zookeeper_path: the first registers (1), the second finds
    the node held by another live process and is not registered (0)."""
    from kazoo.client import KazooClient

    a, b = redis_factory(), redis_factory()
    zk = KazooClient(hosts=zk_hosts, timeout=5.0)
    zk.start(timeout=10)
    cluster = "/redis/cluster/r"
    try:
        _two_shards(zk, cluster)
        ports = []
        for _ in range(2):
            port, metrics = free_port(), free_port()
            proxy_factory(pool_config(port, two_shards(a, b), zookeeper_host=zk_hosts,
                                      zookeeper_path="/redis/proxy/r/shared",
                                      zookeeper_redis_path=cluster),
                          extra_args=("--metrics", f"127.0.0.1:{metrics}"))
            if not ports:
                wait_until(lambda m=metrics: value(scrape(m), "pyproxy_zookeeper_registered",
                                                   pool="alpha") == 1, 10, "first registered")
            ports.append(metrics)
        second = ports[1]
        wait_until(lambda: value(scrape(second), "pyproxy_zookeeper_session", pool="alpha",
                                 state="CONNECTED") == 1, 10, "second connected")
        assert value(scrape(second), "pyproxy_zookeeper_registered", pool="alpha") == 0
        assert value(scrape(ports[0]), "pyproxy_zookeeper_registered", pool="alpha") == 1
    finally:
        zk.stop()
        zk.close()


def test_migration_counters_are_exported_for_zookeeper_pools_only() -> None:
    """The counters of ``proxy/migration.py`` (a pool's ``MigrationSnapshot``) become
    ``pyproxy_migration_*_total`` by pool; a pool that cannot migrate exports none."""
    from pyproxy.observe.metrics import MIGRATION_SERIES, ProxyCollector
    from pyproxy.observe.snapshot import MigrationSnapshot, PoolSnapshot, ProxySnapshot
    from pyproxy.observe.stats import PoolStats
    from pyproxy.routing import table as routing

    table = routing.build([routing.Shard.of("redis-0000", 0, 4095, "127.0.0.1:1")], 4096)
    counted = MigrationSnapshot(moves=7, busy=1, move_errors=2, paused=3, pause_expired=1)
    pools = (PoolSnapshot("zk", "127.0.0.1:1", table, 0, PoolStats(), {}, migration=counted),
             PoolSnapshot("static", "127.0.0.1:2", table, 0, PoolStats(), {}))
    samples = {(sample.name, sample.labels.get("pool")): sample.value
               for family in ProxyCollector(lambda: ProxySnapshot(0.0, pools)).collect()
               if family.name.startswith("pyproxy_migration_") for sample in family.samples}
    assert samples == {(f"pyproxy_migration_{name}_total", "zk"): getattr(counted, name)
                       for name in MIGRATION_SERIES}
