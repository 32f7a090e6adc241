"""Property tests of resp.py (hypothesis): the request parser against a reference parser
written here from Redis's ``processInputBuffer`` (networking.c) and ``sdssplitargs`` (sds.c),
and the reply scanner against the encoder of random RESP2/RESP3 replies — every stream split
into reads at random points."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyproxy.protocol import resp
from pyproxy.protocol.resp import ProtocolError, ReplyScanner, RequestParser


def bounded(examples: int) -> settings:
    """A few seconds at most: the suite's time is shared."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- the reference request parser


@dataclass(frozen=True)
class Limits:
    authenticated: bool = True
    max_bulk: int = 512 * 1024 * 1024
    max_multibulk: int = 1024 * 1024
    max_request: int = resp.MAX_REQUEST


def string2ll(text: bytes) -> int | None:
    """Redis's util.c string2ll, character by character."""
    if not text or len(text) > 20:
        return None
    if text == b"0":
        return 0
    negative = text[0] == ord("-")
    rest = text[1:] if negative else text
    if not rest or rest[0] not in b"123456789" or any(c not in b"0123456789" for c in rest):
        return None
    value = int(rest)
    if negative:
        return -value if value <= 2**63 else None
    return value if value < 2**63 else None


HEX_CODES = set(b"0123456789abcdefABCDEF")


def sdssplitargs(line: bytes) -> list[bytes] | None:
    """sds.c's sdssplitargs as C walks its pointer, the end of ``line`` being its NUL (a NUL
    inside ``line`` is a byte, as the proxy reads it); None: unbalanced quotes."""
    space = b" \t\n\v\f\r"

    def at(i: int) -> int:
        return line[i] if i < len(line) else -1

    p, args = 0, []
    while True:
        while at(p) >= 0 and at(p) in space:
            p += 1
        if at(p) < 0:
            return args
        inq = insq = done = False
        current = bytearray()
        while not done:
            c = at(p)
            if inq:
                if (c == ord("\\") and at(p + 1) == ord("x") and at(p + 2) in HEX_CODES
                        and at(p + 3) in HEX_CODES):
                    current.append(int(line[p + 2 : p + 4], 16))
                    p += 3
                elif c == ord("\\") and at(p + 1) >= 0:
                    p += 1
                    current.append({ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8,
                                    ord("a"): 7}.get(line[p], line[p]))
                elif c == ord('"'):
                    if at(p + 1) >= 0 and at(p + 1) not in space:
                        return None
                    done = True
                elif c < 0:
                    return None
                else:
                    current.append(c)
            elif insq:
                if c == ord("\\") and at(p + 1) == ord("'"):
                    p += 1
                    current.append(ord("'"))
                elif c == ord("'"):
                    if at(p + 1) >= 0 and at(p + 1) not in space:
                        return None
                    done = True
                elif c < 0:
                    return None
                else:
                    current.append(c)
            elif c < 0 or c in b" \n\r\t":
                done = True
            elif c == ord('"'):
                inq = True
            elif c == ord("'"):
                insq = True
            else:
                current.append(c)
            if c >= 0:
                p += 1
        args.append(bytes(current))


