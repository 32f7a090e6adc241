"""Commands the proxy answers itself: PING, ECHO, QUIT, SELECT, AUTH, CLIENT, HELLO,
COMMAND, CONFIG, SLOWLOG.

Replies mimic Redis byte for byte where a client may depend on them (error codes such as
``NOAUTH``, ``WRONGPASS`` and ``NOPROTO``; HELLO's field names), so redis-cli, redis-py and
redis-benchmark behave as they do against a single Redis. ``HELLO 3`` switches a client to
RESP3: the proxy's own maps and nulls are then written the RESP3 way, and its forwarded
requests travel on RESP3 backend connections (see ``backend``).
``CONFIG GET`` describes the proxy, never a shard: it persists nothing (``save`` is empty,
``appendonly`` is ``no``), and every other parameter is absent from the answer.
``CLIENT LIST``/``INFO``/``KILL`` are about the proxy's own client connections (of this
pool), in Redis's format. ``SLOWLOG GET/LEN/RESET/HELP`` read the pool's own slowlog
(``observe.slowlog``): Redis's entries and errors, each entry with the shard as a 7th element.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from .. import __version__
from ..observe.slowlog import SlowEntry
from ..observe.snapshot import ClientSnapshot
from ..protocol import resp
from ..protocol.commands import COMMANDS, LOCAL, REFUSED
from .session import Session

if TYPE_CHECKING:
    from .dispatch import Context

BEFORE_AUTH = frozenset({"auth", "hello", "quit"})  # PING too gets NOAUTH, as from redis
QUEUEABLE = frozenset({"ping", "echo"})  # inside MULTI they are queued and run by the shard
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
    if user == b"default" and hmac.compare_digest(args[-1], password.encode()):
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
    if sub == b"list":
        return _client_list(session, context, args[2:])
    if sub == b"info" and len(args) == 2:
        (me,) = [c for c in context.clients(session.last_active) if c.id == session.id]
        return _verbatim(session, client_line(me))
    if sub == b"kill" and len(args) >= 3:
        return _client_kill(session, context, args[2:])
    if sub in (b"setname", b"getname", b"id", b"setinfo", b"info", b"kill"):
        return resp.error(f"ERR wrong number of arguments for 'client|{sub.decode()}' command")
    return resp.error(f"ERR pyproxy: 'CLIENT {sub.decode(errors='replace').upper()}' is not "
                      "supported: only SETNAME, GETNAME, ID, SETINFO, LIST, INFO and KILL are "
                      "(about the proxy's own clients)")


def client_line(c: ClientSnapshot) -> str:
    """One CLIENT LIST line, fields in Redis 7.2's order."""
    return (f"id={c.id} addr={c.addr} laddr={c.laddr} fd={c.fd} "
            f"name={c.name.decode(errors='replace')} age={c.age} idle={c.idle} flags={c.flags} "
            f"db=0 sub={c.sub} psub={c.psub} ssub={c.ssub} multi={c.multi} qbuf={c.qbuf} "
            f"qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={c.omem} "
            f"tot-mem={c.qbuf + c.omem} events=r cmd={c.cmd} user=default redir=-1 "
            f"resp={c.resp} lib-name={c.lib_name.decode(errors='replace')} "
            f"lib-ver={c.lib_ver.decode(errors='replace')}\n")


def _verbatim(session: Session, text: str) -> bytes:
    """A bulk string (RESP2) or a verbatim string (RESP3), as Redis sends CLIENT LIST."""
    data = text.encode()
    if session.resp3:
        return b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data)
    return resp.bulk(data)


def _client_list(session: Session, context: Context, options: list[bytes]) -> bytes:
    clients = sorted(context.clients(session.last_active), key=lambda c: c.id)
    if options:
        if options[0].upper() == b"TYPE" and len(options) == 2:
            of_type = _of_type(clients, options[1].decode(errors="replace"))
            if isinstance(of_type, bytes):
                return of_type
            clients = of_type
        elif options[0].upper() == b"ID" and len(options) >= 2:
            try:
                wanted = {int(o) for o in options[1:]}
            except ValueError:
                return resp.error("ERR Invalid client ID")
            clients = [c for c in clients if c.id in wanted]
        else:
            return SYNTAX
    return _verbatim(session, "".join(client_line(c) for c in clients))


