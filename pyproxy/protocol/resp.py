"""RESP on the wire: client requests in, backend reply boundaries, reply framing out.

Requests (client -> proxy) are parsed by ``RequestParser``:

* Fast path: hiredis parses whole ``*N`` frames in C. It is used only while no partial
  frame is pending, so hiredis never holds more than one read's worth of bytes. Its results
  count only when the read ended exactly on a frame boundary, which a sentinel ``*0\r\n``
  fed after the frames proves (hiredis answers ``[]`` for it only between frames; it has no
  other way to tell "between frames" from "inside one").
* Slow path: when a read ends inside a frame (or a frame is inline, or hiredis objects),
  the bytes after the last frame hiredis completed are handled by a resumable pure-Python
  parser that checks every declared length against the limits *before* buffering the body,
  so ``$99999999999`` is refused at once and memory per client stays bounded by
  ``max_bulk_length``. The hand-over point is the sum of the completed frames' sizes as
  ``$``-framed requests, which is exact when no element used another type (no ``\r\n``
  followed by ``+ ( = |`` in the read; otherwise each frame is re-encoded and compared with
  the bytes read, and on a mismatch the whole read is re-parsed by the slow path, which is
  the authority).
* hiredis accepts request elements Redis refuses: ``:1``, ``$-1``, nested arrays arrive as
  non-``bytes`` objects and the client answers the first such command with
  ``element_error`` and closes (so nothing parsed after it matters); ``+x`` arrives as the
  bytes it spells and is served like ``$``-framed bytes when a whole read parses.
* Inline commands (``PING\\r\\n``) are split the way Redis's ``sdssplitargs`` does.
* Elements that parsed are handed over as ``list[bytes]``; a protocol error is returned as a
  ``ProtocolError`` instance *after* the commands that preceded it, so those still run
  (Redis does the same) and the caller then replies with the error and closes.

Replies (backend -> proxy) are never decoded on the single-shard path: ``reply_end`` only
finds where a reply ends so its exact bytes go back to the client (``+OK`` stays ``+OK``).
It knows RESP3 too (maps, sets, nulls, doubles, booleans, big numbers, blob errors,
verbatim strings, attributes), because RESP3 clients are served by RESP3 backend
connections whose replies are forwarded unchanged.

Pure: no asyncio, no sockets.
"""

from __future__ import annotations

import re

import hiredis

CRLF = b"\r\n"
_STAR = 42  # '*'
_DOLLAR = 36  # '$'
_PLUS = 43  # '+'
_MINUS = 45  # '-'
_COLON = 58  # ':'
_BANG = 33  # '!': RESP3 blob error
_EQUALS = 61  # '=': RESP3 verbatim string
_PAIRS = (37, 124)  # '%' map, '|' attribute: two elements per count
_AGGREGATES = (_STAR, 126, 62)  # '*' array, '~' set, '>' push
INLINE_MAX = 64 * 1024  # Redis PROTO_INLINE_MAX_SIZE
_SENTINEL = b"*0\r\n"  # an empty request: hiredis returns [] for it only between frames
# Element types hiredis turns into bytes although a request frame would use '$' for them.
_OTHER_TYPES = (b"\r\n+", b"\r\n(", b"\r\n=", b"\r\n|")


class ProtocolError(Exception):
    """A malformed request; ``str()`` is the message Redis would send after ``-ERR ``."""

    def reply(self) -> bytes:
        message = str(self).replace("\r", " ").replace("\n", " ")  # as Redis: one line
        return b"-ERR Protocol error: " + message.encode("latin-1", "replace") + CRLF


class MalformedReply(ValueError):
    """A backend sent bytes that are not a RESP reply (the connection's pairing is lost)."""


# ---------------------------------------------------------------- request parsing


def frame_size(args: list[bytes]) -> int:
    """Bytes a request frame of bulk strings occupies on the wire."""
    size = 3 + len(str(len(args))) + 5 * len(args)
    for arg in args:
        n = len(arg)
        size += n + (1 if n < 10 else 2 if n < 100 else len(str(n)))
    return size


