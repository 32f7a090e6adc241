"""resp.py: golden bytes for request parsing (hiredis and Python paths, before and after
AUTH), reply scanning (split at every byte), framing."""

from __future__ import annotations

import time

import pytest

from pyproxy.protocol import resp
from pyproxy.protocol.resp import (
    MalformedReply,
    ProtocolError,
    ReplyScanner,
    RequestParser,
    split_inline,
)


def parse(*chunks: bytes, authenticated: bool = True, **limits: int) -> list:
    """Feed ``chunks`` to a fresh parser and serve the result as the client does: empty
    commands are skipped, the first protocol error ends the stream as its reply bytes, and
    before AUTH the parser is asked again while it holds more."""
    parser = RequestParser(**limits)
    out: list = []
    for chunk in chunks:
        batch = parser.feed(chunk, authenticated)
        while True:
            for command in batch:
                if isinstance(command, ProtocolError):
                    return out + [command.reply()]
                assert all(type(arg) is bytes for arg in command), command
                if command:
                    out.append(command)
            if not parser.more:
                break
            batch = parser.feed(b"", authenticated)
    return out


def err(message: str) -> bytes:
    return b"-ERR Protocol error: " + message.encode("latin-1") + b"\r\n"


# ---------------------------------------------------------------- multibulk requests

PIPELINE = (
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    b"*1\r\n$4\r\nPING\r\n"
    b"PING\r\n"
    b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
    b"*0\r\n"
    b"*-1\r\n"
    b'set "x y" \'z\'\r\n'
    b"*2\r\n$4\r\nECHO\r\n$3\r\n\x00\xff\n\r\n"
)
PIPELINE_COMMANDS = [
    [b"GET", b"k"], [b"PING"], [b"PING"], [b"SET", b"", b"a\r\nb"], [b"set", b"x y", b"z"],
    [b"ECHO", b"\x00\xff\n"],
]


def test_whole_pipeline_in_one_read() -> None:
    assert parse(PIPELINE) == PIPELINE_COMMANDS


def test_pipeline_split_at_every_byte_boundary() -> None:
    for i in range(len(PIPELINE) + 1):
        assert parse(PIPELINE[:i], PIPELINE[i:]) == PIPELINE_COMMANDS, f"split at {i}"


def test_pipeline_split_at_every_pair_of_boundaries() -> None:
    data = PIPELINE[:60]  # GET, PING, PING (inline), part of SET: all pairs stay fast
    whole = parse(data)
    assert whole == PIPELINE_COMMANDS[:3]
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            assert parse(data[:i], data[i:j], data[j:]) == whole, f"split at {i}, {j}"


def test_pipeline_fed_one_byte_at_a_time() -> None:
    assert parse(*[PIPELINE[i : i + 1] for i in range(len(PIPELINE))]) == PIPELINE_COMMANDS


def test_parser_returns_to_the_fast_path_after_a_split() -> None:
    parser = RequestParser()
    frame = resp.encode_command([b"GET", b"key"])
    assert parser.feed(frame[:7]) == []
    assert 0 < parser.pending_bytes <= 7
    assert parser.feed(frame[7:]) == [[b"GET", b"key"]]
    assert parser.pending_bytes == 0
    assert parser.feed(frame * 3) == [[b"GET", b"key"]] * 3


def test_binary_and_large_arguments() -> None:
    key = bytes(range(256)) * 80  # 20 KB with every byte value, CRLFs included
    value = b"\r\n$-1\r\n*3\r\n" * 100_000  # 1.1 MB that looks like RESP
    frame = resp.encode_command([b"SET", key, value])
    assert parse(frame) == [[b"SET", key, value]]
    chunks = [frame[i : i + 65536] for i in range(0, len(frame), 65536)]
    assert parse(*chunks) == [[b"SET", key, value]]


@pytest.mark.parametrize(
    "data, expected",
    [
        # Redis skips the two bytes after a bulk body unchecked (so does hiredis)
        (b"*1\r\n$4\r\nPINGxx", [[b"PING"]]),
        (b"*0\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"]]),  # empty multibulk: ignored
        (b"*-1\r\n*-7\r\nPING\r\n", [[b"PING"]]),  # null / negative multibulk: ignored
        (b"\r\n\r\n\n*1\r\n$4\r\nPING\r\n", [[b"PING"]]),  # empty inline lines: ignored
    ],
)
def test_requests_redis_tolerates(data: bytes, expected: list) -> None:
    assert parse(data) == expected
    for i in range(1, len(data)):
        assert parse(data[:i], data[i:]) == expected, f"split at {i}"


