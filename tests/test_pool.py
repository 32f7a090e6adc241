"""proxy/pool.py: routes built whole and swapped by one assignment, backends reused or
retired, no-master shards, and one TCP connection at a time per backend connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pyproxy import config
from pyproxy.proxy.pool import Pool
from pyproxy.proxy.session import Session
from pyproxy.routing import table as routing
from tests.keys import keys_for_shard
from tests.servers import pool_config

A1 = keys_for_shard(0, 1)[0].encode()
B1 = keys_for_shard(1, 1)[0].encode()


def table(a: str | None, b: str | None, version: int = 0) -> routing.RoutingTable:
    return routing.build([routing.Shard.of("redis-0000", 0, 2047, a),
                          routing.Shard.of("redis-0001", 2048, 4095, b)], 4096, version)


def in_loop(test: Callable[[Pool], None], **keys: object) -> None:
    async def scenario() -> None:
        text = pool_config(1, ["127.0.0.1:1:0-2047", "127.0.0.1:2:2048-4095"], **keys)
        pool = Pool(config.parse(text).pools[0], table("127.0.0.1:1", "127.0.0.1:2"))
        try:
            test(pool)
        finally:
            pool.close()

    asyncio.run(scenario())


def test_routes_locate_each_key_on_its_shards_master() -> None:
    def test(pool: Pool) -> None:
        a, b = pool.routes.locate(A1), pool.routes.locate(B1)
        assert (a.name, b.name) == ("redis-0000", "redis-0001")
        assert a.backend is not None and a.backend.address == "127.0.0.1:1"
        assert b.backend is not None and b.backend.address == "127.0.0.1:2"
        assert pool.routes.shards == (a, b)

    in_loop(test)


def test_apply_swaps_whole_routes_reuses_and_retires_backends() -> None:
    def test(pool: Pool) -> None:
        before = pool.routes
        kept = before.shards[0].backend
        old = before.shards[1].backend
        assert kept is not None and old is not None
        pool.apply(table("127.0.0.1:1", "127.0.0.1:3", version=1))
        after = pool.routes
        assert after is not before and before.locate(B1).backend is old  # old routes intact
        assert after.shards[0].backend is kept  # same master: same connections
        new = after.locate(B1).backend
        assert new is not None and new.address == "127.0.0.1:3"
        assert old.retired and not kept.retired
        assert set(pool.backends) == {"127.0.0.1:1", "127.0.0.1:3"}
        assert pool.table.version == 1

    in_loop(test)


def test_a_shard_without_master_answers_at_once() -> None:
    def test(pool: Pool) -> None:
        pool.apply(table("127.0.0.1:1", None, version=1))
        replies: list[bytes] = []

        class Waiter:
            def settle(self, raw: bytes) -> None:
                replies.append(raw)

        session = Session(1, "peer", authenticated=True)
        pool.routes.locate(B1).send(b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", Waiter(), session)
        assert replies == [b"-ERR pyproxy: shard redis-0001 has no master right now\r\n"]
        assert pool.stats.forward_error == 1 and "127.0.0.1:2" not in pool.backends

    in_loop(test)


def test_preconnect_again_never_opens_a_second_connection() -> None:
    def test(pool: Pool) -> None:
        connection = pool.backends["127.0.0.1:1"].connections[0]
        first = connection.link
        assert first is not None and connection.connecting
        for _ in range(5):  # every table swap preconnects the masters again
            pool.apply(table("127.0.0.1:1", "127.0.0.1:2", version=2))
        assert pool.backends["127.0.0.1:1"].connections[0] is connection
        assert connection.link is first

    in_loop(test, preconnect="true")