def reference(data: bytes, limits: Limits) -> tuple[list[list[bytes]], str | None]:
    """The commands Redis runs for the whole stream ``data`` and its protocol error, if any
    (pyproxy's own limits added where Redis has a configurable one, and a NUL read as a byte:
    see resp.py)."""
    commands: list[list[bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos] != ord("*"):  # processInlineBuffer
            nl = data.find(b"\n", pos)
            if nl < 0 and len(data) - pos > resp.INLINE_MAX or nl - pos > resp.INLINE_MAX:
                return commands, "too big inline request"
            if nl < 0:
                return commands, None
            end = nl - 1 if nl > pos and data[nl - 1] == ord("\r") else nl
            args = sdssplitargs(data[pos:end])
            if args is None:
                return commands, "unbalanced quotes in request"
            if args:
                commands.append(args)
            pos = nl + 1
            continue
        cr = data.find(b"\r", pos)  # processMultibulkBuffer
        if cr < 0 and len(data) - pos > resp.INLINE_MAX or cr - pos > resp.INLINE_MAX:
            return commands, "too big mbulk count string"
        if cr < 0 or cr + 1 >= len(data):
            return commands, None
        count = string2ll(data[pos + 1 : cr])
        if count is None or count > 2**31 - 1:
            return commands, "invalid multibulk length"
        if not limits.authenticated and count > 10:
            return commands, "unauthenticated multibulk length"
        if count > limits.max_multibulk:
            return commands, "invalid multibulk length"
        pos = cr + 2
        args, total = [], 0
        while len(args) < count:
            cr = data.find(b"\r", pos)
            if cr < 0 and len(data) - pos > resp.INLINE_MAX or cr - pos > resp.INLINE_MAX:
                return commands, "too big bulk count string"
            if cr < 0 or cr + 1 >= len(data):
                return commands, None
            if data[pos] != ord("$"):
                return commands, f"expected '$', got '{chr(data[pos])}'"
            length = string2ll(data[pos + 1 : cr])
            if length is None or length < 0 or length > limits.max_bulk:
                return commands, "invalid bulk length"
            if not limits.authenticated and length > 16384:
                return commands, "unauthenticated bulk length"
            total += length
            if total > limits.max_request:
                return commands, "too big request"
            pos = cr + 2
            if len(data) - pos < length + 2:
                return commands, None
            args.append(data[pos : pos + length])
            pos += length + 2
        if args:
            commands.append(args)
    return commands, None


def parse_in_reads(chunks: list[bytes], limits: Limits) -> tuple[list[list[bytes]], str | None]:
    """What RequestParser hands over for ``chunks`` fed one by one, served as a client does."""
    parser = RequestParser(limits.max_bulk, limits.max_multibulk, limits.max_request)
    commands: list[list[bytes]] = []
    for chunk in chunks:
        batch = parser.feed(chunk, limits.authenticated)
        while True:
            for item in batch:
                if isinstance(item, ProtocolError):
                    return commands, str(item)
                assert all(type(arg) is bytes for arg in item), item
                if item:
                    commands.append(item)
            if not parser.more:
                break
            assert not limits.authenticated
            assert len(batch) == 1, "before AUTH: one command per call"
            batch = parser.feed(b"", False)
    return commands, None


# ---------------------------------------------------------------- random request streams

ARG_BYTES = st.binary(max_size=12) | st.sampled_from(
    [b"", b"\r\n", b"*3\r\n", b"$1\r\n", b"+OK", b"=", b"(", b"~|>%", b"a\x00b", b"\xff" * 3])


def bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(arg), arg)


NOT_BULK = st.sampled_from([
    b"*1\r\n$3\r\nSET\r\n",  # a nested array
    b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n",
    b":1\r\n", b"+x\r\n", b"$-1\r\n", b"_\r\n", b",1.5\r\n", b"#t\r\n", b"(12\r\n",
    b"=5\r\ntxt:a\r\n", b"-ERR x\r\n", b"%1\r\n$1\r\na\r\n$1\r\nb\r\n", b"~1\r\n$1\r\na\r\n",
    b">1\r\n$1\r\na\r\n", b"|1\r\n$1\r\na\r\n$1\r\nb\r\n", b"*-1\r\n", b"*0\r\n",
])
ODD_HEADER = st.sampled_from([
    b"*3000000000\r\n", b"*2147483647\r\n", b"*2147483648\r\n", b"*4294967295\r\n",
    b"*99999999999999999999\r\n", b"*1048577\r\n", b"*11\r\n", b"*-0\r\n", b"*01\r\n", b"*+1\r\n",
    b"*\r\n", b"*1\rX", b"*1\x00\r\n", b"*-1\r\n", b"*0\r\n", b"*-7\r\n", b"*1000\r\n",
])
ODD_ELEMENT = st.sampled_from([
    b"$99999999999\r\n", b"$16385\r\n", b"$-0\r\n", b"$03\r\nabc\r\n", b"$1\rXa\r\n",
    b"$1\r\nazz", b"$3\x00\r\n", b"$\r\n", b"$2\r\n\r\n\r\n",
])
INLINE_TOKEN = st.sampled_from([
    b"a", b"GET", b"x\vy", b"\f", b"\v", b" ", b"\t", b'"q r"', b"'s t'", b'"\\x41\\n"',
    b"'it\\'s'", b'"a"b', b'"open', b"'open", b'""', b"\\", b"\r", b'"\\"', b"\xff",
])


@st.composite
def request_stream(draw: st.DrawFn) -> bytes:
    pieces = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind <= 4:  # a well-formed frame
            args = draw(st.lists(ARG_BYTES, min_size=1, max_size=5))
            pieces.append(b"*%d\r\n" % len(args) + b"".join(map(bulk, args)))
        elif kind == 5:  # a frame with a non-bulk element somewhere
            args = draw(st.lists(ARG_BYTES, min_size=1, max_size=3))
            elements = list(map(bulk, args))
            elements.insert(draw(st.integers(0, len(elements))), draw(NOT_BULK))
            pieces.append(b"*%d\r\n" % len(elements) + b"".join(elements))
        elif kind == 6:
            pieces.append(draw(ODD_HEADER) + bulk(b"PING"))
        elif kind == 7:
            pieces.append(b"*2\r\n" + bulk(b"ECHO") + draw(ODD_ELEMENT))
        elif kind == 8:  # an inline command
            tokens = draw(st.lists(INLINE_TOKEN, max_size=5))
            pieces.append(b" ".join(tokens) + draw(st.sampled_from([b"\r\n", b"\n", b"\r\r\n"])))
        else:  # raw bytes
            pieces.append(draw(st.binary(max_size=10)))
    return b"".join(pieces)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