# ---------------------------------------------------------------- malformed requests


@pytest.mark.parametrize(
    "data, reply",
    [
        (b"*99999999999\r\n", err("invalid multibulk length")),
        (b"*4294967295\r\n", err("invalid multibulk length")),  # hiredis: MemoryError
        (b"*2000000\r\n", err("invalid multibulk length")),  # above max_multibulk
        (b"*--5\r\n", err("invalid multibulk length")),
        (b"*+1\r\n$4\r\nPING\r\n", err("invalid multibulk length")),
        (b"*01\r\n$4\r\nPING\r\n", err("invalid multibulk length")),
        (b"*x\r\n", err("invalid multibulk length")),
        (b"*\r\n", err("invalid multibulk length")),
        (b"*1\r\n$99999999999\r\n", err("invalid bulk length")),
        (b"*1\r\n$-1\r\n", err("invalid bulk length")),
        (b"*1\r\n$-5\r\n", err("invalid bulk length")),
        (b"*1\r\n$04\r\nPING\r\n", err("invalid bulk length")),
        (b"*1\r\n$x\r\n", err("invalid bulk length")),
        (b"*1\r\n:1\r\n", err("expected '$', got ':'")),
        (b"*1\r\n*1\r\n$4\r\nPING\r\n", err("expected '$', got '*'")),
        (b"*1\r\n\r\n", err("expected '$', got ' '")),  # CR shown as a space: one line
        (b"*1\r\n\xff\r\n", err("expected '$', got '\xff'")),  # the raw byte, as Redis
        (b'set a "b\r\n', err("unbalanced quotes in request")),
        (b'set a "b"c\r\n', err("unbalanced quotes in request")),
        (b"set a 'b\r\n", err("unbalanced quotes in request")),
    ],
)
def test_malformed_request_golden_reply(data: bytes, reply: bytes) -> None:
    assert parse(data) == [reply]
    for i in range(1, len(data)):
        assert parse(data[:i], data[i:]) == [reply], f"split at {i}"


@pytest.mark.parametrize(
    "data, expected",
    [  # what a redis-server 7.0 answered to each (run by hand; see test_resp_proxy.py too)
        (b"*1\rX$4\r\nPING\r\n", [[b"PING"]]),  # a header ends at its '\r'; next byte skipped
        (b"*1\r\n$1\r\naxx*1\r\n$4\r\nPING\r\n", [[b"a"], [b"PING"]]),
        (b"*1\r\n:1", []),  # no line end yet: Redis waits before looking at the type byte
        (b"*-0\r\n", [err("invalid multibulk length")]),
        (b"*2147483648\r\n", [err("invalid multibulk length")]),
        (b"*9223372036854775807\r\n", [err("invalid multibulk length")]),
        (b"*1\r\n$9223372036854775808\r\n", [err("invalid bulk length")]),
        (b"*1\r\n$\r\n", [err("invalid bulk length")]),
        (b"ECHO a\vb\r\n", [[b"ECHO", b"a\vb"]]),
        (b"ECHO \vab\r\n", [[b"ECHO", b"ab"]]),
        (b'ECHO "a"\v\r\n', [[b"ECHO", b"a"]]),
        (b"ECHO a\f\r\n", [[b"ECHO", b"a\f"]]),
        # a top-level empty bulk after a frame is an inline command, not an empty bulk
        # (hiredis reads it as b"", the only top-level non-array that joins like bytes)
        (b"*1\r\n$3\r\nSET\r\n$0\r\n\r\n", [[b"SET"], [b"$0"]]),
        (b"\x00*2\r\n*1\r\n$3\r\nSET\r\n$0\r\n\r\n", [[b"\x00*2"], [b"SET"], [b"$0"]]),
    ],
)
def test_what_redis_does_with_odd_requests(data: bytes, expected: list) -> None:
    assert parse(data) == expected
    for i in range(1, len(data)):
        assert parse(data[:i], data[i:]) == expected, f"split at {i}"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        (b"*2\r\n$3\r\nGET\r\n*0\r\n", "expected '$', got '*'"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*2\r\n$3\r\nGET\r\n,1.5\r\n", "expected '$', got ','"),
        (b"*2\r\n$3\r\nGET\r\n+k\r\n", "expected '$', got '+'"),
        (b"*2\r\n$3\r\nGET\r\n=5\r\ntxt:k\r\n", "expected '$', got '='"),
        (b"*2\r\n$3\r\nGET\r\n(12\r\n", "expected '$', got '('"),
        (b"*2\r\n$3\r\nGET\r\n%1\r\n$1\r\na\r\n:1\r\n", "expected '$', got '%'"),
        (b"*2\r\n$3\r\nGET\r\n~1\r\n$1\r\na\r\n", "expected '$', got '~'"),
        (b"*2\r\n$3\r\nGET\r\n_\r\n", "expected '$', got '_'"),
        (b"*2\r\n$3\r\nGET\r\n#t\r\n", "expected '$', got '#'"),
        (b"*2\r\n$3\r\nGET\r\n-ERR x\r\n", "expected '$', got '-'"),
    ],
)
def test_non_bulk_elements_after_good_frames(data: bytes, message: str) -> None:
    """Commands before the bad frame still come out, then exactly one error."""
    good = resp.encode_command([b"GET", b"a"])
    assert parse(good + good + data) == [[b"GET", b"a"], [b"GET", b"a"], err(message)]
    for i in range(1, len(data)):  # the bad frame split: the Python parser decides alike
        assert parse(good + data[:i], data[i:]) == [[b"GET", b"a"], err(message)], i


