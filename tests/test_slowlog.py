"""SLOWLOG answered by the proxy: Redis's entry format and truncation (unit), and a request
made slow on purpose — its shard's redis SIGSTOPped — found with that shard (real servers)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from pyproxy.observe.slowlog import SlowLog, kept_args
from pyproxy.protocol.commands import COMMANDS
from pyproxy.routing import table as routing
from tests.keys import keys_for_shard
from tests.servers import free_port, pool_config, redis_client, two_shards

TABLE = routing.build([routing.Shard.of("redis-0000", 0, 2047, "127.0.0.1:1"),
                       routing.Shard.of("redis-0001", 2048, 4095, "127.0.0.1:2")], 4096)


def log(slower_than_us: int = 0, max_len: int = 128) -> SlowLog:
    return SlowLog(slower_than_us, max_len, lambda: TABLE, None)


def test_arguments_are_cut_as_redis_cuts_them() -> None:
    args = [b"MSET", *(b"k%d" % i for i in range(40))]
    kept = kept_args(args)
    assert len(kept) == 32 and kept[:31] == tuple(args[:31])
    assert kept[31] == b"... (10 more arguments)"  # 41 arguments, 31 kept: 10 more
    assert kept_args([b"SET", b"k", b"x" * 200]) == (b"SET", b"k",
                                                      b"x" * 128 + b"... (72 more bytes)")
    exactly = [b"MSET", *(b"k" for _ in range(31))]  # 32 arguments: all kept
    assert kept_args(exactly) == tuple(exactly)


def test_passwords_are_redacted_as_redis_7_does() -> None:
    assert kept_args([b"AUTH", b"secret"]) == (b"AUTH", b"(redacted)")
    assert kept_args([b"auth", b"user", b"secret"]) == (b"auth", b"(redacted)", b"(redacted)")
    assert kept_args([b"HELLO", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n"]) == (
        b"HELLO", b"3", b"AUTH", b"(redacted)", b"(redacted)", b"SETNAME", b"n")
    r = b"(redacted)"
    assert kept_args([b"CONFIG", b"SET", b"maxmemory", b"1gb", b"requirepass", b"pw",
                      b"MASTERAUTH", b"pw2"]) == (b"CONFIG", b"SET", b"maxmemory", b"1gb",
                                                  b"requirepass", r, b"MASTERAUTH", r)
    assert kept_args([b"ACL", b"SETUSER", b"u", b"on", b">s3cret"]) == (
        b"ACL", b"SETUSER", b"u", r, r)
    assert kept_args([b"MIGRATE", b"h", b"1", b"", b"0", b"5000", b"AUTH", b"pw", b"KEYS",
                      b"k"]) == (b"MIGRATE", b"h", b"1", b"", b"0", b"5000", b"AUTH", r,
                                 b"KEYS", b"k")
    assert kept_args([b"MIGRATE", b"h", b"1", b"k", b"0", b"5000", b"AUTH2", b"u", b"pw"]) == (
        b"MIGRATE", b"h", b"1", b"k", b"0", b"5000", b"AUTH2", r, r)


@pytest.mark.parametrize("name", ["eval", "evalsha", "fcall", "zunion", "lmpop", "sintercard"])
def test_a_numkeys_command_with_too_few_arguments_is_the_proxys(name: str) -> None:
    """Answered with the arity error by the proxy: logged, never raising (it used to raise
    IndexError from the numkeys finder, in the middle of writing the client's replies)."""
    slow = log()
    slow.record(COMMANDS[name].index, [name.upper().encode()], 0.5, "127.0.0.1:5", b"")
    assert slow.latest(1)[0].shard == "proxy"


def test_entries_newest_first_bounded_with_ids_never_reused() -> None:
    slow = log(max_len=3)
    get = COMMANDS["get"].index
    for i in range(5):
        slow.record(get, [b"GET", b"k%d" % i], 0.001 * (i + 1), "127.0.0.1:5", b"me")
    entries = slow.latest(-1)
    assert [e.id for e in entries] == [4, 3, 2] and len(slow) == 3
    assert [e.duration_us for e in entries] == [5000, 4000, 3000]
    assert slow.latest(1)[0].args == (b"GET", b"k4")
    assert (entries[0].addr, entries[0].name) == ("127.0.0.1:5", b"me")
    slow.reset()
    assert len(slow) == 0
    slow.record(get, [b"GET", b"k"], 0.5, "127.0.0.1:5", b"")
    assert slow.latest(10)[0].id == 5


def test_threshold_negative_disables_zero_logs_everything() -> None:
    assert log(-1).threshold == float("inf")
    assert log(0).threshold == 0.0
    assert log(10000).threshold == 0.01


def test_shard_names_the_owner_of_the_keys() -> None:
    slow = log()
    (a,), (b,) = keys_for_shard(0, 1), keys_for_shard(1, 1)
    cases = [
        (["GET", a], "redis-0000"),
        (["MGET", a, b], "redis-0000,redis-0001"),
        (["EVAL", "return 1", "0"], "redis-0000"),  # names no key: the first shard runs it
        (["EVAL", "return 1", "1", b], "redis-0001"),
        (["PUBLISH", b, "m"], "redis-0001"),
        (["DBSIZE"], "all"),
        (["PING"], "proxy"),
        (["SHUTDOWN"], "proxy"),
        (["EXEC"], "transaction"),
        (["WATCH", a], "redis-0000"),
    ]
    for words, shard in cases:
        args = [w.encode() for w in words]
        slow.record(COMMANDS[words[0].lower()].index, args, 1.0, "c:1", b"")
        assert slow.latest(1)[0].shard == shard, words
    slow.record(COMMANDS["blpop"].index, [b"BLPOP", a.encode(), b"0"], 9.0, "c:1", b"")
    assert slow.latest(1)[0].args[0] == b"WATCH"  # a blocking call's wait is not logged


def _slowlog_get(client: Any, *extra: str) -> list[Any]:
    return list(client.execute_command("SLOWLOG", "GET", *extra))


def test_slowlog_shows_a_request_its_stopped_shard_made_slow(
        redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b), slowlog_log_slower_than=50000,
                              slowlog_max_len=16))
    client = redis_client("127.0.0.1", port, decode_responses=False)
    (fast_key,), (slow_key,) = keys_for_shard(0, 1, "fast"), keys_for_shard(1, 1, "slow")
    client.set(fast_key, "1")
    client.set(slow_key, "2")
    assert client.execute_command("SLOWLOG", "LEN") == 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"CLIENT SETNAME patient\r\n")
        assert raw.recv(64) == b"+OK\r\n"
        b.pause()
        try:
            raw.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(slow_key), slow_key.encode()))
            time.sleep(0.2)
        finally:
            b.resume()
        assert raw.recv(64) == b"$1\r\n2\r\n"
        peer = "{}:{}".format(*raw.getsockname())
    client.get(fast_key)
    entries = _slowlog_get(client)
    assert len(entries) == 1, entries
    assert len(entries[0]) == 6  # Redis's entry, as client libraries read it
    entry_id, when, duration, args, addr, name, shard = _slowlog_get(client, "1", "SHARD")[0]
    assert list(entries[0]) == [entry_id, when, duration, args, addr, name]
    assert args == [b"GET", slow_key.encode()]
    assert shard == b.address.encode()  # a static pool's shard is named as nutcracker names it
    assert (addr, name) == (peer.encode(), b"patient")
    assert duration >= 50000 and abs(when - time.time()) < 60
    assert client.execute_command("SLOWLOG", "LEN") == 1
    assert client.execute_command("SLOWLOG", "RESET") in (b"OK", True)
    assert client.execute_command("SLOWLOG", "LEN") == 0
    print(f"SLOWLOG entry {entry_id}: GET {slow_key} on {shard.decode()}, {duration} us")
    client.close()