class RequestParser:
    """Turns a client's byte stream into commands (``list[bytes]``) and protocol errors."""

    __slots__ = ("_reader", "_carry", "_args", "_left", "max_bulk", "max_multibulk",
                 "_check_above")

    def __init__(self, max_bulk: int = 512 * 1024 * 1024, max_multibulk: int = 1024 * 1024):
        self._reader = hiredis.Reader()
        self._carry: bytearray | None = None  # slow-path bytes not yet parsed
        self._args: list[bytes] | None = None  # slow path: elements of the open frame
        self._left = 0  # slow path: elements still missing from the open frame
        self.max_bulk = max_bulk
        self.max_multibulk = max_multibulk
        # A read this small cannot hold a frame over either limit (an element takes at least
        # 3 bytes), so hiredis's frames need no check: with the defaults, none ever does.
        self._check_above = min(max_bulk, 3 * max_multibulk)

    @property
    def pending_bytes(self) -> int:
        return len(self._carry) if self._carry is not None else 0

    def feed(self, data: bytes) -> list[list[bytes] | ProtocolError]:
        if self._carry is not None:
            self._carry += data
            return self._slow([])
        if data[0] != _STAR:
            self._carry = bytearray(data)
            return self._slow([])
        reader = self._reader
        out: list[list[bytes] | ProtocolError] = []
        try:
            reader.feed(data)
            while (cmd := reader.gets()) is not False:
                if type(cmd) is not list:  # a non-array frame: Redis reads it as inline
                    return self._resume_slow(data, out)
                out.append(cmd)
            reader.feed(_SENTINEL)
            if reader.gets() == []:  # hiredis was between frames: every frame is complete
                if len(data) > self._check_above:
                    self._cut_at_limits(out)
                return out
        except Exception:  # hiredis.ProtocolError; MemoryError for counts like *4294967295
            pass
        return self._resume_slow(data, out)

    def _resume_slow(self, data: bytes, out: list) -> list[list[bytes] | ProtocolError]:
        """Hand the bytes after the frames hiredis completed to the slow path."""
        self._reader = hiredis.Reader()
        if len(data) > self._check_above and self._cut_at_limits(out):
            return out
        try:
            if any(mark in data for mark in _OTHER_TYPES):  # maybe not all '$': check frames
                offset = 0
                for cmd in out:
                    frame = encode_command(cmd)
                    if not data.startswith(frame, offset):  # not as Redis frames it: re-parse
                        self._carry = bytearray(data)
                        return self._slow([])
                    offset += len(frame)
            else:
                offset = sum(map(frame_size, out))
        except TypeError:  # a non-bulk element: the client stops at that command anyway
            return out
        self._carry = bytearray(data[offset:])
        return self._slow(out)

    def _cut_at_limits(self, out: list) -> bool:
        """Replace the first frame of ``out`` over a limit, and all after it, by its error."""
        for i, cmd in enumerate(out):
            if len(cmd) > self.max_multibulk:
                out[i:] = [ProtocolError("invalid multibulk length")]
                return True
            if any(len(arg) > self.max_bulk for arg in cmd if type(arg) is bytes):
                out[i:] = [ProtocolError("invalid bulk length")]
                return True
        return False

    def _slow(self, out: list) -> list[list[bytes] | ProtocolError]:
        buf = self._carry
        assert buf is not None
        pos = 0
        try:
            while pos < len(buf):
                if self._args is None:
                    if buf[pos] != _STAR:
                        end = self._inline(buf, pos, out)
                        if end < 0:
                            break
                        pos = end
                        continue
                    nl = buf.find(CRLF, pos)
                    if nl < 0:
                        if len(buf) - pos > INLINE_MAX:
                            raise ProtocolError("too big mbulk count string")
                        break
                    count = _parse_int(buf, pos + 1, nl, "invalid multibulk length")
                    if count > self.max_multibulk:
                        raise ProtocolError("invalid multibulk length")
                    pos = nl + 2
                    if count <= 0:  # Redis ignores empty and null multibulks
                        continue
                    self._args, self._left = [], count
                pos = self._elements(buf, pos)
                if self._left:
                    break
                out.append(self._args)
                self._args = None
        except ProtocolError as error:
            out.append(error)
            self._carry = bytearray()
            self._args = None
            return out
        del buf[:pos]
        if not buf and self._args is None:
            self._carry = None  # back to the fast path
        return out

    def _elements(self, buf: bytearray, pos: int) -> int:
        """Parse complete bulk elements of the open frame; return the new position."""
        args = self._args
        assert args is not None
        size = len(buf)
        while self._left and pos < size:
            if buf[pos] != _DOLLAR:
                raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
            nl = buf.find(CRLF, pos)
            if nl < 0:
                if size - pos > INLINE_MAX:
                    raise ProtocolError("too big bulk count string")
                break
            length = _parse_int(buf, pos + 1, nl, "invalid bulk length")
            if length < 0 or length > self.max_bulk:
                raise ProtocolError("invalid bulk length")
            end = nl + 2 + length
            if end + 2 > size:
                break
            # The two bytes after the body are skipped unchecked, as Redis and hiredis do.
            args.append(bytes(buf[nl + 2 : end]))
            pos = end + 2
            self._left -= 1
        return pos

    def _inline(self, buf: bytearray, pos: int, out: list) -> int:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > INLINE_MAX:
                raise ProtocolError("too big inline request")
            return -1
        line = bytes(buf[pos:nl]).rstrip(b"\r")
        args = split_inline(line)
        if args:
            out.append(args)
        return nl + 1