@pytest.mark.parametrize("command", [b"INFO", b"AUTH", b"QUIT", b"KEYS", b"PING", b"GET"])
def test_a_nested_array_is_a_protocol_error_and_smuggles_nothing(command: bytes) -> None:
    """A SET hidden in a nested element never comes out, and nothing after the frame is
    parsed (the parser never resumes inside it)."""
    hidden = resp.encode_command([b"SET", b"smuggled", b"1"])
    data = b"*2\r\n" + resp.bulk(command) + hidden + resp.encode_command([b"PING"])
    expected = [err("expected '$', got '*'")]
    assert parse(data) == expected
    for i in range(1, len(data)):
        assert parse(data[:i], data[i:]) == expected, i
    assert parse(resp.encode_command([b"PING"]) + data) == [[b"PING"], *expected]
    assert parse(data, authenticated=False) == expected


def test_simple_string_elements_split_mid_frame_get_redis_error() -> None:
    """``+x`` elements (which Redis refuses) never shift frame boundaries: when a read ends
    inside a later frame, the whole read is re-parsed by the strict slow path."""
    data = b"*1\r\n+PING\r\n*1\r\n$4\r\nPI"
    assert parse(data, b"NG\r\n") == [err("expected '$', got '+'")]


def test_commands_before_an_error_are_returned_then_nothing_after() -> None:
    parser = RequestParser()
    out = parser.feed(b"*1\r\n$4\r\nPING\r\n*1\r\n$-3\r\n*1\r\n$4\r\nPING\r\n")
    assert out[0] == [b"PING"]
    assert isinstance(out[1], ProtocolError) and len(out) == 2


def test_garbage_bytes_are_an_inline_command() -> None:
    """As in Redis: a line not starting with '*' is an inline command, whatever its bytes
    (\v and \f inside a word are part of it)."""
    garbage = bytes(b for b in range(256) if b not in b" \t\r\n\"'*")
    assert parse(garbage + b"\r\n") == [[garbage]]
    assert parse(b"\x00\x01 \xff\r\n") == [[b"\x00\x01", b"\xff"]]


def test_a_nul_is_a_byte_like_any_other() -> None:
    """(Redis's strchr would stop at it, so for Redis these lines never end: see resp.py.)"""
    assert parse(b"PING\x00\r\nPING\r\n") == [[b"PING\x00"], [b"PING"]]
    assert parse(b"*1\x00\r\n$4\r\nPING\r\n") == [err("invalid multibulk length")]
    assert parse(b"*1\r\n$4\x00\r\nPING\r\n") == [err("invalid bulk length")]
    assert parse(b"*1\r\n\x00\r\n") == [err("expected '$', got '\x00'")]
    assert parse(b"*1\r\n$4\r\nPI\x00G\r\n") == [[b"PI\x00G"]]


# ---------------------------------------------------------------- limits


