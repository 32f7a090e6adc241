"""Multi-key commands: split per shard, merge in the client's key order.

``plan`` groups a command's keys by the shard that owns them (one sub-command per shard,
not per key, keeping each shard's keys in client order) and frames each shard's
sub-command as it goes — the bytes a backend receives, with no argument list built and
re-framed in between (MSET of 10 keys: 7.7 -> 6.3 us, timeit); the merge functions rebuild one
reply from the shards' replies. An error from any shard becomes the reply, as twemproxy
does: the client cannot be told which part failed in a single RESP reply.

Pure: no I/O. Shards are numbered by the caller's ``shard_of``.
"""

from __future__ import annotations

from collections.abc import Callable

from . import resp


def plan(
    args: list[bytes], key_positions: list[int], step: int, shard_of: Callable[[bytes], int]
) -> list[tuple[int, bytes, list[int]]]:
    """[(shard, its sub-command as a RESP frame, indexes of its keys among all keys)] in
    first-seen order. ``step`` is 2 for MSET (a key and its value travel together), else 1.
    """
    groups: dict[int, tuple[list[bytes], list[int]]] = {}
    name = args[0]
    head = b"$%d\r\n%b\r\n" % (len(name), name)
    for key_index, pos in enumerate(key_positions):
        key = args[pos]
        shard = shard_of(key)
        group = groups.get(shard)
        if group is None:
            group = groups[shard] = ([head], [])
        if step == 1:
            group[0].append(b"$%d\r\n%b\r\n" % (len(key), key))
        else:
            value = args[pos + 1]
            group[0].append(b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value))
        group[1].append(key_index)
    return [
        (shard, b"*%d\r\n" % (1 + step * len(indexes)) + b"".join(chunks), indexes)
        for shard, (chunks, indexes) in groups.items()
    ]


def _first_error(replies: list[bytes]) -> bytes | None:
    for raw in replies:
        if resp.is_error(raw):
            return raw
    return None


def merge_array(key_count: int, indexes: list[list[int]]) -> Callable[[list[bytes]], bytes]:
    """MGET: put each shard's elements back at their keys' places."""

    def merge(replies: list[bytes]) -> bytes:
        error = _first_error(replies)
        if error is not None:
            return error
        items: list[bytes] = [b""] * key_count
        for raw, places in zip(replies, indexes, strict=True):
            if not resp.place_items(raw, places, items):
                return resp.error("ERR pyproxy: a shard sent a malformed MGET reply")
        return resp.array(items)

    return merge


def merge_ok(replies: list[bytes]) -> bytes:
    """MSET: +OK when every shard said so."""
    error = _first_error(replies)
    return error if error is not None else resp.OK


def merge_sum(replies: list[bytes]) -> bytes:
    """DEL/UNLINK/EXISTS/TOUCH: the shards' counts added up."""
    error = _first_error(replies)
    if error is not None:
        return error
    return resp.integer(sum(resp.integer_value(raw) for raw in replies))