def test_slowlog_errors_are_redis_s(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy_factory(pool_config(port, two_shards(a, b)))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"SLOWLOG GET -2\r\nSLOWLOG GET x\r\nSLOWLOG GET +5\r\nSLOWLOG GET 05\r\n"
                    b"SLOWLOG GET 99999999999999999999\r\n"
                    b"SLOWLOG LEN x\r\nSLOWLOG GET 1 2\r\n"
                    b"SLOWLOG FOO\r\nSLOWLOG GET 0\r\nSLOWLOG\r\n"
                    b"SLOWLOG " + b"x" * 300 + b"\r\nPING\r\n")
        expected = (b"-ERR count should be greater than or equal to -1\r\n" * 5
                    + b"-ERR wrong number of arguments for 'slowlog|len' command\r\n"
                    + b"-ERR unknown subcommand or wrong number of arguments for 'GET'. Try "
                      b"SLOWLOG HELP.\r\n"
                    + b"-ERR unknown subcommand 'FOO'. Try SLOWLOG HELP.\r\n"
                    + b"*0\r\n"
                    + b"-ERR wrong number of arguments for 'slowlog' command\r\n"
                    + b"-ERR unknown subcommand '" + b"x" * 128 + b"'. Try SLOWLOG HELP.\r\n"
                    + b"+PONG\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while not data.endswith(b"+PONG\r\n") and time.monotonic() < deadline:
            data += raw.recv(4096)
    assert data == expected