def _parse_int(buf: bytearray, start: int, end: int, message: str) -> int:
    """A length as Redis's ``string2ll`` reads it: optional '-', digits, no leading zero."""
    digits = bytes(buf[start:end])
    body = digits[1:] if digits[:1] == b"-" else digits
    if not body.isdigit() or len(body) > 18 or (body[0] == 48 and len(body) > 1):
        raise ProtocolError(message)
    return int(digits)


def element_error(cmd: list) -> ProtocolError:
    """The error Redis gives for the first element of ``cmd`` that is not a bulk string."""
    for arg in cmd:
        if type(arg) is not bytes:
            if arg is None:  # $-1 (or RESP3 _)
                return ProtocolError("invalid bulk length")
            return ProtocolError(f"expected '$', got '{_TYPE_CHARS.get(type(arg), '?')}'")
    return ProtocolError("expected '$'")


_TYPE_CHARS = {int: ":", list: "*", float: ",", bool: "#", dict: "%", set: "~",
               hiredis.ReplyError: "-"}


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command like Redis's ``sdssplitargs`` (quotes and escapes)."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\n\r\v\f":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = 0
        while True:
            if quote == 0:
                if i >= n or line[i] in b" \t\n\r\v\f":
                    break
                if line[i] in b"\"'":
                    quote = line[i]
                else:
                    current.append(line[i])
                i += 1
                continue
            if i >= n:
                raise ProtocolError("unbalanced quotes in request")
            c = line[i]
            if quote == 34 and c == 92 and i + 3 < n and line[i + 1] == ord("x") and _ishex(
                line[i + 2 : i + 4]
            ):
                current.append(int(line[i + 2 : i + 4], 16))
                i += 4
            elif c == 92 and i + 1 < n and (quote == 34 or line[i + 1] == 39):
                nxt = line[i + 1]
                current.append(_ESCAPES.get(nxt, nxt) if quote == 34 else nxt)
                i += 2
            elif c == quote:
                i += 1
                if i < n and line[i] not in b" \t\n\r\v\f":
                    raise ProtocolError("unbalanced quotes in request")
                quote = 0
                break
            else:
                current.append(c)
                i += 1
        args.append(bytes(current))


def _ishex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


# ---------------------------------------------------------------- request encoding


def encode_command(args: list[bytes]) -> bytes:
    """RESP frame for a request (what a backend receives)."""
    n = len(args)
    if n == 2:
        a, b = args
        return b"*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(a), a, len(b), b)
    if n == 3:
        a, b, c = args
        return b"*3\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            len(a), a, len(b), b, len(c), c,
        )
    parts = [b"*%d\r\n" % n]
    for arg in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


# ---------------------------------------------------------------- reply scanning


def reply_end(buf: bytes | bytearray, pos: int) -> int:
    """End offset of the RESP2/RESP3 reply starting at ``pos``, or -1 if it is incomplete.

    Raises ``ValueError`` (``MalformedReply``, or int()'s own for a length that is not a
    number) when the bytes are not RESP."""
    nl = buf.find(CRLF, pos)
    if nl < 0:
        return -1
    kind = buf[pos]
    if kind == _DOLLAR or kind == _BANG or kind == _EQUALS:  # length-prefixed
        length = int(buf[pos + 1 : nl])
        if length < 0:
            return nl + 2
        end = nl + length + 4
        return end if end <= len(buf) else -1
    if kind == _PLUS or kind == _MINUS or kind == _COLON:  # the common one-liners, early
        return nl + 2
    if kind in _AGGREGATES or kind in _PAIRS:
        count = int(buf[pos + 1 : nl])
        if kind == _STAR and count >= _LONG_ARRAY:
            measured = _bulk_array_end(buf, pos, nl)
            if measured is not None:
                return measured
        if kind in _PAIRS:
            count *= 2
        pos = nl + 2
        size = len(buf)
        find = buf.find
        for _ in range(count):
            if pos < size and buf[pos] == _DOLLAR:  # inlined: most elements are bulks
                nl = find(CRLF, pos)
                if nl < 0:
                    return -1
                length = int(buf[pos + 1 : nl])
                pos = nl + 2 if length < 0 else nl + length + 4
            else:
                pos = reply_end(buf, pos)
                if pos < 0:
                    return -1
        if pos > size:
            return -1
        if kind == 124:  # an attribute describes the reply that follows it
            return reply_end(buf, pos)
        return pos
    if kind in _ONE_LINERS:  # RESP3's other one-liners
        return nl + 2
    raise MalformedReply(f"unknown reply type byte {bytes([kind])!r}")


