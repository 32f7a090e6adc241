"""Parity with nutcracker 0.5 (system.md §1): the same servers and the same keys land on the
same backend, so a deployment can switch between nutcracker and pyproxy with no data moved.

For each layout, 2,000+ keys (ASCII, binary, UTF-8, the empty key, hash-tagged keys, 15 KB
keys) are written through nutcracker and read through pyproxy, then rewritten through pyproxy
and read through nutcracker; every key must sit on exactly the backend system.md predicts.
20 KB keys go through pyproxy only: nutcracker resets the connection for keys above ~16 KB.

Server order under classic weights, measured here: nutcracker sorts unnamed servers by
``host:port`` (shorter first, then bytewise), NOT by the whole ``host:port:weight`` entry.
The weighted test gives its servers weights of different lengths (1000, 2000, 999) listed
out of order, so the two rules put three keys in four on different servers; it asserts that
the ``host:port`` rule holds for every key and that the other rule fails for most.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pyproxy.protocol import resp
from pyproxy.protocol.resp import encode_command
from tests.servers import RedisServer, free_port
from tests.test_proxy import Raw, pool_yaml, slot


def make_keys() -> list[bytes]:
    rng = random.Random(20)
    keys: list[bytes] = [b""]
    keys += [b"parity:%d" % i for i in range(1200)]
    keys += [rng.randbytes(rng.randint(1, 40)) for _ in range(300)]
    keys += [b"\r\n*1\r\n$4\r\nPING\r\n", b"\x00", b"\xff\xfe", b" ", b"{", b"}"]
    keys += [f"ключ:{i}:鍵:{'🔑' * (i % 3)}".encode() for i in range(200)]
    keys += [b"{user%d}:%d" % (i % 40, i) for i in range(300)]
    keys += [b"{user1}:a", b"{user1}:b", b"}{a}", b"{{a}}", b"{{}}", b"a}b{c}d", b"{}",
             b"a{}b", b"{}{a}", b"{a", b"a{b"]
    keys += [b"%d:" % i + rng.randbytes(15 * 1024) for i in range(12)]
    keys = list(dict.fromkeys(keys))
    assert len(keys) >= 2000
    return keys


KEYS = make_keys()
INDEX = {key: i for i, key in enumerate(KEYS)}


def pipeline(port: int, commands: list[list[bytes]], batch: int = 500) -> list[bytes]:
    out: list[bytes] = []
    with Raw("127.0.0.1", port) as conn:
        for start in range(0, len(commands), batch):
            chunk = commands[start : start + batch]
            conn.send(b"".join(encode_command(c) for c in chunk))
            out += conn.replies(len(chunk))
    return out


@dataclass
class Layout:
    """Servers as both proxies list them, and where system.md says each slot lives."""

    entries: list[str]  # "host:port:range-or-weight [name]" in config order
    owner: Callable[[bytes], int]  # key -> index into servers
    servers: list[RedisServer]


def owner_by_weights(order: list[int], weights: list[int]) -> Callable[[bytes], int]:
    """Modula continuum: consecutive ranges as wide as the weights, in ``order``."""
    total = sum(weights)
    bounds: list[tuple[int, int]] = []
    start = 0
    for index in order:
        bounds.append((start + weights[index], index))
        start += weights[index]

    def owner(key: bytes) -> int:
        s = slot(key, total)
        return next(index for end, index in bounds if s < end)

    return owner


def by_name(names: list[str]) -> list[int]:
    """nutcracker's string_compare: shorter first, then bytewise."""
    return sorted(range(len(names)), key=lambda i: (len(names[i]), names[i].encode()))


def check_parity(layout: Layout, nutcracker: Any, proxy: Any) -> None:
    servers = layout.servers
    # 1. through nutcracker -> read through pyproxy
    sets = [[b"SET", k, b"nut-%d" % i] for i, k in enumerate(KEYS)]
    assert set(pipeline(nutcracker.port, sets)) == {b"+OK\r\n"}
    assert pipeline(proxy.port, [[b"GET", k] for k in KEYS]) == [
        resp.bulk(b"nut-%d" % i) for i in range(len(KEYS))]
    batches = [KEYS[i : i + 300] for i in range(0, len(KEYS), 300)]  # split per shard, merged
    assert pipeline(proxy.port, [[b"MGET", *batch] for batch in batches]) == [
        resp.array([resp.bulk(b"nut-%d" % INDEX[k]) for k in batch]) for batch in batches]
    check_placement(layout)
    # 2. through pyproxy -> read through nutcracker
    sets = [[b"SET", k, b"py-%d" % i] for i, k in enumerate(KEYS)]
    assert set(pipeline(proxy.port, sets)) == {b"+OK\r\n"}
    assert pipeline(nutcracker.port, [[b"GET", k] for k in KEYS]) == [
        resp.bulk(b"py-%d" % i) for i in range(len(KEYS))]
    check_placement(layout)
    # 3. 20 KB keys: pyproxy only, on the predicted server
    long_keys = [b"long:%d:" % i + b"k" * 20 * 1024 for i in range(8)]
    assert set(pipeline(proxy.port, [[b"SET", k, b"v"] for k in long_keys])) == {b"+OK\r\n"}
    for key in long_keys:
        where = [bool(s.client().exists(key)) for s in servers]
        assert where == [i == layout.owner(key) for i in range(len(servers))]
    # every backend got a share
    for server in servers:
        assert server.client().dbsize() > len(KEYS) // 10


