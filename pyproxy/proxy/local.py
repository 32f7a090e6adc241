"""Commands the proxy answers itself: PING, ECHO, QUIT, SELECT, AUTH, CLIENT, HELLO,
COMMAND, INFO, CONFIG.

Replies mimic Redis byte for byte where a client may depend on them (error codes such as
``NOAUTH``, ``WRONGPASS`` and ``NOPROTO``; HELLO's field names), so redis-cli, redis-py and
redis-benchmark behave as they do against a single Redis. ``HELLO 3`` switches a client to
RESP3: the proxy's own maps and nulls are then written the RESP3 way, and its forwarded
requests travel on RESP3 backend connections (see ``backend``).
``CONFIG GET`` describes the proxy, never a shard: it persists nothing (``save`` is empty,
``appendonly`` is ``no``), and every other parameter is absent from the answer.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from .. import __version__
from ..config import PoolConfig
from ..observe.snapshot import ProxySnapshot
from ..protocol import resp
from ..protocol.commands import COMMANDS, LOCAL, REFUSED
from .session import Session


class Context(Protocol):
    """What local commands may see beyond their session: the pool's settings and a read-only
    view of the whole proxy (the ``Executor`` provides both)."""

    config: PoolConfig

    def snapshot(self) -> ProxySnapshot: ...

BEFORE_AUTH = frozenset({"auth", "hello", "quit", "ping"})
NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
NOPASSWORD = resp.error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOT_INTEGER = resp.error("ERR value is not an integer or out of range")
SYNTAX = resp.error("ERR syntax error")


def _entry(name: str) -> bytes:
    """A COMMAND entry as Redis 6 shaped it: name, arity, flags, first, last, step."""
    command = COMMANDS[name]
    first, last, step = command.first, command.last, command.step
    if command.keys is not None:  # movable keys: reported like Redis does, as 0 0 0
        first = last = step = 0
    flags = [resp.bulk(b"movablekeys")] if command.keys is not None else []
    return resp.array([
        resp.bulk(name.encode()), resp.integer(command.arity), resp.array(flags),
        resp.integer(first), resp.integer(last), resp.integer(step),
    ])


_SERVED = sorted(name for name, c in COMMANDS.items() if c.kind != REFUSED)
_ENTRIES = {name: _entry(name) for name in _SERVED}
_ALL_ENTRIES = resp.array(list(_ENTRIES.values()))


def answer(session: Session, context: Context, name: str, args: list[bytes]) -> bytes:
    return _HANDLERS[name](session, context, args)


def _ping(session: Session, context: Context, args: list[bytes]) -> bytes:
    if len(args) > 2:
        return resp.error("ERR wrong number of arguments for 'ping' command")
    return resp.PONG if len(args) == 1 else resp.bulk(args[1])


def _echo(session: Session, context: Context, args: list[bytes]) -> bytes:
    return resp.bulk(args[1])


def _quit(session: Session, context: Context, args: list[bytes]) -> bytes:
    session.closing = True
    return resp.OK


def _select(session: Session, context: Context, args: list[bytes]) -> bytes:
    try:
        db = int(args[1])
    except ValueError:
        return NOT_INTEGER
    if db == 0:
        return resp.OK
    return resp.error("ERR pyproxy: only database 0 is served (SELECT cannot follow keys "
                      "across shards)")


def _auth(session: Session, context: Context, args: list[bytes]) -> bytes:
    if len(args) > 3:
        return SYNTAX
    password = context.config.redis_auth
    user = args[1] if len(args) == 3 else b"default"
    if not password:  # as Redis with a "nopass" default user: any password for it is fine
        if len(args) == 2:
            return NOPASSWORD
        return resp.OK if user == b"default" else WRONGPASS
    if user == b"default" and args[-1] == password.encode():
        session.authenticated = True
        return resp.OK
    return WRONGPASS


def _client(session: Session, context: Context, args: list[bytes]) -> bytes:
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        name = args[2]
        if any(c <= 32 or c >= 127 for c in name):
            return resp.error(
                "ERR Client names cannot contain spaces, newlines or special characters."
            )
        session.name = name
        return resp.OK
    if sub == b"getname" and len(args) == 2:
        return resp.bulk(session.name) if session.name else resp.null(session.resp3)
    if sub == b"id" and len(args) == 2:
        return resp.integer(session.id)
    if sub == b"setinfo" and len(args) == 4:
        return _setinfo(session, args[2], args[3])
    if sub in (b"setname", b"getname", b"id", b"setinfo"):
        return resp.error(f"ERR wrong number of arguments for 'client|{sub.decode()}' command")
    return resp.error(f"ERR pyproxy: 'CLIENT {sub.decode(errors='replace').upper()}' is not "
                      "supported: it describes one redis-server's clients")


def _hello(session: Session, context: Context, args: list[bytes]) -> bytes:
    if len(args) >= 2:
        try:
            version = int(args[1])
        except ValueError:
            return resp.error("ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            return b"-NOPROTO unsupported protocol version\r\n"
    i = 2
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            reply = _auth(session, context, [b"AUTH", args[i + 1], args[i + 2]])
            if reply != resp.OK:
                return reply
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            reply = _client(session, context, [b"CLIENT", b"SETNAME", args[i + 1]])
            if reply != resp.OK:
                return reply
            i += 2
        else:
            shown = args[i].decode(errors="replace")
            return resp.error(f"ERR Syntax error in HELLO option '{shown}'")
    if not session.authenticated:
        return NOAUTH
    if len(args) >= 2:
        session.resp3 = version == 3
    fields = [
        resp.bulk(b"server"), resp.bulk(b"pyproxy"),
        resp.bulk(b"version"), resp.bulk(__version__.encode()),
        resp.bulk(b"proto"), resp.integer(3 if session.resp3 else 2),
        resp.bulk(b"id"), resp.integer(session.id),
        resp.bulk(b"mode"), resp.bulk(b"proxy"),
        resp.bulk(b"role"), resp.bulk(b"master"),
        resp.bulk(b"modules"), resp.EMPTY_ARRAY,
    ]
    return resp.mapping(fields, session.resp3)


def _command(session: Session, context: Context, args: list[bytes]) -> bytes:
    if len(args) == 1:
        return _ALL_ENTRIES
    sub = args[1].lower()
    if sub == b"count":
        return resp.integer(len(_ENTRIES))
    if sub == b"docs":
        return resp.mapping([], session.resp3)  # no documentation: clients show no hints
    if sub == b"list":
        return resp.array([resp.bulk(name.encode()) for name in _SERVED])
    if sub == b"info":
        return resp.array([
            _ENTRIES.get(name.lower().decode(errors="replace"),
                         resp.null(True) if session.resp3 else resp.NULL_ARRAY)
            for name in args[2:]
        ])
    return resp.error(f"ERR pyproxy: 'COMMAND {sub.decode(errors='replace').upper()}' "
                      "is not supported")


def _info(session: Session, context: Context, args: list[bytes]) -> bytes:
    view = context.snapshot()
    lines = [
        "# Proxy",
        f"pyproxy_version:{__version__}",
        "redis_mode:proxy",
        f"process_id:{os.getpid()}",
        f"uptime_in_seconds:{int(time.time() - view.started)}",
        "",
        "# Clients",
        f"connected_clients:{view.clients}",
        "",
        "# Stats",
        f"total_connections_received:{view.connections_total}",
        f"total_commands_processed:{view.requests_total}",
        "",
        "# Pools",
    ]
    for pool in view.pools:
        table = pool.table
        masters = ",".join(f"{s.name}={s.master or '-'}" for s in table.shards)
        lines.append(
            f"pool_{pool.name}:listen={pool.listen},shards={len(table.shards)},"
            f"table_version={table.version},source={table.source}"
        )
        lines.append(f"pool_{pool.name}_masters:{masters}")
    return resp.bulk(("\r\n".join(lines) + "\r\n").encode())


# CONFIG GET answers describe the proxy itself, never a shard (the shards' settings may
# differ). The proxy persists nothing: redis-benchmark asks exactly these two at start and
# warns "Could not fetch server CONFIG" unless each comes back as a name/value pair.
_OWN_CONFIG = {b"save": b"", b"appendonly": b"no"}


def _config(session: Session, context: Context, args: list[bytes]) -> bytes:
    if args[1].lower() == b"get":
        pairs = []
        for name in dict.fromkeys(a.lower() for a in args[2:]):
            if name in _OWN_CONFIG:
                pairs += [resp.bulk(name), resp.bulk(_OWN_CONFIG[name])]
        return resp.mapping(pairs, session.resp3)
    return resp.error(f"ERR pyproxy: 'CONFIG {args[1].decode(errors='replace').upper()}' is "
                      "not supported: configure each redis-server directly")


def _setinfo(session: Session, attribute: bytes, value: bytes) -> bytes:
    """CLIENT SETINFO LIB-NAME|LIB-VER value, checked as Redis checks it."""
    which = attribute.upper()
    if which not in (b"LIB-NAME", b"LIB-VER"):
        shown = attribute.decode(errors="replace")
        return resp.error(f"ERR Unrecognized option '{shown}'")
    if any(c < 33 or c > 126 for c in value):
        return resp.error(f"ERR {which.decode().lower()} cannot contain spaces, newlines or "
                          "special characters.")
    if which == b"LIB-NAME":
        session.lib_name = value
    else:
        session.lib_ver = value
    return resp.OK


_HANDLERS = {
    "ping": _ping, "echo": _echo, "quit": _quit, "select": _select, "auth": _auth,
    "client": _client, "hello": _hello, "command": _command, "info": _info, "config": _config,
}

assert set(_HANDLERS) == {n for n, c in COMMANDS.items() if c.kind == LOCAL}, "LOCAL table drift"