_ONE_LINERS = frozenset(b"_,#(")


# Arrays at least this long are measured by hiredis (C) instead of walked in Python:
# LRANGE 0 99 reply, 100 x 3 bytes: 19.8 us walked, ~9 us measured (timeit, here).
_LONG_ARRAY = 32
# A CRLF followed by a type byte other than '$': some element is not a bulk string (or a
# payload merely looks like one, which only costs the walk).
_NOT_ONLY_BULKS = re.compile(rb"\r\n[-+:*%~>_,#(!=|]")


def _bulk_array_end(buf: bytes | bytearray, pos: int, nl: int) -> int | None:
    """End of the array at ``pos`` if it holds only non-null bulk strings; -1 if
    incomplete; None to fall back to the walk.

    hiredis parses it; the size follows from the elements' lengths because Redis writes every
    length in canonical decimal; the regex proves every element was a ``$`` bulk.
    """
    reader = hiredis.Reader()
    reader.feed(buf, pos)  # type: ignore[arg-type]  # (hiredis takes any buffer)
    try:
        items = reader.gets()
    except hiredis.ProtocolError:
        return None
    if items is False:
        return -1
    if type(items) is not list or items.count(None):
        return None
    try:
        lengths = list(map(len, items))  # (a nested array passes here; the regex stops it)
    except TypeError:  # integers, doubles, booleans: not bulks
        return None
    digits = len(str(lengths)) - 2 * len(lengths)  # "[3, 12]": digits + ", " each + "[]"
    end = nl + 2 + sum(lengths) + 5 * len(lengths) + digits
    if _NOT_ONLY_BULKS.search(buf, pos, end):
        return None
    return end


def place_items(raw: bytes, places: list[int], into: list[bytes]) -> bool:
    """Put the raw elements of the array reply ``raw`` at ``into[places[i]]``; False if it
    is not an array of ``len(places)`` elements. The merge of a split MGET walks each
    shard's reply once with it."""
    nl = raw.find(CRLF)
    if raw[0] != _STAR or int(raw[1:nl]) != len(places):
        return False
    pos = nl + 2
    find = raw.find
    for place in places:
        if raw[pos] == _DOLLAR:  # bulks and nils: what MGET answers
            nl = find(CRLF, pos)
            length = int(raw[pos + 1 : nl])
            end = nl + 2 if length < 0 else nl + length + 4
        else:
            end = reply_end(raw, pos)
        into[place] = raw[pos:end]
        pos = end
    return True


def is_error(raw: bytes) -> bool:
    return raw[0] == _MINUS or raw[0] == _BANG


def bulk_value(raw: bytes) -> bytes:
    """The payload of a bulk string (``$``) or a RESP3 verbatim string (``=``, its ``txt:``
    format prefix dropped)."""
    body = raw[raw.find(CRLF) + 2 : -2]
    return body[4:] if raw[:1] == b"=" else body


def is_null(raw: bytes) -> bool:
    """``$-1``, ``*-1`` or RESP3's ``_``."""
    return raw in (b"$-1\r\n", b"*-1\r\n", b"_\r\n")


def array_items(raw: bytes) -> list[bytes]:
    """The raw elements of an array reply (a short one: the proxy's own merges)."""
    nl = raw.find(CRLF)
    count = int(raw[1:nl])
    items, pos = [], nl + 2
    for _ in range(max(count, 0)):
        end = reply_end(raw, pos)
        items.append(raw[pos:end])
        pos = end
    return items


def integer_value(raw: bytes) -> int:
    return int(raw[1:-2])


# ---------------------------------------------------------------- reply framing


def bulk(value: bytes | None) -> bytes:
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


def array(raw_items: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(raw_items) + b"".join(raw_items)


def error(message: str) -> bytes:
    """An error reply; ``message`` starts with its code (``ERR ...``) and has no CRLF."""
    return b"-" + message.replace("\r", " ").replace("\n", " ").encode() + CRLF


def null(resp3: bool) -> bytes:
    """The null reply in the client's protocol."""
    return b"_\r\n" if resp3 else b"$-1\r\n"


def mapping(raw_pairs: list[bytes], resp3: bool) -> bytes:
    """A map: ``%`` in RESP3, a flat array of keys and values in RESP2."""
    if resp3:
        return b"%%%d\r\n" % (len(raw_pairs) // 2) + b"".join(raw_pairs)
    return array(raw_pairs)


OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NULL_ARRAY = b"*-1\r\n"
EMPTY_ARRAY = b"*0\r\n"