LIMITS = st.sampled_from([
    Limits(), Limits(authenticated=False), Limits(max_bulk=8, max_multibulk=3, max_request=12),
    Limits(authenticated=False, max_bulk=5, max_multibulk=4),
])


@bounded(600)
@given(st.data(), LIMITS)
def test_request_parser_equals_the_reference(data: st.DataObject, limits: Limits) -> None:
    stream = data.draw(request_stream())
    chunks = data.draw(splits(stream))
    assert parse_in_reads(chunks, limits) == reference(stream, limits)


@bounded(150)
@given(st.data())
def test_large_pipelines_equal_the_reference(data: st.DataObject) -> None:
    """Many well-formed frames, some of them odd, in many reads: hiredis and the Python
    parser take turns; the commands must be the same as parsing the whole stream at once."""
    frames = data.draw(st.lists(st.lists(ARG_BYTES, min_size=1, max_size=4), min_size=20,
                                max_size=80))
    stream = b"".join(b"*%d\r\n" % len(f) + b"".join(map(bulk, f)) for f in frames)
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(stream)))
        stream = stream[:at] + data.draw(NOT_BULK | ODD_HEADER | request_stream()) + stream[at:]
    chunks = data.draw(splits(stream))
    assert parse_in_reads(chunks, Limits()) == reference(stream, Limits())


# ---------------------------------------------------------------- random replies

LINE = st.binary(max_size=8).filter(lambda b: b"\r" not in b and b"\n" not in b)
PAYLOAD = st.binary(max_size=20) | st.sampled_from([b"\r\n", b"$3\r\n", b"*1\r\n"]) | st.binary(
    min_size=250, max_size=400)


def leaf_replies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        LINE.map(lambda s: b"+" + s + b"\r\n"),
        LINE.map(lambda s: b"-ERR " + s + b"\r\n"),
        st.integers(-(2**63), 2**63).map(lambda n: b":%d\r\n" % n),
        PAYLOAD.map(resp.bulk),
        st.just(b"$-1\r\n"), st.just(b"*-1\r\n"), st.just(b"_\r\n"),
        st.floats(allow_nan=False).map(lambda f: b",%r\r\n" % f),
        st.sampled_from([b"#t\r\n", b"#f\r\n", b",inf\r\n", b",-inf\r\n", b",nan\r\n"]),
        st.integers(-(10**40), 10**40).map(lambda n: b"(%d\r\n" % n),
        PAYLOAD.map(lambda s: b"!%d\r\n%b\r\n" % (len(s), s)),
        PAYLOAD.map(lambda s: b"=%d\r\ntxt:%b\r\n" % (len(s) + 4, s)),
    )


def aggregate(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    def frame(kind: bytes, items: list[bytes]) -> bytes:
        if kind in b"%|":
            items = items[: len(items) // 2 * 2]
            head = b"%b%d\r\n" % (kind, len(items) // 2) + b"".join(items)
            return head + (resp.OK if kind == b"|" else b"")  # an attribute, then its reply
        return b"%b%d\r\n" % (kind, len(items)) + b"".join(items)

    return st.tuples(st.sampled_from([b"*", b"~", b">", b"%", b"|"]), children).map(
        lambda t: frame(*t))


REPLY = st.recursive(leaf_replies(),
                     lambda inner: aggregate(st.lists(inner, max_size=6)), max_leaves=15)
LONG_ARRAY = st.lists(leaf_replies(), min_size=30, max_size=80).map(resp.array)


@bounded(150)
@given(st.data())
def test_reply_scanner_cuts_exactly_what_was_encoded(data: st.DataObject) -> None:
    replies = data.draw(st.lists(REPLY | LONG_ARRAY, min_size=1, max_size=8))
    stream = b"".join(replies)
    scanner = ReplyScanner()
    got: list[bytes] = []
    for chunk in data.draw(splits(stream)):
        if chunk:
            got += scanner.feed(chunk)
    assert got == replies
    assert scanner.pending_bytes == 0
    pos = 0
    for reply in replies:  # the stateless reply_end agrees
        assert resp.reply_end(stream, pos) == pos + len(reply)
        pos += len(reply)


@bounded(100)
@given(st.data())
def test_an_incomplete_reply_is_never_cut(data: st.DataObject) -> None:
    reply = data.draw(REPLY | LONG_ARRAY)
    cut = data.draw(st.integers(0, len(reply) - 1))
    scanner = ReplyScanner()
    got = []
    for chunk in data.draw(splits(reply[:cut])):
        if chunk:
            got += scanner.feed(chunk)
    assert got == []
    assert resp.reply_end(reply[:cut], 0) == -1
    assert scanner.feed(reply[cut:]) == [reply]
