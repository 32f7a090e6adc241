"""RESP on the wire: client requests in, backend reply boundaries, reply framing out.

Requests (client -> proxy) are parsed by ``RequestParser``, which accepts exactly what Redis's
``processInputBuffer`` accepts (``networking.c``) and refuses the rest with Redis's error text:

* Every frame is ``*N`` followed by N ``$``-framed bulk strings. Any other element type (a
  nested array, ``:1``, ``+x``, ``$-1``, ...) is ``expected '$', got 'X'`` — a protocol error
  before any of that frame is handed over, and nothing after it is ever parsed. A line that
  does not start with ``*`` is an inline command, split as Redis's ``sdssplitargs`` splits it.
* Limits are checked on the headers, before the bytes they announce are buffered: a count
  over ``max_multibulk`` (or 2^31 - 1) is ``invalid multibulk length``, a bulk over
  ``max_bulk`` ``invalid bulk length``, a frame whose bulks add up to more than ``max_request``
  ``too big request`` (Redis closes such a client without a reply), a header or inline line
  over 64 KB ``too big ... string`` / ``too big inline request``. Before the client has
  authenticated, Redis's tighter limits hold: at most 10 elements (``unauthenticated multibulk
  length``) of at most 16 KB each (``unauthenticated bulk length``). Memory held per client is
  therefore bounded by the limits, however the bytes are split into reads.
* The pure-Python parser below is the authority: resumable (a frame split over reads is
  picked up where it stopped), it finds a header's end at its first ``\\r`` and skips the two
  bytes after a bulk body unchecked (both as Redis does). One difference: a NUL is a byte like
  any other here, while Redis's ``strchr`` stops at it, so for Redis a line holding one never
  ends (until 64 KB, then ``too big ...``); the proxy reads that line.
* Fast path, for authenticated clients: hiredis parses the frames of a read in C, but only
  where it cannot misjudge them. Before: no count of 4 or more digits (so hiredis never
  allocates for a huge count, nested or not; a frame of 1000+ elements is the Python
  parser's). After: a sentinel ``*0\r\n`` fed behind the bytes proves that they ended on a
  frame boundary (hiredis answers ``[]`` for it only between frames); joining every element
  proves each is ``bytes`` (not a nested array, an integer, a null, ...); and every byte of
  ``+ ( = ~ | > %`` in the read must lie inside those bulks (counted in both), which rules
  out the element types hiredis also hands over as bytes (``+x``, ``(1``, ``=...``) and the
  aggregates it could take for a frame. So every element was a ``$`` bulk and every frame a
  ``*`` array, and the frames' canonical sizes are exactly the bytes they took. A read that
  ends inside a frame hands the bytes after its complete frames (that exact offset; usually
  found by cutting at its last ``\r\n*``) to the Python parser, which hands back to hiredis
  at the first frame boundary after new bytes completed the open frame. Anything else goes to
  the Python parser whole.
* ``feed`` returns the commands (``list[bytes]``, an empty list for ``*0``) and at most one
  ``ProtocolError``, last: the commands before it still run (Redis does the same) and the
  caller then replies with the error and closes. Before AUTH it returns one command at a time
  (``more`` says whether to ask again), because the next command's limits depend on whether
  this one authenticated the client.

Replies (backend -> proxy) are never decoded on the single-shard path: a ``ReplyScanner`` per
connection only finds where each reply ends, so its exact bytes go back to the client
(``+OK`` stays ``+OK``). It is resumable — it keeps its position and the counts of the open
aggregates between reads — so every byte is looked at a bounded number of times however the
reply is split; runs of short elements (bulks up to 255 bytes, integers, simple strings,
nulls, doubles, booleans) are matched by compiled patterns in C, whole reads of them at once
(and a run of bulks of one length inside a long aggregate by one match of a pattern for that
length, and a short array of them by one match of a pattern for its count), everything else
element by element in Python. It knows RESP3 too (maps, sets, pushes,
attributes, verbatim strings, blob errors, big numbers), because RESP3 clients are served by
RESP3 backend connections whose replies are forwarded unchanged. Bytes that are not RESP
raise ``MalformedReply``.

Pure: no asyncio, no sockets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain

import hiredis

CRLF = b"\r\n"
_STAR = 42  # '*'
_DOLLAR = 36  # '$'
_MINUS = 45  # '-'
_BANG = 33  # '!': RESP3 blob error
INLINE_MAX = 64 * 1024  # Redis PROTO_INLINE_MAX_SIZE
_INT_MAX = 2**31 - 1  # Redis refuses multibulk counts above INT_MAX
UNAUTH_MULTIBULK = 10  # Redis's limits for a client that has not authenticated yet
UNAUTH_BULK = 16 * 1024
MAX_REQUEST = 1024 * 1024 * 1024  # Redis's client-query-buffer-limit default
_SENTINEL = b"*0\r\n"  # an empty request: hiredis returns [] for it only between frames
# The bytes of "+(=~|>%" must all be inside bulk strings for hiredis's frames to count (see
# the module docstring): this table turns them into '!' and every other byte into '.'.
_SUSPECTS = bytes(33 if c in b"+(=~|>%" else 46 for c in range(256))
_SUSPECT_BYTES = tuple(b"+(=~|>%")
_TRANSLATE_MAX = 512  # longer reads are searched for each suspect byte before translating
# The other aggregates hiredis knows become '*' here (and '*' itself '.'), digits stay.
_OTHER_AGGREGATES = bytes(42 if c in b"~>%|" else c if 48 <= c <= 57 else 46 for c in range(256))
_FOUR_DIGIT_COUNT = re.compile(rb"\*\d{4}").search


class ProtocolError(Exception):
    """A malformed request; ``str()`` is the message Redis would send after ``-ERR ``."""

    def reply(self) -> bytes:
        message = str(self).replace("\r", " ").replace("\n", " ")  # as Redis: one line
        return b"-ERR Protocol error: " + message.encode("latin-1", "replace") + CRLF


class MalformedReply(ValueError):
    """A backend sent bytes that are not a RESP reply (the connection's pairing is lost).

    ``replies`` are the complete replies that came before those bytes in the same read."""

    def __init__(self, message: str, replies: list[bytes] | None = None):
        super().__init__(message)
        self.replies: list[bytes] = replies or []


# ---------------------------------------------------------------- request parsing


class RequestParser:
    """Turns a client's byte stream into commands (``list[bytes]``) and protocol errors."""

    __slots__ = ("_reader", "_buf", "_python_only", "_args", "_left", "_bulk", "_total",
                 "_broken", "more", "max_bulk", "max_multibulk", "max_request", "_fast_max",
                 "_count_digits", "_big_count")

    def __init__(self, max_bulk: int = 512 * 1024 * 1024, max_multibulk: int = 1024 * 1024,
                 max_request: int = MAX_REQUEST):
        self._reader = hiredis.Reader()
        self._buf: bytearray | None = None  # bytes the Python parser has not consumed
        self._python_only = 0  # leading bytes of _buf never to be handed back to hiredis
        self._args: list[bytes] | None = None  # the open frame's elements so far
        self._left = 0  # elements the open frame still misses
        self._bulk = -1  # length of the element whose header was read, or -1
        self._total = 0  # bulk bytes the open frame has announced
        self._broken = False  # a protocol error was returned: nothing more is parsed
        self.more = False  # before AUTH: complete commands may still be buffered
        self.max_bulk = max_bulk
        self.max_multibulk = max_multibulk
        self.max_request = max_request
        # A read no longer than this cannot hold a bulk or a frame over the limits.
        self._fast_max = min(max_bulk, max_request)
        # Counts hiredis may see have fewer digits than this: at most 999, and within the limit.
        self._count_digits = min(4, len(str(max_multibulk)))
        self._big_count = re.compile(rb"\*\d{%d}" % self._count_digits).search

    @property
    def pending_bytes(self) -> int:
        return len(self._buf) if self._buf is not None else 0

    def feed(self, data: bytes, authenticated: bool = True) -> list[list[bytes] | ProtocolError]:
        """The commands completed by ``data``; before AUTH (``authenticated`` False) at most
        one, the rest of the bytes kept for the next call (``more`` is then True)."""
        if self._buf is not None:
            self._buf += data
            return self._python([], authenticated)
        if authenticated:
            return self._fast(data, [])
        if data:
            self._buf = bytearray(data)
            self._python_only = len(data)
            return self._python([], False)
        return []

    def _fast(self, data: bytes, out: list) -> list[list[bytes] | ProtocolError]:
        """Parse the frames of ``data`` (nothing buffered before it) with hiredis, if it
        cannot misjudge them; else, or for what follows a frame left open, the Python parser."""
        if not data or data[0] != _STAR or len(data) > self._fast_max:
            return self._python_for(data, out)
        if data.find(42, 1) < 0:  # one '*': the header at 0 must end within the digits allowed
            if data.find(13, 1, self._count_digits + 1) < 0:
                return self._python_for(data, out)
        elif self._big_count(data) is not None:
            return self._python_for(data, out)
        suspects = _suspect_marks(data)
        if suspects is not None and _big_aggregate(data):  # hiredis would allocate for it too
            return self._python_for(data, out)
        if data[-1] != 10:  # it ends inside a frame: likely the last "\r\n*" one
            cut = data.rfind(b"\r\n*") + 2
            if cut < 2:
                return self._python_for(data, out)
            parsed = self._hiredis(data, cut, suspects)
            if parsed is not None and parsed[1]:  # cut is a frame boundary
                out += parsed[0]
                with memoryview(data) as view:
                    return self._python_for(view[cut:], out)
        parsed = self._hiredis(data, len(data), suspects)
        if parsed is None:
            return self._python_for(data, out)
        frames, whole = parsed
        out += frames
        if whole:
            return out
        with memoryview(data) as view:  # the frame hiredis left open, at its exact offset
            return self._python_for(view[_frames_size(frames) :], out)

    def _hiredis(self, data: bytes, end: int,
                 suspects: bytes | None) -> tuple[list[list[bytes]], bool] | None:
        """The frames hiredis completes in ``data[:end]`` and whether they end exactly there;
        None if they are not what Redis would read (see the module docstring)."""
        reader = self._reader
        try:
            if end == len(data):
                reader.feed(data)
            else:
                reader.feed(data, 0, end)
            frame = reader.gets()
            if frame is not False and not reader.has_data():  # one whole frame: the usual
                frames, whole = [frame], True
                bodies = b"".join(frame)  # TypeError unless every element is bytes
            else:
                frames = [] if frame is False else [frame]
                while (frame := reader.gets()) is not False:
                    frames.append(frame)
                reader.feed(_SENTINEL)
                try:  # [] only between frames: the sentinel proves where hiredis stopped
                    whole = reader.gets() == []
                except hiredis.ProtocolError:  # the bytes ended inside a header line
                    whole = False
                # (TypeError likewise; an empty bulk "$0" at the top joins without one, and
                # Redis reads it as an inline command: a frame must be an array)
                if any(type(frame) is not list for frame in frames):
                    raise TypeError
                bodies = b"".join(map(b"".join, frames))
        except (hiredis.ProtocolError, TypeError):
            self._reader = hiredis.Reader()
            return None
        if not whole:
            self._reader = hiredis.Reader()  # it holds part of a frame (and the sentinel)
        if suspects is not None:  # each byte of "+(=~|>%" must be inside a bulk string
            taken = end if whole else _frames_size(frames)
            if suspects.count(33, 0, taken) != bodies.translate(_SUSPECTS).count(33):
                return None
        return frames, whole

    def _python_for(self, data: bytes | memoryview, out: list) -> list:
        """Give ``data`` (nothing buffered before it) to the Python parser, all of it: it
        hands back to hiredis only at a frame boundary after new bytes arrived."""
        self._buf = bytearray(data)
        self._python_only = len(self._buf)
        return self._python(out, True) if self._buf else out

    def _python(self, out: list, authenticated: bool) -> list[list[bytes] | ProtocolError]:
        buf = self._buf
        assert buf is not None
        self.more = False
        if self._broken:
            buf.clear()
            return out
        pos, size = 0, len(buf)
        try:
            while pos < size:
                if self._args is None:
                    if buf[pos] != _STAR:
                        end = self._inline(buf, pos, out)
                        if end < 0:
                            break
                        pos = end
                        if not authenticated and out:
                            self.more = pos < size
                            break
                        continue
                    if authenticated and pos >= self._python_only:  # back to hiredis
                        with memoryview(buf) as view:
                            rest = bytes(view[pos:])
                        self._buf = None
                        return self._fast(rest, out)
                    end = self._header(buf, pos, authenticated)
                    if end < 0:
                        break
                    pos = end
                    if self._args is None:  # an empty or null multibulk: Redis ignores it
                        continue
                pos = self._elements(buf, pos, authenticated)
                if self._left:
                    break
                out.append(self._args)
                self._args = None
                if not authenticated:
                    self.more = pos < size
                    break
        except ProtocolError as error:
            out.append(error)
            self._broken = True
            self._args = None
            buf.clear()
            return out
        del buf[:pos]
        self._python_only = max(self._python_only - pos, 0)
        if not buf and self._args is None:
            self._buf = None  # between frames with nothing buffered: the fast path again
        return out

    def _header(self, buf: bytearray, pos: int, authenticated: bool) -> int:
        """Read a ``*N`` header; open the frame if N > 0. The position after it, or -1."""
        cr = _line_end(buf, pos, "too big mbulk count string")
        if cr < 0:
            return -1
        count = string2ll(bytes(buf[pos + 1 : cr]))
        if count is None or count > _INT_MAX:
            raise ProtocolError("invalid multibulk length")
        if not authenticated and count > UNAUTH_MULTIBULK:
            raise ProtocolError("unauthenticated multibulk length")
        if count > self.max_multibulk:
            raise ProtocolError("invalid multibulk length")
        if count > 0:
            self._args, self._left, self._bulk, self._total = [], count, -1, 0
        return cr + 2

    def _elements(self, buf: bytearray, pos: int, authenticated: bool) -> int:
        """Parse the open frame's elements that are complete; return the new position."""
        args = self._args
        assert args is not None
        size = len(buf)
        left, bulk, total = self._left, self._bulk, self._total
        largest = self.max_bulk if authenticated else min(self.max_bulk, UNAUTH_BULK)
        find = buf.find
        while left:
            if bulk < 0:
                cr = find(b"\r", pos)
                text = buf[pos + 1 : cr] if pos < cr < size - 1 and buf[pos] == _DOLLAR else b""
                if text.isdigit() and (text[0] != 48 or len(text) == 1) and len(text) < 19:
                    bulk = int(text)  # the usual header: "$" and a short canonical number
                else:
                    cr = _line_end(buf, pos, "too big bulk count string")
                    if cr < 0:
                        break
                    if buf[pos] != _DOLLAR:
                        raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
                    length = string2ll(bytes(buf[pos + 1 : cr]))
                    if length is None or length < 0:
                        raise ProtocolError("invalid bulk length")
                    bulk = length
                if bulk > largest:
                    raise ProtocolError("invalid bulk length" if bulk > self.max_bulk
                                        else "unauthenticated bulk length")
                total += bulk
                if total > self.max_request:
                    raise ProtocolError("too big request")
                pos = cr + 2
            end = pos + bulk
            if end + 2 > size:
                break
            if bulk < 4096:
                args.append(bytes(buf[pos:end]))
            else:  # one copy, not two
                with memoryview(buf) as view:
                    args.append(view[pos:end].tobytes())
            pos, bulk, left = end + 2, -1, left - 1  # the two bytes after it: unchecked
        self._left, self._bulk, self._total = left, bulk, total
        return pos

    def _inline(self, buf: bytearray, pos: int, out: list) -> int:
        """Parse one inline command line; the position after it, or -1 if incomplete."""
        nl = buf.find(b"\n", pos)
        if nl < 0 and len(buf) - pos > INLINE_MAX or nl - pos > INLINE_MAX:
            raise ProtocolError("too big inline request")
        if nl < 0:
            return -1
        end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl  # one '\r' before '\n'
        args = split_inline(bytes(buf[pos:end]))
        if args:
            out.append(args)
        return nl + 1


def _suspect_marks(data: bytes) -> bytes | None:
    """``data.translate(_SUSPECTS)`` if ``data`` holds a byte of "+(=~|>%", else None. A long
    read (a 10 KB SET) is first searched for each of those bytes (memchr), which costs a
    fifteenth of translating it."""
    if len(data) > _TRANSLATE_MAX:
        for byte in _SUSPECT_BYTES:
            if byte in data:
                break
        else:
            return None
    marks = data.translate(_SUSPECTS)
    return marks if 33 in marks else None


def _big_aggregate(data: bytes) -> bool:
    """Whether a set, map, push or attribute header of 4 or more digits may be in ``data``."""
    return _FOUR_DIGIT_COUNT(data.translate(_OTHER_AGGREGATES)) is not None


def _line_end(buf: bytearray, pos: int, too_big: str) -> int:
    """Where the header line at ``pos`` ends: its first ``\\r``, as Redis finds it, once the
    byte after it (skipped unchecked) has arrived; -1 until then. A line over 64 KB is
    ``too_big`` — also when its end is already there, so the answer does not depend on how
    the bytes were split."""
    cr = buf.find(b"\r", pos)
    if cr < 0 and len(buf) - pos > INLINE_MAX or cr - pos > INLINE_MAX:
        raise ProtocolError(too_big)
    if cr < 0 or cr + 1 >= len(buf):
        return -1
    return cr


def string2ll(text: bytes) -> int | None:
    """``text`` as Redis's ``string2ll`` reads it (an optional '-', digits, no leading zero,
    within a long long), or None: how Redis reads a count or a length."""
    if text == b"0":
        return 0
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or digits[0] == 48 or len(digits) > 19:
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def _frames_size(frames: list[list[bytes]]) -> int:
    """Bytes these frames of bulk strings take on the wire, written as Redis clients do."""
    counts = list(map(len, frames))
    lengths = list(map(len, chain.from_iterable(frames)))
    numbers = len(counts) + len(lengths)
    digits = len(b"%d" * numbers % (*counts, *lengths))  # all the decimals, formatted in C
    return 3 * len(counts) + 5 * len(lengths) + sum(lengths) + digits


_BLANKS = b" \t\n\v\f\r"  # C's isspace(): what separates arguments and may follow a quote
_TOKEN_ENDS = b" \t\n\r"  # what ends an unquoted argument in sdssplitargs (not \v or \f)
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command exactly as Redis's ``sdssplitargs`` (quotes and escapes); a
    NUL is an ordinary byte (Redis never gets that far with one: see the module docstring)."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = 0
        while True:
            if quote == 0:
                if i >= n or line[i] in _TOKEN_ENDS:
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
                if i < n and line[i] not in _BLANKS:
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


def _bulk_lengths(longest: int) -> bytes:
    """A pattern matching the rest of ``$<n>\\r\\n<n bytes>\\r\\n`` after the ``$`` for every
    n up to ``longest``: a trie over n's digits, so each bulk costs a few byte compares."""
    trie: dict = {}
    for n in range(longest + 1):
        node = trie
        for digit in str(n):
            node = node.setdefault(digit, {})
        node[""] = n

    def alternatives(node: dict) -> str:
        parts = []
        for digit, child in sorted(node.items()):
            if digit:
                parts.append(digit + alternatives(child))
            else:
                parts.append(r"\r\n" + (f".{{{child}}}" if child else "") + r"\r\n")
        return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"

    return alternatives(trie).encode()


# One short element that needs no aggregate around it: a bulk of at most 255 bytes (or null),
# an integer, a simple string or error, and RESP3's null, double and boolean. Each matches
# exactly the bytes the element-by-element walk in ``_walk`` would give it, only faster.
_LEAF_TEXT = (rb"(?:\$(?:" + _bulk_lengths(255) + rb"|-1\r\n)|:-?\d+\r\n|[-+][^\r\n]*\r\n"
              rb"|_\r\n|,[^\r\n]*\r\n|#[tf]\r\n)")
_LEAF = re.compile(_LEAF_TEXT, re.DOTALL)
_LEAF_MATCH = _LEAF.match
_LEAF_FINDALL = _LEAF.findall  # (no capturing group: it returns each element's bytes)
_LEAF_RUN = re.compile(_LEAF_TEXT + b"*", re.DOTALL).match
# Exactly n short elements: an aggregate's elements are taken in chunks, so only what is left
# over (a long bulk, a nested aggregate, the end of the data) is walked in Python.
_CHUNKS = tuple((n, re.compile(_LEAF_TEXT + b"{%d}" % n, re.DOTALL).match) for n in (32, 8, 2))
# A run of bulks that all have one length n <= 255 (LRANGE of fixed-width values, ...): one
# match of a pattern made for that n takes them all, where the chunks above walk the trie of
# every length for each of them. Tried on aggregates of at least _RUN_MIN elements left.
_RUN_MIN = 8
_RUNS: dict[int, Callable[..., re.Match[bytes] | None]] = {}
# An array of n <= _SHORT_ARRAY_MAX short elements (an MGET's share, a small LRANGE): its
# header read here, its elements taken by one match of a pattern made for n (cached).
_SHORT_ARRAY_MAX = 64
_SHORT_ARRAYS: dict[int, Callable[..., re.Match[bytes] | None]] = {}
_LENGTH_PREFIXED = b"$!="  # bulk string, blob error, verbatim string
_AGGREGATES = b"*~>"  # array, set, push: n elements
_PAIRS = b"%|"  # map, attribute: n pairs (an attribute also takes the reply that follows it)
_LINES = b"+-:_,#("  # one line each


def _walk(buf: bytes | bytearray, pos: int, stack: list[int],
          line_from: int = 0) -> tuple[int, int, int, int]:
    """Scan the reply whose open aggregates still miss ``stack`` elements (innermost last;
    ``[1]``: a whole reply starts at ``pos``).

    Returns ``(end, pos, need, line_from)``: ``end`` >= 0 where the reply ends; or -1 and
    where to resume — ``pos`` with ``stack`` as updated here, once ``buf`` holds ``need``
    bytes, looking for the line end from ``line_from`` (so a long line split over many reads
    is searched once). Raises ``MalformedReply`` on bytes that are not RESP."""
    size = len(buf)
    left = stack[-1]
    while True:
        while not left:
            stack.pop()
            if not stack:
                return pos, pos, 0, 0
            left = stack[-1]
        if line_from <= pos:  # (not inside a long line: the patterns would rescan it)
            if left >= _RUN_MIN and buf[pos : pos + 1] == b"$":
                pos, left = _bulk_run(buf, pos, left)
            for count, chunk in _CHUNKS:
                while left >= count and (match := chunk(buf, pos)) is not None:
                    pos = match.end()
                    left -= count
            if left and (match := _LEAF_MATCH(buf, pos)) is not None:
                pos = match.end()
                left -= 1
                continue
            if not left:
                continue
        if pos >= size:
            stack[-1] = left
            return -1, pos, size + 1, pos
        kind = buf[pos]
        nl = buf.find(CRLF, max(pos, line_from))
        line_from = 0
        if nl < 0:
            if kind not in _LINES and size - pos > 32:  # a length or count: 20 digits at most
                raise MalformedReply(f"no line end after {bytes(buf[pos:pos + 32])!r}")
            stack[-1] = left
            return -1, pos, size + 1, max(size - 1, pos)
        left -= 1
        if kind in _LINES:
            pos = nl + 2
        elif kind in _LENGTH_PREFIXED:
            length = _length(buf, pos + 1, nl)
            if length < 0:
                pos = nl + 2
            else:
                end = nl + length + 4
                if end > size:
                    stack[-1] = left + 1
                    return -1, pos, end, pos
                if buf[end - 2] != 13 or buf[end - 1] != 10:
                    raise MalformedReply(f"a {chr(kind)}{length} string not followed by CRLF")
                pos = end
        elif kind in _AGGREGATES or kind in _PAIRS:
            count = _length(buf, pos + 1, nl)
            pos = nl + 2
            if kind in _PAIRS:
                if count < 0:
                    raise MalformedReply(f"a {chr(kind)} of {count} pairs")
                count = 2 * count + (kind == 124)  # '|' describes the reply after it
            if count > 0:
                stack[-1] = left
                stack.append(count)
                left = count
        else:
            raise MalformedReply(f"unknown reply type byte {bytes([kind])!r}")


def _bulk_run(buf: bytes | bytearray, pos: int, left: int) -> tuple[int, int]:
    """Take the bulks at ``pos`` that have the first one's length (at most ``left`` of them,
    see ``_RUNS``); the position after them and the elements still left."""
    nl = buf.find(CRLF, pos + 1, pos + 6)
    digits = buf[pos + 1 : nl] if nl > 0 else b""
    if not digits.isdigit() or (digits[0] == 48 and len(digits) > 1):  # RESP's own form only
        return pos, left
    length = int(digits)
    if length > 255:
        return pos, left
    run = _RUNS.get(length)
    if run is None:
        run = _RUNS[length] = re.compile(
            rb"(?:\$%d\r\n.{%d}\r\n)+" % (length, length), re.DOTALL).match
    width = len(digits) + length + 5  # "$" digits CRLF body CRLF
    match = run(buf, pos, pos + left * width)  # never past the aggregate's last element
    if match is None:
        return pos, left
    end = match.end()
    return end, left - (end - pos) // width


def _short_array_end(buf: bytes, pos: int) -> int:
    """End of the array at ``pos`` if it is ``*n`` (1 <= n <= _SHORT_ARRAY_MAX, no leading
    zero) of n short elements, all in ``buf``; else -1, and ``_walk`` decides."""
    nl = buf.find(CRLF, pos + 1, pos + 4)
    digits = buf[pos + 1 : nl] if nl > 0 else b""
    if not digits.isdigit() or digits[0] == 48:
        return -1
    count = int(digits)
    if count > _SHORT_ARRAY_MAX:
        return -1
    elements = _SHORT_ARRAYS.get(count)
    if elements is None:
        elements = _SHORT_ARRAYS[count] = re.compile(
            _LEAF_TEXT + b"{%d}" % count, re.DOTALL).match
    match = elements(buf, nl + 2)
    return -1 if match is None else match.end()


def _length(buf: bytes | bytearray, start: int, end: int) -> int:
    """A length or count: decimal digits, or -1 (a null)."""
    text = buf[start:end]
    if text.isdigit() or text == b"-1":
        return int(text)
    raise MalformedReply(f"bad length {bytes(text)!r}")


class ReplyScanner:
    """Cuts one backend connection's byte stream into its replies, exact bytes each.

    Resumable: what a read leaves incomplete is kept with the position reached and the open
    aggregates' counts, and the next read continues from there — a reply's bytes are each
    looked at a bounded number of times however the reply is split into reads."""

    __slots__ = ("_buf", "_pos", "_stack", "_need", "_line_from")

    def __init__(self) -> None:
        self._buf: bytearray | None = None  # the incomplete reply, from its first byte
        self._pos = 0  # where the scan resumes in _buf
        self._stack: list[int] = []  # elements the open aggregates still miss
        self._need = 0  # bytes _buf must hold before the scan can go on
        self._line_from = 0  # where to go on looking for the end of a line

    @property
    def pending_bytes(self) -> int:
        return len(self._buf) if self._buf is not None else 0

    def feed(self, data: bytes) -> list[bytes]:
        """The replies ``data`` completes, in order."""
        buf = self._buf
        if buf is None:
            match = _LEAF_MATCH(data)
            if match is not None and match.end() == len(data):
                return [data]  # the common case: one short reply, the whole read
            return self._scan(data, [])
        buf += data
        if len(buf) < self._need:
            return []
        end, self._pos, self._need, self._line_from = _walk(
            buf, self._pos, self._stack, self._line_from)
        if end < 0:
            return []
        self._buf = None
        if end == len(buf):
            return [bytes(buf)]
        with memoryview(buf) as view:
            first, rest = view[:end].tobytes(), view[end:].tobytes()
        return self._scan(rest, [first])

    def _scan(self, data: bytes, out: list[bytes]) -> list[bytes]:
        pos, size = 0, len(data)
        try:
            while pos < size:
                run = _LEAF_RUN(data, pos).end()  # type: ignore[union-attr]  # (always matches)
                if run > pos:  # short replies back to back: found in C
                    out += _LEAF_FINDALL(data, pos, run)
                    if run == size:
                        break
                    pos = run
                if data[pos] == _STAR and (end := _short_array_end(data, pos)) > 0:
                    out.append(data if end - pos == size else data[pos:end])
                    pos = end
                    continue
                stack = [1]
                end, at, need, line_from = _walk(data, pos, stack)
                if end < 0:
                    with memoryview(data) as view:
                        self._buf = bytearray(view[pos:])
                    self._pos, self._need = at - pos, need - pos
                    self._line_from, self._stack = max(line_from - pos, 0), stack
                    break
                out.append(data if end - pos == size else data[pos:end])
                pos = end
        except MalformedReply as error:
            error.replies = out  # what came before the bad bytes is still paired
            raise
        return out


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """End offset of the RESP2/RESP3 reply starting at ``pos``, or -1 if it is incomplete.

    Raises ``MalformedReply`` when the bytes are not RESP."""
    match = _LEAF_MATCH(buf, pos)
    if match is not None:
        return match.end()
    return _walk(buf, pos, [1])[0]


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
    """The raw elements of the array reply ``raw`` (none for the null array): the proxy's
    merges. Elements that are all short (MGET's bulks and nils) are cut out in C, one match."""
    nl = raw.find(CRLF)
    count = int(raw[1:nl])
    pos = nl + 2
    if count > 0 and _LEAF_RUN(raw, pos).end() == len(raw):  # type: ignore[union-attr]
        return _LEAF_FINDALL(raw, pos)  # (the run always matches: maybe empty)
    items = []
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
