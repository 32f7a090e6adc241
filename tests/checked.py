"""Clients that know every answer, for pairing tests and the soak (no pytest here).

A ``CheckedClient`` is a bounded thread that pipelines rounds of ``SET``, ``MSET``, ``GET`` and
``MGET`` through a proxy over keys only it writes (``keys``: some on each shard), each round
writing new values that name the client, the key and the round. Every reply is checked
against the request it answers:

* an error is counted by kind (``error_kind``); errors that are not the proxy's own
  (``-ERR pyproxy…``, ``-OOM pyproxy…``) are counted apart, as ``redis:…``;
* ``SET``/``MSET`` must answer ``+OK``;
* ``GET`` (and each element of ``MGET``) must be exactly this round's value when its write of
  this round was acknowledged; otherwise (the write failed: it may or may not have run, or a
  restarted backend lost it) nil or the value of one of this client's rounds so far of that
  very key — anything else (another key's, another client's, a reply of the wrong type, a
  later round) is a **mismatch**. An acknowledged write read back as nil or as an earlier
  round of its own key is counted apart, as **stale**: not a reply paired with the wrong
  request but a write lost (a master killed before it replicated the write, its replica
  promoted).

``Tally`` adds the counts of many clients up. Values can be large (``value_size``), and a
client can reconnect every ``reconnect_every`` rounds (connects and disconnects under load).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hiredis

from pyproxy.protocol.resp import encode_command

PROXY_ERRORS = (b"ERR pyproxy", b"OOM pyproxy")


def error_kind(message: bytes) -> str:
    """A short, stable name for an error reply (the proxy's own, or ``redis:<CODE>``)."""
    if not message.startswith(PROXY_ERRORS):
        return "redis:" + message.split(b" ", 1)[0].decode(errors="replace")
    for marker, kind in ((b"timed out", "timed out"), (b"is down", "down"),
                         (b"may or may not", "unknown outcome"), (b"no master", "no master"),
                         (b"failed: ", "connection failed"), (b"OOM", "oom"),
                         (b"closed", "closed")):
        if marker in message:
            return kind
    return "proxy:" + message[:60].decode(errors="replace")


@dataclass
class Tally:
    ok: int = 0  # replies that were exactly what their request expects
    rounds: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    mismatches: int = 0
    stale: int = 0  # acknowledged writes read back older (lost in a failover)
    examples: list[str] = field(default_factory=list)  # the first few mismatches and stale
    streak: int = 0  # rounds since the last error (of one client)

    def add(self, other: Tally) -> None:
        self.ok += other.ok
        self.rounds += other.rounds
        self.errors.update(other.errors)
        self.mismatches += other.mismatches
        self.stale += other.stale
        self.examples += other.examples[: max(0, 10 - len(self.examples))]

    def redis_errors(self) -> dict[str, int]:
        return {kind: n for kind, n in self.errors.items() if kind.startswith("redis:")}

    def summary(self) -> str:
        errors = ", ".join(f"{kind} {n}" for kind, n in self.errors.most_common()) or "none"
        return (f"{self.rounds} rounds, {self.ok} replies checked right, "
                f"{self.mismatches} mismatched, {self.stale} stale, errors: {errors}")


class CheckedClient(threading.Thread):
    def __init__(self, name: str, port: int, keys: list[bytes], host: str = "127.0.0.1",
                 value_size: int = 0, reconnect_every: int = 0, pause: float = 0.0,
                 max_seconds: float = 60.0, reply_timeout: float = 10.0) -> None:
        super().__init__(name=f"checked {name}", daemon=True)
        assert len(keys) >= 2 and len(keys) % 2 == 0
        self.label = name.encode()
        self.address = (host, port)
        self.keys = keys
        self.value_size = value_size
        self.reconnect_every = reconnect_every
        self.pause = pause
        self.max_seconds = max_seconds
        self.reply_timeout = reply_timeout
        self.tally = Tally()
        self.crash: BaseException | None = None
        self._stop_event = threading.Event()
        self._sock: socket.socket | None = None

    # ------------------------------------------------------------ values

    def value(self, key_index: int, round_: int) -> bytes:
        head = b"%s:%d:%d:" % (self.label, key_index, round_)
        return head + b"v" * max(0, self.value_size - len(head))

    def _earlier(self, key_index: int, round_: int, got: Any) -> bool:
        """Whether ``got`` is nil or this key's value of a round up to ``round_`` (a write
        that failed may still have run)."""
        if got is None:
            return True
        if not isinstance(got, bytes):
            return False
        parts = got.split(b":", 3)
        if len(parts) != 4 or parts[0] != self.label or parts[1] != b"%d" % key_index:
            return False
        try:
            earlier = int(parts[2])
        except ValueError:
            return False
        return earlier <= round_ and got == self.value(key_index, earlier)

    # ------------------------------------------------------------ the thread

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by stop(), not the thread
            self.crash = exc
        finally:
            self._close()

    def stop(self) -> Tally:
        self._stop_event.set()
        self.join(self.reply_timeout + 10.0)
        assert not self.is_alive(), f"{self.name} did not stop"
        assert self.crash is None, f"{self.name} crashed: {self.crash!r}"
        return self.tally

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        round_ = 0
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            round_ += 1
            if self.reconnect_every and round_ % self.reconnect_every == 0:
                self._close()
            try:
                self._round(round_)
            except OSError as exc:  # the connection itself failed: counted, then reconnect
                self.tally.errors[f"client: {type(exc).__name__}"] += 1
                self.tally.streak = 0
                self._close()
                self._stop_event.wait(0.05)
                continue
            self.tally.rounds += 1
            self.tally.streak += 1
            if self.pause:
                self._stop_event.wait(self.pause)

    def _round(self, round_: int) -> None:
        keys = self.keys
        half = len(keys) // 2
        values = [self.value(i, round_) for i in range(len(keys))]
        commands = [[b"SET", keys[i], values[i]] for i in range(half)]
        commands.append([b"MSET", *(x for i in range(half, len(keys))
                                   for x in (keys[i], values[i]))])
        commands += [[b"GET", key] for key in keys]
        commands.append([b"MGET", *keys])
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self.reply_timeout)
        self._sock.sendall(b"".join(encode_command(c) for c in commands))
        replies = self._read(len(commands))
        written = [False] * len(keys)
        for i in range(half):
            written[i] = self._check_write(replies[i])
        mset_ok = self._check_write(replies[half])
        for i in range(half, len(keys)):
            written[i] = mset_ok
        for i in range(len(keys)):
            self._check_read(i, round_, written[i], replies[half + 1 + i])
        mget = replies[-1]
        if self._is_error(mget):
            return
        if not isinstance(mget, list) or len(mget) != len(keys):
            self._mismatch(f"MGET answered {mget!r:.200}")
            return
        for i, got in enumerate(mget):
            self._check_read(i, round_, written[i], got, what="MGET element")

    def _read(self, count: int) -> list[Any]:
        assert self._sock is not None
        reader = hiredis.Reader()
        replies: list[Any] = []
        while len(replies) < count:
            reply = reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            data = self._sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed after {len(replies)} of {count} replies")
            reader.feed(data)
        if reader.gets() is not False:
            raise AssertionError("more replies than requests")
        return replies

    # ------------------------------------------------------------ checks

    def _is_error(self, reply: Any) -> bool:
        if isinstance(reply, hiredis.ReplyError):
            self.tally.errors[error_kind(str(reply).encode())] += 1
            self.tally.streak = 0
            return True
        return False

    def _mismatch(self, what: str) -> None:
        self.tally.mismatches += 1
        if len(self.tally.examples) < 10:
            self.tally.examples.append(f"{self.label.decode()}: {what}")

    def _check_write(self, reply: Any) -> bool:
        if self._is_error(reply):
            return False
        if reply != b"OK":
            self._mismatch(f"a write answered {reply!r:.200}")
            return False
        self.tally.ok += 1
        return True

    def _check_read(self, index: int, round_: int, written: bool, got: Any,
                    what: str = "GET") -> None:
        if self._is_error(got):
            return
        if (got == self.value(index, round_)) if written else self._earlier(index, round_, got):
            self.tally.ok += 1
            return
        what = (f"{what} of key {index} in round {round_} (written: {written}) "
                f"answered {got!r:.200}")
        if written and self._earlier(index, round_, got):
            self.tally.stale += 1
            if len(self.tally.examples) < 10:
                self.tally.examples.append(f"{self.label.decode()}: stale: {what}")
            return
        self._mismatch(what)