def test_bulk_limit_refuses_before_buffering() -> None:
    parser = RequestParser(max_bulk=1000)
    out = parser.feed(b"*2\r\n$3\r\nSET\r\n$1001\r\n")
    assert [o.reply() for o in out] == [err("invalid bulk length")]
    assert parse(b"*2\r\n$4\r\nECHO\r\n$1000\r\n" + b"x" * 1000 + b"\r\n", max_bulk=1000) == [
        [b"ECHO", b"x" * 1000]
    ]


def test_multibulk_limit() -> None:
    assert parse(b"*3\r\n", max_multibulk=2) == [err("invalid multibulk length")]
    assert parse(b"*2\r\n$4\r\nECHO\r\n$1\r\na\r\n", max_multibulk=2) == [[b"ECHO", b"a"]]


@pytest.mark.parametrize("cut", [0, 5, None])
def test_limits_hold_for_whole_frames_in_one_read(cut: int | None) -> None:
    """hiredis parses complete frames itself: the limits must hold there too, whatever the
    read boundaries (cut=None: the whole stream in one read)."""
    good = resp.encode_command([b"GET", b"k"])
    too_many = resp.encode_command([b"MGET", b"a", b"b", b"c", b"d"])
    too_big = resp.encode_command([b"ECHO", b"x" * 101])
    for bad, message in ((too_many, "invalid multibulk length"), (too_big, "invalid bulk length")):
        data = good + bad + good
        chunks = (data,) if cut is None else (data[: len(good) + cut], data[len(good) + cut :])
        assert parse(*chunks, max_bulk=100, max_multibulk=4) == [[b"GET", b"k"], err(message)]


def test_oversized_lines_without_newline_are_refused() -> None:
    big = b"x" * (resp.INLINE_MAX + 1)
    assert parse(big) == [err("too big inline request")]
    assert parse(b"*" + b"1" * (resp.INLINE_MAX + 1)) == [err("too big mbulk count string")]
    assert parse(b"*1\r\n$" + b"1" * (resp.INLINE_MAX + 1)) == [err("too big bulk count string")]


def test_partial_bulk_is_buffered_only_up_to_what_arrived() -> None:
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nSET\r\n$100000000\r\n" + b"x" * 1000) == []
    assert parser.pending_bytes < 2000


# ---------------------------------------------------------------- inline splitting


@pytest.mark.parametrize(
    "line, args",
    [
        (b"PING", [b"PING"]),
        (b"  set   a\tb  ", [b"set", b"a", b"b"]),
        (b'set "a b" c', [b"set", b"a b", b"c"]),
        (b'"\\x41\\x4a\\x4A" "\\n\\r\\t\\b\\a\\\\\\"" "\\q"', [b"AJJ", b"\n\r\t\b\a\\\"", b"q"]),
        (b'"\\x4" "\\xZZ"', [b"x4", b"xZZ"]),  # not two hex digits: the escape is the letter
        (b"'it\\'s' 'a\\nb' 'x\\\\y'", [b"it's", b"a\\nb", b"x\\\\y"]),
        (b'"" \'\'', [b"", b""]),
        (b"\xff\x00 \x80", [b"\xff\x00", b"\x80"]),
        (b"a\vb c\f", [b"a\vb", b"c\f"]),  # \v and \f do not end a word ...
        (b"\va \fb\v", [b"a", b"b\v"]),  # ... but are skipped before one
        (b'"a"\vb \'c\'\f', [b"a", b"b", b"c"]),  # and may follow a closing quote
        (b"", []),
        (b" \t ", []),
    ],
)
def test_split_inline_like_sdssplitargs(line: bytes, args: list[bytes]) -> None:
    assert split_inline(line) == args


@pytest.mark.parametrize("line", [b'"abc', b"'abc", b'"a"b', b"'a'b", b'"a\\"', b'a"b"c'])
def test_split_inline_unbalanced(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="unbalanced quotes"):
        split_inline(line)


def test_inline_line_endings() -> None:
    assert parse(b"PING\n", b"PING\r\n") == [[b"PING"], [b"PING"]]
    assert parse(b"ECHO a\r\r\n") == [[b"ECHO", b"a"]]  # \r before \r\n is whitespace


# ---------------------------------------------------------------- request encoding