def _of_type(clients: list[ClientSnapshot], kind: str) -> list[ClientSnapshot] | bytes:
    """The clients of a CLIENT LIST/KILL TYPE (the proxy has no master or replica clients),
    or Redis's error for an unknown type."""
    kind = kind.lower()
    if kind not in ("normal", "pubsub", "master", "replica", "slave"):
        return resp.error(f"ERR Unknown client type '{kind}'")
    return [c for c in clients if kind in ("normal", "pubsub")
            and ("P" in c.flags) == (kind == "pubsub")]


def _client_kill(session: Session, context: Context, args: list[bytes]) -> bytes:
    """CLIENT KILL addr (the old form: +OK or an error) or CLIENT KILL <filter value> ...
    (a count): ID, ADDR, LADDR, USER, SKIPME, TYPE, as Redis."""
    clients = list(context.clients(session.last_active))
    if len(args) == 1:
        found = [c for c in clients if c.addr == args[0].decode(errors="replace")]
        if not found:
            return resp.error("ERR No such client")
        context.kill(found[0].id)
        return resp.OK
    if len(args) % 2:
        return SYNTAX
    skip_me = True
    for i in range(0, len(args), 2):
        option, value = args[i].upper(), args[i + 1].decode(errors="replace")
        if option == b"ID":
            if not value.isdigit():
                return resp.error("ERR client-id should be greater than 0")
            clients = [c for c in clients if c.id == int(value)]
        elif option == b"ADDR":
            clients = [c for c in clients if c.addr == value]
        elif option == b"LADDR":
            clients = [c for c in clients if c.laddr == value]
        elif option == b"USER":
            clients = clients if value == "default" else []
        elif option == b"TYPE":
            of_type = _of_type(clients, value)
            if isinstance(of_type, bytes):
                return of_type
            clients = of_type
        elif option == b"SKIPME":
            if value.lower() not in ("yes", "no"):
                return SYNTAX
            skip_me = value.lower() == "yes"
        else:
            return SYNTAX
    killed = sum(context.kill(c.id) for c in clients if not (skip_me and c.id == session.id))
    return resp.integer(killed)


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


_SLOWLOG_HELP = resp.array([b"+%b\r\n" % line.encode() for line in (
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count> [SHARD]]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name; with SHARD (pyproxy), then the shard that served it",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
)])


def _slowlog(session: Session, context: Context, args: list[bytes]) -> bytes:
    log = context.pool.slowlog
    sub = args[1].lower()
    shown = args[1][:128].decode(errors="replace")  # Redis echoes at most 128 bytes
    with_shard = len(args) == 4 and args[3].lower() == b"shard"
    if sub == b"get" and (len(args) <= 3 or with_shard):
        count = 10
        if len(args) >= 3:
            parsed = resp.string2ll(args[2])
            if parsed is None or parsed < -1:
                return resp.error("ERR count should be greater than or equal to -1")
            count = parsed
        return resp.array([_slow_entry(entry, with_shard) for entry in log.latest(count)])
    if sub == b"len" and len(args) == 2:
        return resp.integer(len(log))
    if sub == b"reset" and len(args) == 2:
        log.reset()
        return resp.OK
    if sub == b"help" and len(args) == 2:
        return _SLOWLOG_HELP
    if sub in (b"len", b"reset", b"help"):
        return resp.error(f"ERR wrong number of arguments for 'slowlog|{sub.decode()}' command")
    if sub == b"get":
        return resp.error(f"ERR unknown subcommand or wrong number of arguments for '{shown}'. "
                          "Try SLOWLOG HELP.")
    return resp.error(f"ERR unknown subcommand '{shown}'. Try SLOWLOG HELP.")


def _slow_entry(entry: SlowEntry, with_shard: bool) -> bytes:
    """Redis's six elements; the shard as a seventh only when asked (``SHARD``): client
    libraries read Redis's entries, and newer Redis versions may add fields of their own."""
    fields = [
        resp.integer(entry.id), resp.integer(entry.time), resp.integer(entry.duration_us),
        resp.array([resp.bulk(arg) for arg in entry.args]), resp.bulk(entry.addr.encode()),
        resp.bulk(entry.name),
    ]
    if with_shard:
        fields.append(resp.bulk(entry.shard.encode()))
    return resp.array(fields)


_HANDLERS = {
    "ping": _ping, "echo": _echo, "quit": _quit, "select": _select, "auth": _auth,
    "client": _client, "hello": _hello, "command": _command, "config": _config,
    "slowlog": _slowlog,
}

assert set(_HANDLERS) == {n for n, c in COMMANDS.items() if c.kind == LOCAL}, "LOCAL table drift"
