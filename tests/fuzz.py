"""Random and mutated RESP for fuzzing a whole proxy (no pytest here): ``tests/test_fuzz_proxy.py``
runs it for a few seconds, ``benchmarks/soak.py`` as its garbage clients.

``Fuzzer(port, seed)`` is a bounded thread that opens connection after connection and on each
sends a few frames — commands from ``CORPUS`` over its own keys (``fz<n>:…``: nobody else's),
some as they are, some mutated (bytes flipped, cut, duplicated, lengths made huge or negative,
frames nested, inline forms, plain random bytes) — in pieces split at random points, then
reads what comes back for a moment and closes: politely, by a half-close and reading to the
end, or with a reset. Everything is a function of the seed, so a failure is reproduced by
running the same seed again. Commands that would change what others see are left out of the
corpus (no FLUSH reaches the backends when the pool sets ``allow_flush: false``).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter

from pyproxy.protocol.resp import encode_command

CORPUS: tuple[tuple[str, ...], ...] = (
    ("GET", "{k}"), ("SET", "{k}", "{v}"), ("MGET", "{k}", "{k}", "{k}"),
    ("MSET", "{k}", "{v}", "{k}", "{v}"), ("DEL", "{k}", "{k}"), ("INCR", "{k}"),
    ("LPUSH", "{k}", "{v}", "{v}"), ("LRANGE", "{k}", "0", "-1"), ("HSET", "{k}", "f", "{v}"),
    ("HGETALL", "{k}"), ("SADD", "{k}", "{v}"), ("ZADD", "{k}", "1", "{v}"),
    ("EXPIRE", "{k}", "10"), ("TTL", "{k}"), ("EXISTS", "{k}", "{k}"), ("TYPE", "{k}"),
    ("APPEND", "{k}", "{v}"), ("GETRANGE", "{k}", "0", "-1"), ("SETRANGE", "{k}", "3", "{v}"),
    ("XADD", "{k}", "*", "f", "{v}"), ("XRANGE", "{k}", "-", "+"), ("SORT", "{k}"),
    ("RENAME", "{k}", "{k}"), ("SINTER", "{k}", "{k}"), ("OBJECT", "ENCODING", "{k}"),
    ("PING",), ("PING", "{v}"), ("ECHO", "{v}"), ("INFO",), ("INFO", "proxy"), ("DBSIZE",),
    ("SCAN", "0", "COUNT", "5"), ("KEYS", "fz*"), ("TIME",), ("COMMAND", "COUNT"),
    ("SELECT", "0"), ("SELECT", "1"), ("MULTI",), ("EXEC",), ("DISCARD",), ("WATCH", "{k}"),
    ("UNWATCH",), ("BLPOP", "{k}", "0.01"), ("BRPOP", "{k}", "{k}", "0.01"),
    ("SUBSCRIBE", "{k}"), ("UNSUBSCRIBE",), ("PSUBSCRIBE", "fz*"), ("PUBLISH", "{k}", "{v}"),
    ("HELLO", "3"), ("HELLO", "2"), ("CLIENT", "SETNAME", "fz"), ("CLIENT", "LIST"),
    ("CLIENT", "INFO"), ("EVAL", "return 1", "0"), ("EVAL", "return KEYS[1]", "1", "{k}"),
    ("SCRIPT", "LOAD", "return 2"), ("WAIT", "0", "5"), ("FLUSHDB",), ("FLUSHALL",),
    ("AUTH", "nobody"), ("QUIT",), ("NOSUCHCOMMAND", "{k}"), ("GET",), ("SET", "{k}"),
)
HEADER_BOMBS = (b"*2147483647\r\n", b"*3000000000\r\n", b"$536870913\r\n", b"*1\r\n$-7\r\n",
                b"*-5\r\n", b">3\r\n", b"*1\r\n*1\r\n$4\r\nPING\r\n", b"$99999999999999999999\r\n",
                b"*2\r\n$3\r\nGET\r\n$1048577\r\n", b"\r\n\r\n", b"*\r\n", b"$\r\n", b"*1\r\n$")


class Fuzzer(threading.Thread):
    def __init__(self, port: int, seed: int, host: str = "127.0.0.1", connections: int = 60,
                 max_seconds: float = 10.0, big: int = 100_000, pause: float = 0.0) -> None:
        super().__init__(name=f"fuzzer {seed}", daemon=True)
        self.address = (host, port)
        self.seed = seed
        self.rng = random.Random(seed)
        self.connections = connections
        self.max_seconds = max_seconds
        self.big = big  # the size of the occasional large value
        self.pause = pause  # seconds between two connections
        self.outcomes: Counter[str] = Counter()  # what the connections saw, by kind
        self.sent = 0  # bytes
        self.crash: BaseException | None = None
        self._stop_event = threading.Event()

    # ------------------------------------------------------------ what to send

    def _command(self) -> bytes:
        rng = self.rng
        template = rng.choice(CORPUS)
        args = []
        for part in template:
            if part == "{k}":
                args.append(b"fz%d:%d" % (self.seed, rng.randrange(8)))
            elif part == "{v}":
                size = self.big if rng.random() < 0.02 else rng.randrange(20)
                args.append(rng.randbytes(size))
            else:
                args.append(part.encode())
        if rng.random() < 0.15:  # the inline form, as a terminal sends it
            words = [b'"%s"' % a.hex().encode() if rng.random() < 0.3 else a.hex().encode()
                     for a in args[1:]]
            return b" ".join([args[0], *words]) + rng.choice([b"\r\n", b"\n"])
        return encode_command(args)

    def _mutate(self, frame: bytes) -> bytes:
        rng = self.rng
        how = rng.randrange(9)
        where = rng.randrange(len(frame) + 1)
        if how == 0 and frame:  # flip a byte
            return frame[:where - 1] + bytes([rng.randrange(256)]) + frame[where:]
        if how == 1:  # cut
            return frame[:where]
        if how == 2:  # drop a span
            return frame[:where] + frame[where + rng.randrange(1, 16):]
        if how == 3:  # duplicate a span
            return frame[:where] + frame[max(0, where - 8):where] + frame[where:]
        if how == 4:  # insert framing characters
            return frame[:where] + rng.choice([b"\r\n", b"*", b"$", b"-1", b"\r", b"\n",
                                               b"\x00", b"99999999"]) + frame[where:]
        if how == 5:  # a length made huge, negative or not a number
            return frame.replace(b"$", rng.choice([b"$9999999", b"$-3", b"$x", b"$0"]), 1)
        if how == 6:  # nested inside an array
            return b"*2\r\n$4\r\nECHO\r\n" + frame
        if how == 7:
            return rng.choice(HEADER_BOMBS)
        return rng.randbytes(rng.randrange(1, 200))

    def _payload(self) -> bytes:
        frames = []
        for _ in range(self.rng.randrange(1, 7)):
            frame = self._command()
            frames.append(self._mutate(frame) if self.rng.random() < 0.5 else frame)
        return b"".join(frames)

    # ------------------------------------------------------------ the thread

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.max_seconds
            for _ in range(self.connections):
                if self._stop_event.is_set() or time.monotonic() > deadline:
                    break
                self._one_connection()
                if self.pause:
                    self._stop_event.wait(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.crash = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30.0)
        assert not self.is_alive(), f"{self.name} did not stop"
        assert self.crash is None, f"{self.name} crashed: {self.crash!r}"

    def _one_connection(self) -> None:
        rng = self.rng
        payload = self._payload()
        splits = range(1, len(payload))  # (a payload may be empty: then nothing is sent)
        cuts = sorted(rng.sample(splits, min(len(splits), rng.randrange(4))))
        pieces = [payload[i:j] for i, j in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        ending = rng.choice(["half-close", "close", "reset"])
        try:
            with socket.create_connection(self.address, timeout=2.0) as sock:
                for piece in pieces:
                    sock.sendall(piece)
                    self.sent += len(piece)
                    if rng.random() < 0.3:
                        time.sleep(rng.uniform(0, 0.005))
                if ending == "half-close":
                    sock.shutdown(socket.SHUT_WR)
                    got = self._read(sock, until_eof=True)
                else:
                    got = self._read(sock, until_eof=False)
                    if ending == "reset":
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
        except OSError as exc:  # the proxy closed first and our write met the reset
            self.outcomes[f"client: {type(exc).__name__}"] += 1
            return
        self.outcomes["protocol error" if b"Protocol error" in got else
                      "answered" if got else "silent"] += 1

    def _read(self, sock: socket.socket, until_eof: bool) -> bytes:
        """What the proxy sends: until it closes (bounded by the socket timeout and 4 MB), or
        whatever arrives within 20 ms."""
        sock.settimeout(2.0 if until_eof else 0.02)
        got = b""
        try:
            while len(got) < 4 << 20:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            if until_eof:
                self.outcomes["no close after half-close"] += 1
        return got
