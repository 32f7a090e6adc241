"""proxy/fanout.py: per-shard plans, merge rules, and FanOut parts answering in any order."""

from __future__ import annotations

import itertools

import pytest

from pyproxy.protocol.resp import encode_command
from pyproxy.proxy import fanout as split
from pyproxy.proxy.fanout import MERGES, FanOut
from pyproxy.proxy.replies import Flusher, Reply

FLUSHER = Flusher()  # no scheduler: the tests flush when they want


def merge_array(count: int, places: list[list[int]]):  # type: ignore[no-untyped-def]
    return lambda replies: MERGES["array"].combine(replies, places, count)


def merge_ok(replies: list[bytes]) -> bytes:
    return MERGES["ok"].combine(replies, [[]] * len(replies), 0)


def merge_sum(replies: list[bytes]) -> bytes:
    return MERGES["sum"].combine(replies, [[]] * len(replies), 0)


def shard_of(key: bytes) -> str:
    """Keys name their shard in their first byte: b"a1" lives on shard "a"."""
    return key[:1].decode()


def test_plan_groups_per_shard_in_first_seen_order() -> None:
    args = [b"MGET", b"b1", b"a1", b"b2", b"c1", b"a2", b"b1"]
    parts = split.plan(args, [1, 2, 3, 4, 5, 6], 1, shard_of)
    assert parts == [
        ("b", encode_command([b"MGET", b"b1", b"b2", b"b1"]), [0, 2, 5]),
        ("a", encode_command([b"MGET", b"a1", b"a2"]), [1, 4]),
        ("c", encode_command([b"MGET", b"c1"]), [3]),
    ]


def test_plan_mset_moves_values_with_their_keys() -> None:
    args = [b"MSET", b"a1", b"v1", b"b1", b"v2", b"a2", b"v3"]
    parts = split.plan(args, [1, 3, 5], 2, shard_of)
    assert parts == [
        ("a", encode_command([b"MSET", b"a1", b"v1", b"a2", b"v3"]), [0, 2]),
        ("b", encode_command([b"MSET", b"b1", b"v2"]), [1]),
    ]


def test_plan_single_shard_is_one_part() -> None:
    args = [b"DEL", b"a1", b"a2"]
    assert split.plan(args, [1, 2], 1, shard_of) == [
        ("a", encode_command([b"DEL", b"a1", b"a2"]), [0, 1])]


def test_merge_array_restores_key_order() -> None:
    merge = merge_array(4, [[0, 2], [1, 3]])
    out = merge([b"*2\r\n$2\r\nv0\r\n$-1\r\n", b"*2\r\n$0\r\n\r\n$2\r\nv3\r\n"])
    assert out == b"*4\r\n$2\r\nv0\r\n$0\r\n\r\n$-1\r\n$2\r\nv3\r\n"


def test_merge_array_keeps_raw_elements_of_any_type() -> None:
    merge = merge_array(2, [[1], [0]])
    assert merge([b"*1\r\n$3\r\n\r\n\x00\r\n", b"*1\r\n$-1\r\n"]) == (
        b"*2\r\n$-1\r\n$3\r\n\r\n\x00\r\n"
    )


def test_merge_array_malformed_shard_reply() -> None:
    merge = merge_array(2, [[0, 1]])
    assert merge([b"*1\r\n$1\r\na\r\n"]).startswith(b"-ERR pyproxy: a shard sent a malformed")
    assert merge([b"*-1\r\n"]).startswith(b"-ERR pyproxy: a shard sent a malformed")
    assert merge([b"+OK\r\n"]).startswith(b"-ERR pyproxy: a shard sent a malformed")
    assert merge([b"*2\r\n$1\r\na\r\n$-1\r\n"]) == b"*2\r\n$1\r\na\r\n$-1\r\n"


def test_merges_return_the_first_error_verbatim() -> None:
    error = b"-ERR pyproxy: backend 127.0.0.1:1 timed out after 500 ms\r\n"
    assert merge_array(2, [[0], [1]])([b"*1\r\n$1\r\na\r\n", error]) == error
    assert merge_ok([b"+OK\r\n", error]) == error
    assert merge_sum([error, b":1\r\n"]) == error
    wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    assert merge_sum([b":2\r\n", wrongtype, error]) == wrongtype


def test_merge_ok_and_sum() -> None:
    assert merge_ok([b"+OK\r\n", b"+OK\r\n"]) == b"+OK\r\n"
    assert merge_sum([b":2\r\n", b":0\r\n", b":5\r\n"]) == b":7\r\n"
    assert merge_sum([b":0\r\n"]) == b":0\r\n"


class Owner:
    def __init__(self) -> None:
        self.dirty = False
        self.flushes = 0
        self.closed = False
        self.held = 0
        self.flusher = FLUSHER

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_fanout_merges_once_whatever_order_parts_answer(order: tuple[int, ...]) -> None:
    owner = Owner()
    slot = Reply(owner, 0.0, [])
    fan = FanOut(slot, MERGES["array"], [[0, 3], [1], [2, 4]], 5)
    parts = [fan.part(i) for i in range(3)]
    replies = [b"*2\r\n:0\r\n:3\r\n", b"*1\r\n:1\r\n", b"*2\r\n:2\r\n:4\r\n"]
    for n, index in enumerate(order):
        assert slot.raw is None
        parts[index].settle(replies[index])
        parts[index].settle(b"-ERR late duplicate\r\n")  # idempotent
        assert (slot.raw is None) == (n < 2)
    assert slot.raw == b"*5\r\n:0\r\n:1\r\n:2\r\n:3\r\n:4\r\n"
    assert owner.dirty
    FLUSHER.flush()
    assert owner.flushes == 1 and not owner.dirty


def test_fanout_error_in_one_part_wins_and_late_parts_are_swallowed() -> None:
    owner = Owner()
    slot = Reply(owner, 0.0, [])
    fan = FanOut(slot, MERGES["sum"], [[0], [1]])
    error = b"-ERR pyproxy: backend 127.0.0.1:1 is down (connect failed)\r\n"
    fan.part(1).settle(error)
    fan.part(0).settle(b":3\r\n")
    assert slot.raw == error
    slot.settle(b":99\r\n")  # a slot is settled once
    assert slot.raw == error
    FLUSHER.flush()


def test_reply_settle_is_idempotent_and_marks_owner_once() -> None:
    owner = Owner()
    a, b = Reply(owner, 0.0, []), Reply(owner, 0.0, [])
    a.settle(b"+OK\r\n")
    b.settle(b"$-1\r\n")
    a.settle(b"-ERR late\r\n")
    assert (a.raw, b.raw) == (b"+OK\r\n", b"$-1\r\n")
    FLUSHER.flush()
    assert owner.flushes == 1
