"""Parity with nutcracker 0.5 for every hash x distribution pair (36), and its stats JSON keys.

One nutcracker and one pyproxy, started once for the module, each with 36 pools (one per
pair, ``hash_tag: "{}"``) over the same three redis-servers. Every pool lists the servers the
same way: unequal weights (7, 3, 1), one named ("beta") and two unnamed, out of any sorted
order — so nutcracker's server order (by name, shorter first), its weights and, for ketama,
the names its points are hashed from all decide where keys go.

For each pair, tests/test_parity.py's 2,000+ keys (ASCII, binary, UTF-8, the empty key,
hash-tagged keys, 15 KB keys) are written through nutcracker and read back through pyproxy
(GET and split MGET), then rewritten through pyproxy and read through nutcracker. For
modula and ketama every value must come back, and every key must sit on exactly the
backend pyproxy.routing predicts. For random, nutcracker's behaviour is measured and
matched: each request, reads included, goes to a server picked at random ignoring weights,
so about a third of the GETs find their key, and each server holds about a third of the keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyproxy import config
from pyproxy.protocol import resp
from pyproxy.routing.routes import Routes
from pyproxy.server import static_table
from tests.servers import Nutcracker, ProxyProcess, RedisServer, free_port
from tests.test_metrics import _stats_json
from tests.test_parity import INDEX, KEYS, pipeline

PAIRS = [(h, d) for h in config.HASHES for d in config.DISTRIBUTIONS]
WEIGHTS = (7, 3, 1)
NAMES = ("", "beta", "")  # servers[1] is named; it sorts first (4 bytes < "127.0.0.1:...")


def pool_name(hash_name: str, distribution: str) -> str:
    return f"{hash_name}_{distribution}"


@dataclass
class Setup:
    servers: list[RedisServer]
    nutcracker: Nutcracker
    proxy: ProxyProcess
    ports: dict[str, tuple[int, int]]  # pool -> (nutcracker port, pyproxy port)
    pools: dict[str, config.PoolConfig]  # pyproxy's, as it loaded them
    stats_port: int


def entries(servers: list[RedisServer]) -> list[str]:
    listed = [2, 0, 1]  # config order: neither by port nor by name
    return [f"{servers[i].address}:{WEIGHTS[i]}" + (f" {NAMES[i]}" if NAMES[i] else "")
            for i in listed]


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    started: list[Any] = []
    try:
        servers = sorted((RedisServer() for _ in range(3)), key=lambda s: s.port)
        for server in servers:
            started.append(server)
            server.start()
        listed = entries(servers)
        ports = {pool_name(h, d): (free_port(), free_port()) for h, d in PAIRS}
        nut_pools = {name: {"listen": f"127.0.0.1:{nut}", "hash": name.rsplit("_", 1)[0],
                            "hash_tag": "{}", "distribution": name.rsplit("_", 1)[1],
                            "redis": True, "servers": listed}
                     for name, (nut, _) in ports.items()}
        nutcracker = Nutcracker(nut_pools)
        started.append(nutcracker)
        nutcracker.start()
        text = "".join(
            f"{name}:\n  listen: 127.0.0.1:{ours}\n  hash: {h}\n  hash_tag: \"{{}}\"\n"
            f"  distribution: {d}\n  redis: true\n  servers:\n"
            + "".join(f"   - {entry}\n" for entry in listed)
            for (name, (_, ours)), (h, d) in zip(ports.items(), PAIRS, strict=True))
        stats_port = free_port()
        proxy = ProxyProcess(text, extra_args=("-s", str(stats_port)))
        started.append(proxy)
        proxy.start(timeout=30)
        pools = {pool.name: pool for pool in config.parse(text).pools}
        yield Setup(servers, nutcracker, proxy, ports, pools, stats_port)
    finally:
        for process in reversed(started):
            process.close()


def flush(servers: list[RedisServer]) -> None:
    for server in servers:
        assert pipeline(server.port, [[b"FLUSHALL"]]) == [b"+OK\r\n"]


def holders(servers: list[RedisServer]) -> dict[bytes, list[int]]:
    """Which backends hold each key."""
    found: dict[bytes, list[int]] = {key: [] for key in KEYS}
    for index, server in enumerate(servers):
        replies = pipeline(server.port, [[b"EXISTS", key] for key in KEYS])
        for key, reply in zip(KEYS, replies, strict=True):
            if reply == b":1\r\n":
                found[key].append(index)
    return found


def predicted(setup: Setup, pool: str) -> dict[bytes, int]:
    """Where pyproxy.routing puts each key, as an index into setup.servers."""
    spec = setup.pools[pool]
    table = static_table(spec)
    by_address = {server.address: i for i, server in enumerate(setup.servers)}
    routes = Routes(table, [by_address[shard.master or ""] for shard in table.shards],
                    spec.hash_tag)
    return {key: routes.locate(key) for key in KEYS}


def write(port: int, tag: bytes) -> None:
    sets = [[b"SET", key, b"%s-%d" % (tag, i)] for i, key in enumerate(KEYS)]
    assert set(pipeline(port, sets)) == {b"+OK\r\n"}


def read(port: int) -> list[bytes]:
    return pipeline(port, [[b"GET", key] for key in KEYS])


def expected(tag: bytes) -> list[bytes]:
    return [resp.bulk(b"%s-%d" % (tag, i)) for i in range(len(KEYS))]


@pytest.mark.parametrize(("hash_name", "distribution"),
                         [pair for pair in PAIRS if pair[1] != "random"])
def test_keys_written_by_one_are_read_by_the_other(setup: Setup, hash_name: str,
                                                   distribution: str) -> None:
    pool = pool_name(hash_name, distribution)
    nut, ours = setup.ports[pool]
    where = predicted(setup, pool)
    flush(setup.servers)
    write(nut, b"nut")
    assert read(ours) == expected(b"nut")
    batches = [KEYS[i : i + 300] for i in range(0, len(KEYS), 300)]  # split per shard, merged
    assert pipeline(ours, [[b"MGET", *batch] for batch in batches]) == [
        resp.array([resp.bulk(b"nut-%d" % INDEX[k]) for k in batch]) for batch in batches]
    found = holders(setup.servers)
    wrong = {k[:40]: (held, where[k]) for k, held in found.items() if held != [where[k]]}
    assert wrong == {}, f"{len(wrong)} keys not where predicted, e.g. {list(wrong.items())[:5]}"
    write(ours, b"py")
    assert read(nut) == expected(b"py")
    assert holders(setup.servers) == found  # the same keys in the same places
    used = {index for held in found.values() for index in held}
    # crc32 is 15 bits wide: on ketama's 32-bit ring all its hashes fall before the first
    # point of one server (nutcracker's placement too, checked above).
    assert len(used) == (1 if (hash_name, distribution) == ("crc32", "ketama") else 3)


@pytest.mark.parametrize("hash_name", config.HASHES)
def test_random_sends_every_request_to_a_random_server(setup: Setup, hash_name: str) -> None:
    nut, ours = setup.ports[pool_name(hash_name, "random")]
    total = len(KEYS)
    for writer, reader, tag in ((nut, ours, b"nut"), (ours, nut, b"py")):
        flush(setup.servers)
        write(writer, tag)
        held = holders(setup.servers)
        assert all(len(where) == 1 for where in held.values())
        shares = [sum(where == [i] for where in held.values()) / total for i in range(3)]
        assert all(0.25 < share < 0.42 for share in shares), shares  # not 7:3:1
        got = read(reader)
        hits = sum(a == b for a, b in zip(got, expected(tag), strict=True))
        assert 0.25 < hits / total < 0.42, hits  # a GET picks the SET's server 1 time in 3
        assert set(got) - set(expected(tag)) == {b"$-1\r\n"}  # the others find nothing


def test_stats_json_has_nutcrackers_keys_at_every_level(setup: Setup) -> None:
    write(setup.ports[pool_name("md5", "ketama")][0], b"s")
    write(setup.ports[pool_name("md5", "ketama")][1], b"s")
    theirs, ours = setup.nutcracker.stats(), _stats_json(setup.stats_port)
    assert set(ours) == set(theirs)  # the top level, with every pool's name
    servers = {s.address for s in setup.servers} - {setup.servers[1].address} | {"beta"}
    for pool in setup.ports:
        their_pool, our_pool = theirs[pool], ours[pool]
        assert set(our_pool) == set(their_pool)  # pool counters and server names
        assert {k for k, v in our_pool.items() if isinstance(v, dict)} == servers
        for server in servers:
            assert set(our_pool[server]) == set(their_pool[server])
    md5_ketama = ours[pool_name("md5", "ketama")]
    assert sum(md5_ketama[s]["requests"] for s in servers) >= len(KEYS)