def check_placement(layout: Layout) -> None:
    found: dict[bytes, list[int]] = {k: [] for k in KEYS}
    for index, server in enumerate(layout.servers):
        replies = pipeline(server.port, [[b"EXISTS", k] for k in KEYS])
        for key, reply in zip(KEYS, replies, strict=True):
            if reply == b":1\r\n":
                found[key].append(index)
    wrong = {k[:40]: (where, layout.owner(k)) for k, where in found.items()
             if where != [layout.owner(k)]}
    assert wrong == {}, f"{len(wrong)} keys misplaced, e.g. {list(wrong.items())[:5]}"


def start_both(nutcracker_factory: Any, proxy_factory: Any, entries: list[str]) -> tuple[Any, Any]:
    nutcracker = nutcracker_factory(entries, ordered=False, hash_tag="{}")
    proxy = proxy_factory(lambda: pool_yaml(free_port(), entries))
    return nutcracker, proxy


def test_parity_with_slot_ranges(redis_factory: Any, nutcracker_factory: Any,
                                 proxy_factory: Any) -> None:
    """0-2047 / 2048-4095 in pyproxy == weights 2048 / 2048 in nutcracker, the first server
    sorting first (it is named "s0000", the second "s0001")."""
    a, b = redis_factory(), redis_factory()
    nutcracker = nutcracker_factory([f"{a.address}:2048", f"{b.address}:2048"], hash_tag="{}")
    proxy = proxy_factory(lambda: pool_yaml(free_port(), [f"{a.address}:0-2047",
                                                          f"{b.address}:2048-4095"]))
    layout = Layout([], lambda key: int(slot(key) >= 2048), [a, b])
    check_parity(layout, nutcracker, proxy)


def test_parity_with_unequal_out_of_order_weights(redis_factory: Any, nutcracker_factory: Any,
                                                  proxy_factory: Any) -> None:
    servers = sorted((redis_factory() for _ in range(3)), key=lambda s: s.port)
    addresses = [s.address for s in servers]
    weights = [1000, 2000, 999]  # 4, 4 and 3 digits
    listed = [2, 0, 1]  # config order differs from any sorted order
    entries = [f"{addresses[i]}:{weights[i]}" for i in listed]
    host_port = owner_by_weights(by_name(addresses), weights)
    whole_entry = owner_by_weights(by_name([f"{a}:{w}" for a, w in zip(addresses, weights,
                                                                          strict=True)]), weights)
    differ = sum(host_port(k) != whole_entry(k) for k in KEYS)
    assert differ > len(KEYS) // 4, "the two ordering hypotheses must disagree to decide"
    nutcracker, proxy = start_both(nutcracker_factory, proxy_factory, entries)
    layout = Layout(entries, host_port, servers)
    check_parity(layout, nutcracker, proxy)  # host:port order holds for every key


def test_parity_with_named_weighted_servers(redis_factory: Any, nutcracker_factory: Any,
                                            proxy_factory: Any) -> None:
    """Explicit names decide the order: shorter first, then bytewise ("b" < "aa" < "ab")."""
    servers = [redis_factory() for _ in range(3)]
    names = ["ab", "b", "aa"]
    weights = [1096, 1000, 2000]
    entries = [f"{s.address}:{w} {n}" for s, w, n in zip(servers, weights, names, strict=True)]
    layout = Layout(entries, owner_by_weights(by_name(names), weights), servers)
    assert by_name(names) == [1, 2, 0]
    nutcracker, proxy = start_both(nutcracker_factory, proxy_factory, entries)
    check_parity(layout, nutcracker, proxy)


@pytest.mark.parametrize("size", [17 * 1024])
def test_nutcracker_breaks_on_long_keys_pyproxy_does_not(redis_factory: Any,
                                                          nutcracker_factory: Any,
                                                          proxy_factory: Any, size: int) -> None:
    """Why the 20 KB keys above skip nutcracker (issue 2: "nutcracker breaks at 16 KB")."""
    a, b = redis_factory(), redis_factory()
    entries = [f"{a.address}:2048", f"{b.address}:2048"]
    nutcracker = nutcracker_factory(entries)
    proxy = proxy_factory(lambda: pool_yaml(free_port(), [f"{a.address}:0-2047",
                                                          f"{b.address}:2048-4095"]))
    key = b"k" * size
    with Raw("127.0.0.1", nutcracker.port) as conn:
        conn.cmd("SET", key, "v")
        with pytest.raises((ConnectionError, OSError)):
            conn.reply()
    assert pipeline(proxy.port, [[b"SET", key, b"v"], [b"GET", key]]) == [b"+OK\r\n",
                                                                          b"$1\r\nv\r\n"]
