"""Error replies the proxy writes itself, in one place.

Where Redis has a text for the situation, it is Redis's byte for byte (clients and their test
suites match on it): unknown command, wrong arity, the transaction errors. Where the proxy
refuses something a single Redis would do, the text starts ``ERR pyproxy:`` and says why.

Pure: no I/O.
"""

from __future__ import annotations

from ..protocol import resp
from ..protocol.commands import Command


class Failure(bytes):
    """An error reply the proxy made because a request did not get Redis's own answer.

    It is the bytes the client would get, typed: ``kind`` says why ("down": refused or
    resting, "lost": the connection broke, "timeout", "no-master", "malformed", "closed") and
    ``sent`` whether the request may have reached Redis — its outcome is then unknown, and a
    write must never be retried blindly.
    """

    kind: str
    sent: bool

    def __new__(cls, message: str, kind: str, sent: bool) -> Failure:
        failure = super().__new__(cls, resp.error(message))
        failure.kind = kind
        failure.sent = sent
        return failure


class Unroutable(Exception):
    """No shard can serve the command as it is; ``reply`` is the error the client gets."""

    def __init__(self, reply: bytes):
        super().__init__(reply)
        self.reply = reply


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


def key_error(command: Command, why: str) -> bytes:
    """The command's key arguments cannot be found (a bad numkeys, a missing STREAMS)."""
    return resp.error(f"ERR pyproxy: '{command.name.upper()}': {why}")


def no_master(shard: str) -> Failure:
    return Failure(f"ERR pyproxy: shard {shard} has no master right now", "no-master", False)


def unknown_outcome(shard: str, failure: Failure) -> bytes:
    why = "timed out" if failure.kind == "timeout" else "was lost"
    return resp.error(f"ERR pyproxy: the write was sent to shard {shard}'s master, whose "
                      f"connection then {why}: it may or may not have been applied (not "
                      "retried)")


def no_pinned_connection(shard: str, limit: int) -> bytes:
    return resp.error(f"ERR pyproxy: shard {shard} has no free connection for WATCH or blocking "
                      f"commands (pinned_connections: {limit} in use); try again later")


OUT_OF_MEMORY = resp.error("OOM pyproxy: its clients hold more unread replies than "
                           "proxy_memory_limit allows; try again once they read")

# Transactions: Redis's texts.
QUEUED = b"+QUEUED\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
NESTED_MULTI = b"-ERR MULTI calls can not be nested\r\n"
EXEC_WITHOUT_MULTI = b"-ERR EXEC without MULTI\r\n"
DISCARD_WITHOUT_MULTI = b"-ERR DISCARD without MULTI\r\n"
WATCH_INSIDE_MULTI = b"-ERR WATCH inside MULTI is not allowed\r\n"
TRANSACTION_MOVED = resp.error(
    "EXECABORT pyproxy: the cluster's slots moved while the transaction was queued, and its "
    "keys no longer live on one shard; nothing ran")


def transaction_cross_shard(command: Command, shard: str) -> bytes:
    return resp.error(
        f"ERR pyproxy: '{command.name.upper()}' touches a key outside shard {shard}, where this "
        "transaction runs (every key of a transaction must live on one shard: use a hash tag)"
    )


def not_in_transaction(command: Command) -> bytes:
    return resp.error(f"ERR pyproxy: '{command.name.upper()}' cannot be queued in a transaction "
                      "through the proxy (it is not served by one shard)")


# Migrating slots (``migration``): nothing ran, the client may simply try again.
MIGRATION_PREPARING = resp.error(
    "TRYAGAIN pyproxy: this key's slot is being prepared for a migration (WATCH and blocking "
    "calls wait for it to start moving); try again in a moment")


def migration_not_started(seconds: float) -> bytes:
    return resp.error(f"TRYAGAIN pyproxy: this key's slot was being prepared for a migration "
                      f"that did not start within {seconds:.0f} s (is pyproxy-admin still "
                      "running?); nothing ran, try again")


def not_moved(source: str, target: str, why: bytes) -> bytes:
    reason = why.decode(errors="replace").strip().lstrip("-")[:200]
    return resp.error(f"TRYAGAIN pyproxy: the keys could not be moved from shard {source} to "
                      f"{target} for their slot's migration ({reason}); nothing ran, try again")


def mixed_migration(what: str) -> bytes:
    """``what``: the command's name, or "the request"."""
    return resp.error(
        f"TRYAGAIN pyproxy: some keys of {what} are in slots migrating to another shard and "
        "some are not; nothing ran, try again once the migration ends (or keep them together "
        "with a hash tag)")
