"""One client connection: parse, dispatch, and reply in request order.

Invariants:

* Every complete command takes a slot at the tail of ``queue`` — forwarded, local, refused
  or erroneous alike — so replies leave in request order however the shards answer.
* ``flush`` writes every settled slot from the head in one ``write``; nothing else writes
  to the client's transport.
* Bad input never harms anyone else: a protocol error is answered (after the replies to the
  commands before it) and then only this connection closes. Unknown commands, wrong arity
  and refused commands get an ``-ERR`` and the connection stays open.
* Flow control: reading pauses while too many replies are outstanding or while the client
  is not reading what it was sent; memory per client stays bounded.
* Requests are re-framed from their parsed arguments before they reach a backend, never
  passed through as received: hiredis tolerates element types a request must not have, and
  a frame Redis rejects would close a backend connection that other clients share.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

from . import local, resp, split
from .commands import KEY, LOCAL, REFUSED, SAME, SPLIT, Command, lookup
from .resp import ProtocolError, RequestParser, element_error, encode_command
from .slots import FanOut, Pending
from .stats import UNKNOWN_INDEX

if TYPE_CHECKING:
    from .pool import Pool
    from .server import ProxyState

log = logging.getLogger("pyproxy.client")

PAUSE_ABOVE = 8192  # outstanding replies before we stop reading from the client
RESUME_BELOW = 1024
_ids = itertools.count(1)

_MERGES = {"ok": split.merge_ok, "sum": split.merge_sum}


def unknown_command(args: list[bytes]) -> bytes:
    """Redis's own message, byte for byte: the arguments shown fill at most 128 bytes."""
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + arg[: 128 - len(shown)] + b"' "
    message = b"-ERR unknown command '" + args[0][:128] + b"', with args beginning with: " + shown
    return message.replace(b"\r", b" ").replace(b"\n", b" ") + resp.CRLF


def wrong_arity(command: Command) -> bytes:
    return resp.error(f"ERR wrong number of arguments for '{command.name}' command")


def refused(command: Command, reason: str) -> bytes:
    return resp.error(f"ERR pyproxy: '{command.name.upper()}' is not supported: {reason}")


def cross_shard(command: Command) -> bytes:
    return resp.error(
        f"ERR pyproxy: the keys of '{command.name.upper()}' live on different shards"
        " (use a hash tag to keep them together)"
    )