@pytest.mark.parametrize(
    "args, wire",
    [
        ([b"PING"], b"*1\r\n$4\r\nPING\r\n"),
        ([b"GET", b""], b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"),
        ([b"SET", b"k", b"v\r\n"], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"),
        ([b"MSET", b"a", b"1", b"b", b"2"],
         b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"),
        ([], b"*0\r\n"),
    ],
)
def test_encode_command(args: list[bytes], wire: bytes) -> None:
    assert resp.encode_command(args) == wire
    if args:
        assert parse(wire) == [args]


# ---------------------------------------------------------------- replies


REPLIES = [
    b"+OK\r\n",
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    b":-42\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$6\r\nfoo\r\nx\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n",
    b"*2\r\n*2\r\n+a\r\n-ERR b\r\n*-1\r\n",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_reply_end_finds_exactly_one_reply(reply: bytes) -> None:
    stream = b"+X\r\n" + reply + b":1\r\n"
    assert resp.reply_end(stream, 4) == 4 + len(reply)
    for cut in range(4, 4 + len(reply)):  # every truncation is incomplete
        assert resp.reply_end(stream[:cut], 4) == -1, cut
    assert resp.reply_end(bytearray(reply), 0) == len(reply)


def test_array_items_keeps_each_element_raw() -> None:
    assert resp.array_items(b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n") == [
        b"$1\r\na\r\n", b"$-1\r\n", b":7\r\n"]
    assert resp.array_items(b"*2\r\n*1\r\n+x\r\n-ERR y\r\n") == [b"*1\r\n+x\r\n", b"-ERR y\r\n"]
    assert resp.array_items(b"*3\r\n$3\r\nabc\r\n$300\r\n" + b"v" * 300 + b"\r\n_\r\n") == [
        b"$3\r\nabc\r\n", b"$300\r\n" + b"v" * 300 + b"\r\n", b"_\r\n"]  # a long bulk inside
    assert resp.array_items(b"*2\r\n$4\r\n\r\n\r\n\r\n$0\r\n\r\n") == [
        b"$4\r\n\r\n\r\n\r\n", b"$0\r\n\r\n"]  # CRLFs inside a value
    assert resp.array_items(b"*0\r\n") == []
    assert resp.array_items(b"*-1\r\n") == []


def test_reply_helpers() -> None:
    assert resp.is_error(b"-ERR x\r\n") and not resp.is_error(b"+OK\r\n")
    assert resp.integer_value(b":-12\r\n") == -12
    assert resp.bulk(b"a\r\n") == b"$3\r\na\r\n\r\n"
    assert resp.bulk(None) == b"$-1\r\n"
    assert resp.integer(0) == b":0\r\n"
    assert resp.array([b"+a\r\n", b":1\r\n"]) == b"*2\r\n+a\r\n:1\r\n"
    assert resp.error("ERR a\r\nb") == b"-ERR a  b\r\n"
    assert (resp.OK, resp.PONG, resp.NULL_ARRAY, resp.EMPTY_ARRAY) == (
        b"+OK\r\n", b"+PONG\r\n", b"*-1\r\n", b"*0\r\n")


# ---------------------------------------------------------------- headers that announce a lot


@pytest.mark.parametrize(
    "data, message",
    [
        (b"*3000000000\r\n", "invalid multibulk length"),
        (b"*2147483647\r\n", "invalid multibulk length"),
        (b"*4294967295\r\n", "invalid multibulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*1\r\n*999999\r\n" * 600, "expected '$', got '*'"),  # nested, each count allowed
        (b"*2\r\n$3\r\nSET\r\n$536870913\r\n", "invalid bulk length"),
    ],
)
def test_an_announced_size_allocates_nothing(data: bytes, message: str) -> None:
    """The 13 bytes that made hiredis allocate 23 GB (and block the loop for seconds freeing
    it): the error comes at once and nothing near the announced size is ever allocated, at
    the start of a read or after good frames."""
    import tracemalloc

    good = resp.encode_command([b"GET", b"k"])
    for stream in (data, good + data, good * 50 + data):
        tracemalloc.start()
        try:
            started = time.perf_counter()
            out = parse(stream) + parse(stream[:5], stream[5:])
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert out[-1] == out[len(out) // 2 - 1] == err(message)
        assert peak < 4 * len(stream) + 256 * 1024, peak
        assert elapsed < 1.0


def test_a_large_count_within_the_limit_is_parsed_by_python_as_its_bytes_arrive() -> None:
    args = [b"RPUSH", b"list"] + [b"%d" % i for i in range(5000)]
    frame = resp.encode_command(args)
    parser = RequestParser()
    got: list = []
    for i in range(0, len(frame), 1000):
        got += parser.feed(frame[i : i + 1000])
        assert parser.pending_bytes < 2000  # what is parsed is not kept twice
    assert got == [args]


def test_max_request_bounds_what_one_frame_may_announce() -> None:
    assert parse(b"*2\r\n$3\r\nSET\r\n$8\r\n", max_request=10) == [err("too big request")]
    assert parse(b"*2\r\n$3\r\nSET\r\n$7\r\n1234567\r\n", max_request=10) == [
        [b"SET", b"1234567"]]
    assert parse(b"*1\r\n$12\r\n" + b"x" * 12 + b"\r\n", max_request=10) == [
        err("too big request")]


# ---------------------------------------------------------------- before AUTH


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"*11\r\n", [err("unauthenticated multibulk length")]),
        (b"*10\r\n" + resp.bulk(b"x") * 10, [[b"x"] * 10]),
        (b"*1\r\n$16385\r\n", [err("unauthenticated bulk length")]),
        (b"*1\r\n$16384\r\n" + b"x" * 16384 + b"\r\n", [[b"x" * 16384]]),
        (b"*3000000000\r\n", [err("invalid multibulk length")]),  # Redis checks this first
        (b"ECHO " + b"a " * 5000 + b"\r\n", [[b"ECHO"] + [b"a"] * 5000]),  # inline: no limit
    ],
)
def test_before_auth_redis_limits_hold(data: bytes, expected: list) -> None:
    assert parse(data, authenticated=False) == expected
    if len(data) < 100:
        for i in range(1, len(data)):
            assert parse(data[:i], data[i:], authenticated=False) == expected, i


def test_before_auth_commands_come_one_at_a_time_so_auth_lifts_the_limits() -> None:
    """``AUTH pw`` then a 20 KB SET in one read: the SET is parsed only once the client says
    it is authenticated, as Redis parses each command after running the one before."""
    value = b"v" * 20000
    data = resp.encode_command([b"AUTH", b"pw"]) + b"PING\r\n" + resp.encode_command(
        [b"SET", b"k", value])
    parser = RequestParser()
    assert parser.feed(data, False) == [[b"AUTH", b"pw"]] and parser.more
    assert parser.feed(b"", False) == [[b"PING"]] and parser.more
    assert parser.feed(b"", True) == [[b"SET", b"k", value]] and not parser.more
    assert parser.pending_bytes == 0
    not_yet = RequestParser()  # still not authenticated: the SET is refused
    assert not_yet.feed(data, False) == [[b"AUTH", b"pw"]]
    assert not_yet.feed(b"", False) == [[b"PING"]]
    assert [str(e) for e in not_yet.feed(b"", False)] == ["unauthenticated bulk length"]


def test_before_auth_many_commands_in_one_read_cost_their_size_once() -> None:
    data = b"PING\r\n" * 20000 + resp.encode_command([b"PING"]) * 20000
    parser = RequestParser()
    started = time.perf_counter()
    count = len(parser.feed(data, False))
    while parser.more:
        count += len(parser.feed(b"", False))
    assert count == 40000
    assert time.perf_counter() - started < 5  # (quadratic would take minutes)


# ---------------------------------------------------------------- reply scanner


SCANNED = REPLIES + [
    b"_\r\n", b",3.14\r\n", b",-inf\r\n", b"#t\r\n", b"(34928903284092385093248509438509\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n", b"=15\r\ntxt:Some string\r\n",
    b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", b"~3\r\n+a\r\n+b\r\n+c\r\n",
    b">3\r\n+message\r\n+chan\r\n$2\r\nhi\r\n", b"|1\r\n+ttl\r\n:3600\r\n$2\r\nvv\r\n",
    b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", b"|0\r\n+OK\r\n", b"%0\r\n", b"~0\r\n",
    resp.bulk(b"x" * 300), resp.bulk(b"\r\n" * 200), b"-" + b"E" * 3000 + b"\r\n",
    resp.array([resp.bulk(b"%d" % i) for i in range(100)]),
    resp.array([resp.array([resp.bulk(b"m%d" % i), b",%d.5\r\n" % i]) for i in range(40)]),
    # runs of bulks of one length (taken by one match each): LRANGE of fixed-width values, a
    # run cut by another length, CRLFs inside the values, empty ones, the longest and one past
    resp.array([resp.bulk(b"xxx")] * 100),
    resp.array([resp.bulk(b"abc")] * 10 + [resp.bulk(b"abcd")] + [resp.bulk(b"abc")] * 10),
    resp.array([resp.bulk(b"\r\n\r")] * 12), resp.array([resp.bulk(b"")] * 20),
    resp.array([resp.bulk(b"y" * 255)] * 9), resp.array([resp.bulk(b"z" * 256)] * 9),
    # the run of an inner array ends with it, though its parent's next bulk has the same length
    resp.array([resp.array([resp.bulk(b"abc")] * 8), resp.bulk(b"abc"), resp.bulk(b"abc")]),
    # short arrays (one match of a pattern for their count): an MGET's share with nils, the
    # longest and one past, a long bulk or an inner array inside, a count with a leading zero
    resp.array([resp.bulk(b"v1"), b"$-1\r\n", resp.bulk(b"\r\n"), b":7\r\n", b"+OK\r\n"]),
    resp.array([resp.bulk(b"%d" % i) for i in range(64)]), resp.array([b":1\r\n"] * 65),
    resp.array([resp.bulk(b"a"), resp.bulk(b"b" * 300)]),
    resp.array([resp.bulk(b"a"), resp.array([b":1\r\n"]), resp.bulk(b"a")]),
    b"*02\r\n:1\r\n:2\r\n",
]


@pytest.mark.parametrize("reply", SCANNED, ids=lambda r: repr(r[:12]))
def test_scanner_finds_each_reply_however_it_is_split(reply: bytes) -> None:
    stream = b"+X\r\n" + reply + reply + b":1\r\n"
    expected = [b"+X\r\n", reply, reply, b":1\r\n"]
    step = 1 if len(stream) < 400 else 37
    for cut in range(0, len(stream) + 1, step):
        for size in (1, 7, 4096) if cut == 0 else (len(stream),):
            scanner = ReplyScanner()
            chunks = [stream[:cut]] + [stream[i : i + size] for i in range(cut, len(stream), size)]
            got = [r for chunk in chunks if chunk for r in scanner.feed(chunk)]
            assert got == expected, (cut, size)
            assert scanner.pending_bytes == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"$abc\r\n", "bad length"),
        (b"$3\r\nabcXY", "not followed by CRLF"),
        (b"*x\r\n", "bad length"),
        (b"*-2\r\n", "bad length"),
        (b"$+3\r\nabc\r\n", "bad length"),
        (b"%-1\r\n", "pairs"),
        (b"?what\r\n", "unknown reply type"),
        (b"*2\r\n:1\r\n@x\r\n", "unknown reply type"),
        (b"$" + b"9" * 40, "no line end"),
    ],
)
def test_bytes_that_are_not_resp_are_malformed(data: bytes, message: str) -> None:
    """The replies before the bad bytes come with the error: they are still paired."""
    with pytest.raises(MalformedReply, match=message) as caught:
        ReplyScanner().feed(b"+OK\r\n:1\r\n" + data)
    assert caught.value.replies == [b"+OK\r\n", b":1\r\n"]
    with pytest.raises(MalformedReply, match=message):
        scanner = ReplyScanner()
        for i in range(len(data)):
            scanner.feed(data[i : i + 1])
    if message != "no line end":  # (with a line end, that one is just a long bulk)
        with pytest.raises(MalformedReply):
            resp.reply_end(data + b"\r\n" * 3, 0)


def test_scanner_waits_for_a_long_bulk_without_rescanning_it() -> None:
    value = b"x" * 3_000_000
    reply = resp.bulk(value)
    chunks = [reply[i : i + 4096] for i in range(0, len(reply), 4096)]
    scanner = ReplyScanner()
    started = time.perf_counter()
    for chunk in chunks[:-1]:
        assert scanner.feed(chunk) == []
    assert scanner.feed(chunks[-1]) == [reply]
    assert time.perf_counter() - started < 5  # 733 reads: rescanning would be quadratic


def test_scanner_follows_a_long_line_without_rescanning_it() -> None:
    """A Lua error can be a long ``-`` line; 1-byte reads of it cost its length once."""
    reply = b"-ERR " + b"e" * 200_000 + b"\r\n"
    scanner = ReplyScanner()
    started = time.perf_counter()
    got = [r for i in range(0, len(reply), 16) for r in scanner.feed(reply[i : i + 16])]
    assert got == [reply]
    assert time.perf_counter() - started < 5
