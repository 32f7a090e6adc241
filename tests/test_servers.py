"""The fixtures themselves: real processes start, stop, pause and route as the other tests need."""

from __future__ import annotations

import hashlib
import textwrap
import time
from pathlib import Path

import pytest
import redis
from kazoo.client import KazooClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.servers import (
    PortInUseError,
    ProxyProcess,
    RedisServer,
    ServerError,
    TcpRelay,
    free_port,
    live_servers,
)


def _accepts(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_redis_kill_and_restart_on_same_port(redis_factory) -> None:
    r = redis_factory()
    assert r.address == f"127.0.0.1:{r.port}"
    c = r.client()
    c.set("k", "v")
    assert c.get("k") == b"v"
    old_pid, port = r.pid, r.port

    r.kill()
    assert r.returncode == -9
    assert not _accepts("127.0.0.1", port)

    r.restart()
    assert (r.port, r.host) == (port, "127.0.0.1")
    assert r.pid != old_pid
    assert c.get("k") is None  # same address, empty server (the client reconnects)


def test_two_redis_share_a_port_on_127_0_0_2_and_3(redis_factory) -> None:
    for _ in range(5):  # the port may be taken on 127.0.0.3 in between: pick again
        a = redis_factory(host="127.0.0.2")
        try:
            b = redis_factory(host="127.0.0.3", port=a.port)
            break
        except PortInUseError:
            a.close()
    else:
        pytest.fail("no port free on both 127.0.0.2 and 127.0.0.3")
    assert a.port == b.port and a.address != b.address
    a.client().set("who", "a")
    b.client().set("who", "b")
    assert a.client().get("who") == b"a"
    assert b.client().get("who") == b"b"


def test_redis_explicit_port_in_use_fails_fast_with_log(redis_factory) -> None:
    a = redis_factory()
    t0 = time.monotonic()
    with pytest.raises(PortInUseError, match="(?s)exited with code.*log tail.*in use"):
        redis_factory(port=a.port)
    assert time.monotonic() - t0 < 3


def test_auto_port_taken_in_between_is_retried(redis_factory, monkeypatch) -> None:
    import socket

    import tests.servers as servers

    real = servers.free_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(servers, "free_port", lambda host="127.0.0.1": next(picks, None)
                            or real(host))
        r = redis_factory()
        assert r.port != taken and r.client().ping()
        assert "Address already in use" in r.log_text()


def test_redis_pause_and_resume(redis_factory) -> None:
    r = redis_factory()
    c = r.client(socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    assert c.ping()
    r.pause()
    with pytest.raises(redis.TimeoutError):
        c.ping()
    r.resume()
    c.connection_pool.disconnect()  # a timed-out connection holds a stale reply
    assert c.ping()


def test_redis_replicaof_through_extra_args(redis_factory) -> None:
    primary = redis_factory()
    replica = redis_factory(extra_args=("--replicaof", primary.host, str(primary.port)))
    primary.client().set("x", "1")
    rc = replica.client()
    deadline = time.monotonic() + 5
    while rc.get("x") != b"1":
        assert time.monotonic() < deadline, "replica never caught up"
        time.sleep(0.02)


def test_zookeeper_chroot_is_fresh_per_test(zk_server, zk_hosts, request) -> None:
    assert zk_hosts.startswith(zk_server.hosts + "/t/")
    assert request.node.name in zk_hosts
    zk = KazooClient(hosts=zk_hosts, timeout=2.0)
    zk.start(timeout=10)
    try:
        first = zk.create("/q/n-", b"", sequence=True, makepath=True)
        second = zk.create("/q/n-", b"", sequence=True)
        assert first == "/q/n-0000000000"
        assert second == "/q/n-0000000001"
        assert zk.get_children("/") == ["q"]
    finally:
        zk.stop()
        zk.close()
    # Seen from the root, the nodes live under the chroot.
    root = zk_server.client()
    try:
        chroot = zk_hosts[len(zk_server.hosts):]
        assert sorted(root.get_children(chroot + "/q")) == ["n-0000000000", "n-0000000001"]
    finally:
        root.stop()
        root.close()


def test_zookeeper_private_server_restart_keeps_data(zk_factory) -> None:
    zk_srv = zk_factory()
    assert "Mode: standalone" in zk_srv.srvr()
    port = zk_srv.port
    zk = zk_srv.client()
    try:
        zk.create("/keep", b"1")
    finally:
        zk.stop()
        zk.close()
    zk_srv.restart(keep_data=True)
    assert zk_srv.port == port
    zk = zk_srv.client()
    try:
        assert zk.get("/keep")[0] == b"1"
    finally:
        zk.stop()
        zk.close()


def _twemproxy_slot(key: bytes) -> int:
    """md5 hash of twemproxy (first 4 digest bytes, little-endian) modulo 4096 slots."""
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little") % 4096


@pytest.mark.parametrize("ordered", [True, False])
def test_nutcracker_routes_like_two_slot_ranges(redis_factory, nutcracker_factory,
                                               ordered) -> None:
    r1, r2 = redis_factory(), redis_factory()
    nc = nutcracker_factory([f"{r1.address}:2048", f"{r2.address}:2048"], ordered=ordered)
    assert nc.host == "127.0.0.1" and nc.port not in (r1.port, r2.port)
    c = nc.client()  # RESP2, no CLIENT SETINFO: twemproxy closes on redis-py 8's defaults
    keys = [f"key:{i}" for i in range(64)]
    for k in keys:
        c.set(k, k)
    assert [c.get(k) for k in keys] == [k.encode() for k in keys]
    on1 = {k.decode() for k in r1.client().keys("*")}
    on2 = {k.decode() for k in r2.client().keys("*")}
    assert on1 and on2 and on1 | on2 == set(keys) and not on1 & on2
    low = {k for k in keys if _twemproxy_slot(k.encode()) < 2048}
    # Unnamed servers are used in the text order of "host:port:weight", not the given order.
    first_is_r1 = ordered or f"{r1.address}:2048" < f"{r2.address}:2048"
    assert on1 == (low if first_is_r1 else set(keys) - low)
    assert "alpha" in nc.stats()


def test_nutcracker_bad_config_is_rejected_before_start(nutcracker_factory) -> None:
    with pytest.raises(ServerError, match="rejected its config"):
        nutcracker_factory({"alpha": {"hash": "no-such-hash", "servers": ["127.0.0.1:1:1"]}})


def test_proxy_bad_command_fails_fast_with_log_tail(proxy_factory) -> None:
    port = free_port()
    config = f"pools:\n  alpha:\n    listen: 127.0.0.1:{port}\n"
    t0 = time.monotonic()
    with pytest.raises(ServerError, match="(?s)exited with code.*log tail"):
        proxy_factory(config, extra_args=("--no-such-option-xyz",))
    assert time.monotonic() - t0 < 5


FAKE_PROXY = textwrap.dedent(
    """
    import signal, socket, sys, time, yaml
    cfg = yaml.safe_load(open(sys.argv[sys.argv.index("-c") + 1]))
    socks = []
    for pool in cfg["pools"].values():
        host, port = pool["listen"].rsplit(":", 1)
        s = socket.socket()
        s.bind((host, int(port)))
        s.listen()
        socks.append(s)
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("fake proxy ready", file=sys.stderr)
    while True:
        time.sleep(1)
    """
)


@pytest.fixture
def fake_proxy_path(tmp_path: Path) -> str:
    pkg = tmp_path / "pyproxy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_PROXY)
    return str(tmp_path)


def test_proxy_process_readiness_and_stop(proxy_factory, fake_proxy_path) -> None:
    def config() -> str:
        return (
            "pools:\n"
            f"  alpha:\n    listen: 127.0.0.1:{free_port()}\n"
            f"  beta:\n    listen: 127.0.0.1:{free_port()}\n"
        )

    p = proxy_factory(config, env={"PYTHONPATH": fake_proxy_path})
    assert len(p.listens) == 2 and all(_accepts(h, port) for h, port in p.listens)
    assert p.stop() is True and p.returncode == 0
    assert "fake proxy ready" in p.log_text()

    stubborn = ProxyProcess(config, extra_args=("--ignore-term",),
                            env={"PYTHONPATH": fake_proxy_path})
    with stubborn:
        assert stubborn.stop(timeout=0.3) is False
        assert stubborn.forced_kill and stubborn.returncode == -9


def test_everything_is_tracked_and_closed(redis_factory) -> None:
    r = redis_factory()
    assert r in live_servers()
    with RedisServer() as other:
        assert other in live_servers() and other.pid is not None
        log_dir = other.dir
    assert other not in live_servers() and not other.is_running()
    assert log_dir is not None and not log_dir.exists()


def test_relay_forwards_cuts_and_mends(redis_factory) -> None:
    r = redis_factory()
    relay = TcpRelay(r.address)
    try:
        host, port = relay.address.rsplit(":", 1)
        through = redis.Redis(host=host, port=int(port), socket_timeout=2,
                              retry=Retry(NoBackoff(), 0))
        assert through.ping() is True
        relay.cut()
        with pytest.raises(redis.ConnectionError):
            through.ping()  # the open connection was dropped
        with pytest.raises(redis.ConnectionError):
            through.ping()  # and a new one is closed at once
        assert r.client().ping() is True  # the server runs on
        relay.mend()
        assert through.ping() is True
        through.close()
    finally:
        relay.close()
    assert not _accepts(host, int(port))