class Client(asyncio.Protocol):
    __slots__ = (
        "pool", "state", "transport", "parser", "queue", "dirty", "closing", "paused",
        "write_paused", "id", "name", "authenticated", "peer", "clock", "read_at", "resp3",
    )

    def __init__(self, pool: Pool, state: ProxyState):
        self.pool = pool
        self.state = state
        self.transport: asyncio.Transport | None = None
        config = pool.config
        self.parser = RequestParser(config.max_bulk_length, config.max_multibulk_length)
        self.queue: deque[Pending] = deque()
        self.dirty = False
        self.closing = False  # reply to what was read, then close
        self.paused = False
        self.write_paused = False
        self.id = next(_ids)
        self.name = b""
        self.authenticated = not config.redis_auth
        self.resp3 = False  # set by HELLO 3: replies then come from RESP3 backend connections
        self.peer = ""
        self.clock = asyncio.get_running_loop().time
        self.read_at = 0.0  # when the current read arrived: the start of its requests' latency

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        self.read_at = self.clock()
        self.state.on_client_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()
        self.state.on_client_close(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.read_at = self.clock()
        commands = self.parser.feed(data)
        stats = self.pool.stats
        stats.requests += len(commands)
        stats.request_bytes += len(data)
        queue = self.queue
        for command in commands:
            if type(command) is list:
                if command:
                    depth = len(queue)
                    try:
                        self.dispatch(command)
                    except (TypeError, AttributeError):  # hiredis let a non-bulk element in
                        if all(type(arg) is bytes for arg in command):  # no: a proxy bug
                            log.exception("client %s: failed to serve %.200r", self.peer, command)
                        self.fail(element_error(command), queue[-1] if len(queue) > depth else None)
                        break
            else:
                assert isinstance(command, ProtocolError)
                self.fail(command)
                break
            if self.closing:
                break
        self.flush()
        if len(self.queue) > PAUSE_ABOVE:
            self._update_reading()

    # ------------------------------------------------------------ dispatch

    def dispatch(self, args: list[bytes]) -> None:
        command = lookup(args[0])
        slot = Pending(self, self.read_at)
        self.queue.append(slot)
        stats = self.pool.stats
        if command is None:
            stats.unknown += 1
            stats.commands[UNKNOWN_INDEX] += 1
            slot.settle(unknown_command(args))
            return
        slot.command = command.index
        stats.commands[command.index] += 1
        if not command.arity_ok(len(args)):
            slot.settle(wrong_arity(command))
            return
        kind = command.kind
        if not self.authenticated and command.name not in local.BEFORE_AUTH:
            slot.settle(local.NOAUTH)
            return
        if kind == KEY:
            pool = self.pool
            slot_index = pool.slotter(args[1])
            backend = pool.route[slot_index]
            if backend is None:
                slot.settle(self._no_master(pool.slot_owner[slot_index]))
            else:
                backend.send(encode_command(args), slot, self.id, self.resp3)
        elif kind == SPLIT:
            self._split(command, args, slot)
        elif kind == SAME:
            self._same_shard(command, args, slot)
        elif kind == LOCAL:
            slot.settle(local.answer(self, command.name, args))
        else:
            assert kind == REFUSED
            self.pool.stats.refused += 1
            slot.settle(refused(command, command.reason))

    def _no_master(self, shard_index: int) -> bytes:
        pool = self.pool
        pool.stats.forward_error += 1
        name = pool.table.shards[shard_index].name
        return resp.error(f"ERR pyproxy: shard {name} has no master right now")

    def _to_shard(self, shard_index: int, args: list[bytes], slot: Pending) -> None:
        """Forward a whole command to one shard's master (or say it has none)."""
        backend = self.pool.shard_route[shard_index]
        if backend is None:
            slot.settle(self._no_master(shard_index))
        else:
            backend.send(encode_command(args), slot, self.id, self.resp3)

    def _same_shard(self, command: Command, args: list[bytes], slot: Pending) -> None:
        try:
            positions = command.key_positions(args)
        except KeyError as why:
            slot.settle(resp.error(f"ERR pyproxy: '{command.name.upper()}': {why.args[0]}"))
            return
        if not positions:
            slot.settle(refused(command, "it names no key, so no shard can be chosen"))
            return
        pool = self.pool
        owners = {pool.slot_owner[pool.slotter(args[p])] for p in positions}
        if len(owners) > 1:
            slot.settle(cross_shard(command))
            return
        self._to_shard(owners.pop(), args, slot)

    def _split(self, command: Command, args: list[bytes], slot: Pending) -> None:
        pool = self.pool
        positions = command.key_positions(args)
        if command.step == 2 and len(args) % 2 == 0:  # MSET with a key missing its value
            slot.settle(wrong_arity(command))
            return
        parts = split.plan(args, positions, command.step, pool.key_owner)
        if len(parts) == 1:  # every key on one shard: Redis's own reply is the answer
            self._to_shard(parts[0][0], args, slot)
            return
        if command.merge == "array":
            merge = split.merge_array(len(positions), [indexes for _, _, indexes in parts])
        else:
            merge = _MERGES[command.merge]
        fan = FanOut(slot, len(parts), merge)
        pool.stats.fragments += len(parts)
        for index, (shard_index, frame, _) in enumerate(parts):
            backend = pool.shard_route[shard_index]
            if backend is None:
                fan.part(index).settle(self._no_master(shard_index))
            else:
                backend.send(frame, fan.part(index), self.id, self.resp3)

    # ------------------------------------------------------------ replies

    def flush(self) -> None:
        """Write every settled reply from the head of the queue, in one write."""
        queue = self.queue
        transport = self.transport
        if transport is None:
            queue.clear()
            return
        if queue and queue[0].reply is not None:
            stats = self.pool.stats
            errors, observe, now = stats.command_errors, stats.latency.observe, self.clock()
            parts = []
            while queue and queue[0].reply is not None:
                slot = queue.popleft()
                reply = slot.reply
                assert reply is not None
                if reply[0] == 45 or reply[0] == 33:  # '-' or RESP3's '!': an error
                    errors[slot.command] += 1
                observe(now - slot.started)
                parts.append(reply)
            out = parts[0] if len(parts) == 1 else b"".join(parts)
            stats.response_bytes += len(out)
            transport.write(out)
            if self.paused:
                self._update_reading()
        if self.closing and not queue:
            transport.close()

    def fail(self, error: ProtocolError, slot: Pending | None = None) -> None:
        """Answer a protocol error after the replies already due, then close.

        ``slot`` is the request's own slot when it was already queued; settling it (rather
        than queueing another) means no slot is left waiting forever.
        """
        self.pool.stats.protocol_errors += 1
        self.pool.stats.client_err += 1
        log.info("client %s: protocol error: %s", self.peer, error)
        if slot is None:
            self.queue.append(Pending(self, self.read_at, error.reply()))
        else:
            slot.settle(error.reply())
        self.closing = True

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None:
            return
        should_pause = self.write_paused or len(self.queue) > PAUSE_ABOVE
        if should_pause and not self.paused:
            self.paused = True
            transport.pause_reading()
        elif self.paused and not self.write_paused and len(self.queue) < RESUME_BELOW:
            self.paused = False
            transport.resume_reading()
