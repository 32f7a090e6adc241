"""Configuration: a twemproxy-style YAML file -> frozen dataclasses.

Role: read `pyproxy -c FILE`, check its shape, every field and the cross-field rules, and hand
the rest of the proxy an immutable `Config`. Pure: imports yaml, no asyncio, no threads.

Every key nutcracker 0.5 knows keeps its meaning and its default (`hash: fnv1a_64`,
`distribution: ketama`, ...), so a file nutcracker's `-t` accepts loads here too, unless it
needs something pyproxy does not do: memcache (`redis: false`, nutcracker's default) and unix
socket servers, each refused with a line that says so.

Invariants of a `Config` that loaded:
* every pool speaks Redis; `hash` is one of `HASHES`, `distribution` one of `DISTRIBUTIONS`;
* a pool's `servers` are in slot order and tile 0..modulus-1 exactly once (consecutive
  inclusive `start..end`, first start 0, last end modulus-1); modulus is 4096 for slot
  ranges, the total weight for classic `host:port:weight` entries, whose servers are then in
  nutcracker's server order (`ranges_from_weights`) and each range is as long as its weight;
* slot ranges only with modula (they are a modula continuum);
* a ZooKeeper pool has all three zookeeper_* keys, md5, modula and modulus 4096 (ZooKeeper
  shards are slot ranges over 0..4095: the fallback table must place keys as they do);
* no two pools share a listen address or a zookeeper_path.

Errors: every problem is collected and raised at once as one `ConfigError`, one line each,
naming the file, the pool, the key and the value. Nothing else escapes: no traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from . import address

SLOTS = 4096
# nutcracker 0.5's names, in its order (nc_hashkit.h); pyproxy.routing implements each.
HASHES = ("one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1a_64", "fnv1_32",
          "fnv1a_32", "hsieh", "murmur", "jenkins")
DISTRIBUTIONS = ("ketama", "modula", "random")
# `timeout` when a pool follows ZooKeeper and sets none (twemproxy's default is to wait
# forever). With failover, a request held by a hung master must fail before a replica is
# promoted, or the master may acknowledge it after waking and lose it when it resyncs; the
# watchdog's default detection time is 3 x 500 ms, so requests give up before that.
ZOOKEEPER_TIMEOUT_MS = 1000
# `failover_hold` when a pool follows ZooKeeper and sets none: a switch to the replica takes
# about 0.5-2 s with the watchdog's defaults (3.4 s when a master's watchdog dies), so requests
# held this long see a slower reply, not an error.
FAILOVER_HOLD_MS = 5000
_T = TypeVar("_T")


class ConfigError(Exception):
    """Carries every problem found: .errors is a list[str], one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    host: str
    port: int
    name: str  # nutcracker's name: explicit, else "host:port" ("host" alone for port 11211)
    start: int  # inclusive first slot
    end: int  # inclusive last slot
    weight: int | None  # the classic weight if given as host:port:weight, else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    name: str
    listen: str  # as written
    listen_host: str | None  # None when listening on a unix socket
    listen_port: int | None
    listen_path: str | None  # unix socket path
    listen_mode: int | None  # its permission bits, if given ("/tmp/p.sock 0666")
    hash: str  # one of HASHES
    hash_tag: bytes | None  # exactly two bytes, e.g. b"{}"
    distribution: str  # one of DISTRIBUTIONS
    timeout_ms: int | None  # None = wait forever (ZooKeeper pools default to 1000)
    backlog: int
    client_connections: int  # most clients at once; 0 = no limit
    tcpkeepalive: bool  # SO_KEEPALIVE on client connections
    reuseport: bool  # SO_REUSEPORT on the listening socket
    preconnect: bool
    redis_auth: str | None
    redis_db: int
    server_connections: int
    auto_eject_hosts: bool
    server_retry_timeout_ms: int
    server_failure_limit: int
    modulus: int  # slot = hash % modulus
    servers: tuple[ServerSpec, ...]  # in slot order
    zookeeper_host: str | None
    zookeeper_path: str | None
    zookeeper_redis_path: str | None
    zookeeper_session_timeout_ms: int
    zookeeper_auth: str | None  # USER:PASSWORD (digest): the nodes it creates are its own
    max_bulk_length: int
    max_multibulk_length: int
    client_idle_timeout_ms: int | None  # None = never
    pinned_connections: int  # per backend: connections one client at a time holds (WATCH,
    # blocking commands)
    allow_flush: bool  # FLUSHDB/FLUSHALL reach every shard, or are refused
    pubsub_output_limit: int  # bytes of unread pub/sub output before a client is cut off
    pubsub_output_soft_limit: int  # ... or this many for pubsub_output_soft_seconds
    pubsub_output_soft_seconds: int
    client_output_limit: int  # the same for ordinary replies
    client_output_soft_limit: int
    client_output_soft_seconds: int
    proxy_memory_limit: int  # reply bytes held for all clients before new requests get -OOM
    failover_hold_ms: int  # hold a shard's requests this long while it has no usable master
    slowlog_log_slower_than: int  # µs: requests at least this slow enter SLOWLOG (-1: none)
    slowlog_max_len: int  # entries SLOWLOG keeps

    @property
    def uses_zookeeper(self) -> bool:
        return self.zookeeper_host is not None


@dataclass(frozen=True, slots=True)
class Config:
    pools: tuple[PoolConfig, ...]
    path: str
    digest: str  # sha256 hex of the settings with every secret left out (``settings_digest``)


# --- YAML -------------------------------------------------------------------------------------
# twemproxy reads every scalar as a string and takes only "true"/"false" as booleans. PyYAML's
# YAML 1.1 rules would turn `yes`/`on` into True, `0666` into 438 and `1:20` into 80, so this
# loader resolves only lowercase true/false and plain decimal integers.

_BOOL_TAG, _INT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"


class _Loader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in rules if tag not in (_BOOL_TAG, _INT_TAG)]
        for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML silently keeps the last of two equal keys; twemproxy calls it an error.
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    mark = key.start_mark
                    self.duplicates.append(f"{mark.line + 1}:{mark.column + 1}: "
                                           f"duplicate key {key.value!r}")
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|false)$"), list("tf"))
_Loader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"),
                              list("-+0123456789"))


def _yaml_load(text: str, path: str) -> Any:
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = " ".join((exc.problem or exc.context or "unreadable").split())
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {' '.join(str(exc).split())}"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError([f"{path}:{line}" for line in loader.duplicates])
    return data


# --- Values: each check returns the converted value or raises _Invalid(expectation) ------------

class _Invalid(Exception):
    def __init__(self, expected: str, note: str = "") -> None:
        super().__init__(expected)
        self.note = note


def _show(value: Any) -> str:
    """A value as the message shows it: YAML spellings, strings quoted, long ones cut."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, dict | list):
        kind = "mapping" if isinstance(value, dict) else "list"
        return f"a {kind}" if value else f"an empty {kind}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _problem(exc: _Invalid, value: Any) -> str:
    """"bad port '0' (expected 1..65535) in 'h:0'" or "expected true or false, got 'yes'"."""
    joint = " in " if str(exc).startswith("bad ") else ", got "
    return f"{exc}{joint}{_show(value)}" + (f" ({exc.note})" if exc.note else "")


def _integer(minimum: int, expected: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(expected)
        return value
    return check


def _exactly(wanted: _T, note: str) -> Callable[[Any], _T]:
    """For keys where pyproxy implements one value only; `note` says why."""
    def check(value: Any) -> _T:
        if value != wanted or type(value) is not type(wanted):
            raise _Invalid(f"expected {_show(wanted)}", note)
        return wanted
    return check


def _one_of(names: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in names or not isinstance(value, str):
            raise _Invalid("expected one of " + ", ".join(names))
        return str(value)
    return check


_milliseconds = _integer(1, "expected a positive integer (milliseconds)")
_bytes = _integer(0, "expected an integer >= 0 (bytes; 0 = no limit)")
_non_negative_ms = _integer(0, "expected an integer >= 0 (milliseconds)")


def _optional_milliseconds(value: Any) -> int | None:
    """Milliseconds, where 0 means none, as nutcracker reads `timeout: 0` (no timeout)."""
    return _non_negative_ms(value) or None


_positive = _integer(1, "expected a positive integer")
# Redis's slowlog-log-slower-than: any integer, negative disables the log, 0 logs everything
_microseconds = _integer(-(1 << 62), "expected an integer (microseconds; negative = log "
                                     "nothing, 0 = log every request)")
_non_negative = _integer(0, "expected an integer >= 0")
_hash = _one_of(HASHES)
_distribution = _one_of(DISTRIBUTIONS)
_redis = _exactly(True, "pyproxy speaks Redis only, not memcache")
# twemproxy's default for this key is a value pyproxy does not implement: the file must say.
_MISSING_REDIS = "missing: write 'redis: true' (twemproxy's default, false, means memcache)"
# nutcracker's defaults for static pools; a ZooKeeper pool must say md5 and modula.
DEFAULT_HASH, DEFAULT_DISTRIBUTION = "fnv1a_64", "ketama"


def _typed(kind: type[_T], expected: str) -> Callable[[Any], _T]:
    def check(value: Any) -> _T:
        if not isinstance(value, kind) or value == "":
            raise _Invalid(expected)
        return value
    return check


_boolean = _typed(bool, "expected true or false")
_string = _typed(str, "expected a non-empty string (quote it if YAML reads a number)")


def _user_password(value: Any) -> str:
    text = _string(value)
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise _Invalid("expected 'USER:PASSWORD' (ZooKeeper's digest scheme)")
    return text


def _hash_tag(value: Any) -> bytes:
    if not isinstance(value, str) or len(value.encode()) != 2:
        raise _Invalid('expected exactly two characters, quoted, like "{}"')
    return value.encode()


# --- Addresses ----------------------------------------------------------------------------------

def _host_port(text: str) -> tuple[str, int]:
    try:
        return address.parse(text)
    except address.AddressError as exc:
        raise _Invalid(str(exc)) from None


_Listen = tuple[str, str | None, int | None, str | None, int | None]


def _listen(value: Any) -> _Listen:
    """(as written, host, port, unix path, mode) from "host:port" or "/path/x.sock [0666]"."""
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("expected 'host:port' or '/path/to.sock [mode]'")
    if value.startswith("/"):
        path, *mode = value.split()
        if len(mode) > 1 or (mode and not re.fullmatch(r"0?[0-7]{3}", mode[0])):
            raise _Invalid("expected '/path/to.sock [mode]' with an octal mode like 0666")
        return value, None, None, path, int(mode[0], 8) if mode else None
    host, port = _host_port(value)
    return value, host, port, None, None


def _zookeeper_hosts(value: Any) -> str:
    """``host:port,host:port`` with an optional ``/chroot`` suffix, as kazoo accepts."""
    hosts, slash, chroot = _string(value).partition("/")
    if slash:
        _znode_path("/" + chroot)
    for item in hosts.split(","):
        try:
            _host_port(item.strip())
        except _Invalid as exc:
            raise _Invalid(f"bad item {item.strip()!r}", f"{exc}") from None
    return str(value)


def _znode_path(value: Any) -> str:
    text = _string(value)
    if (not text.startswith("/") or any(part in ("", ".", "..") for part in text[1:].split("/"))
            or any(ch.isspace() or not ch.isprintable() for ch in text)):
        raise _Invalid("expected an absolute znode path like /redis/cluster/icd (no trailing "
                       "slash, no empty, '.' or '..' part, no whitespace)")
    return text


# --- Servers ------------------------------------------------------------------------------------

_FORMS = "'host:port:start-end [name]' or 'host:port:weight [name]'"


def ranges_from_weights(servers: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Classic weights -> (name, start, end) in continuum order, as nutcracker's modula has it.

    `servers` holds (nutcracker's name, weight). The order is NOT the list order: nutcracker
    sorts a pool's servers by name before building the modula continuum (conf_validate_server
    sorts with string_compare, which compares lengths first and only then memcmp()s), so
    "127.0.0.1:7201" < "127.0.0.1:7301" < "127.0.0.1:10001". Each server then owns `weight`
    consecutive continuum entries, and slot = hash % total weight.
    """
    ordered = sorted(servers, key=lambda item: (len(item[0].encode()), item[0].encode()))
    result, start = [], 0
    for name, weight in ordered:
        result.append((name, start, start + weight - 1))
        start += weight
    return result


@dataclass(slots=True)
class _Entry:
    host: str
    port: int
    name: str | None  # explicit name
    start: int = -1  # slot range form
    end: int = -1
    weight: int | None = None  # classic form

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def nutcracker_name(self) -> str:
        """The name nutcracker sorts by, hashes ketama points with and keys its stats by.

        Its default name drops the port when it is 11211 (libmemcached heritage); measured
        with nutcracker 0.5: an unnamed 127.0.0.1:11211 sorts as "127.0.0.1".
        """
        return self.name or (self.host if self.port == 11211 else self.address)


def _server_entry(value: Any) -> _Entry:
    if not isinstance(value, str) or not 1 <= len(value.split()) <= 2:
        raise _Invalid(f"expected {_FORMS}")
    if value.startswith("/"):
        raise _Invalid("unix socket servers are not supported by pyproxy (connect to "
                       "redis by host:port)")
    address, *name = value.split()
    head, sep, spec = address.rpartition(":")
    if not sep:
        raise _Invalid(f"expected {_FORMS}")
    entry = _Entry(*_host_port(head), name[0] if name else None)
    if match := re.fullmatch(r"([0-9]{1,9})-([0-9]{1,9})", spec):
        entry.start, entry.end = int(match[1]), int(match[2])
        if not entry.start <= entry.end < SLOTS:
            raise _Invalid(f"bad slot range {spec!r} (expected start-end, "
                           f"0 <= start <= end <= {SLOTS - 1})")
    elif re.fullmatch("[0-9]{1,9}", spec) and int(spec) > 0:
        entry.weight = int(spec)
    else:
        raise _Invalid(f"bad range or weight {spec!r} (expected start-end or a positive weight)")
    return entry


def _duplicates(entries: list[_Entry]) -> list[str]:
    problems, addresses, names = [], set(), dict[str, _Entry]()
    for entry in entries:
        if entry.address in addresses:
            problems.append(f"server {entry.address} is listed twice")
        addresses.add(entry.address)
        other = names.setdefault(entry.nutcracker_name, entry)
        if other is not entry and (entry.name or other.name):  # both unnamed: same address
            problems.append(f"server name {entry.nutcracker_name!r} is used twice")
    return problems


def _tiling(ranges: list[tuple[int, int]]) -> list[str]:
    """Every way the ranges fail to cover 0..4095 exactly once, naming the ranges."""
    problems, reach, reacher = [], -1, ""
    for start, end in sorted(ranges):
        if start > reach + 1:
            problems.append(f"slots {reach + 1}-{start - 1} are not covered")
        elif start <= reach:
            problems.append(f"ranges {reacher} and {start}-{end} overlap")
        if end > reach:
            reach, reacher = end, f"{start}-{end}"
    if reach < SLOTS - 1:
        problems.append(f"slots {reach + 1}-{SLOTS - 1} are not covered")
    return problems


def _check_servers(value: Any) -> tuple[list[_Entry], list[str]]:
    """Parse every entry; return them and one problem per bad entry or conflict."""
    if not isinstance(value, list) or not value:
        return [], [f"expected a non-empty list of {_FORMS}, got {_show(value)}"]
    entries, problems = [], []
    for item in value:
        try:
            entries.append(_server_entry(item))
        except _Invalid as exc:
            problems.append(_problem(exc, item))
    problems += _duplicates(entries)
    kinds = {entry.weight is None for entry in entries}
    if len(kinds) > 1:
        problems.append("mixes slot ranges (host:port:start-end) and weights "
                        "(host:port:weight): use one kind in a pool")
    elif kinds == {True} and len(entries) == len(value):  # a bad entry would leave a gap
        problems += _tiling([(entry.start, entry.end) for entry in entries])
    return entries, problems


def _resolve(entries: list[_Entry]) -> tuple[tuple[ServerSpec, ...], int]:
    """Checked entries (one kind) -> servers in slot order, modulus."""
    if entries[0].weight is None:
        ranged = sorted(entries, key=lambda entry: entry.start)
        return tuple(ServerSpec(e.host, e.port, e.nutcracker_name, e.start, e.end, None)
                     for e in ranged), SLOTS
    by_name = {entry.nutcracker_name: entry for entry in entries}
    weighted = ranges_from_weights([(e.nutcracker_name, e.weight or 0) for e in entries])
    servers = tuple(ServerSpec(e.host, e.port, e.nutcracker_name, start, end, e.weight)
                    for e, start, end in ((by_name[n], s, t) for n, s, t in weighted))
    return servers, servers[-1].end + 1


# --- Pools --------------------------------------------------------------------------------------

_ZOOKEEPER_KEYS = ("zookeeper_host", "zookeeper_path", "zookeeper_redis_path")
_KEYS = ("listen", "hash", "hash_tag", "distribution", "timeout", "backlog",
         "client_connections", "tcpkeepalive", "reuseport", "preconnect", "redis",
         "redis_auth", "redis_db", "server_connections", "auto_eject_hosts",
         "server_retry_timeout", "server_failure_limit", "servers", *_ZOOKEEPER_KEYS,
         "zookeeper_session_timeout", "zookeeper_auth", "max_bulk_length", "max_multibulk_length",
         "client_idle_timeout", "pinned_connections", "allow_flush", "pubsub_output_limit",
         "pubsub_output_soft_limit", "pubsub_output_soft_seconds", "failover_hold",
         "client_output_limit", "client_output_soft_limit", "client_output_soft_seconds",
         "proxy_memory_limit", "slowlog_log_slower_than", "slowlog_max_len")


class _PoolReader:
    """One pool's mapping, read key by key; each problem becomes a located line."""

    def __init__(self, path: str, name: str, raw: dict[Any, Any], errors: list[str]) -> None:
        self.prefix, self.raw, self.errors = f"{path}: pool {name!r}: ", raw, errors
        self.failed = False

    def error(self, key: str, message: str) -> None:
        key = key if key.isprintable() else repr(key)  # one line, whatever the key holds
        self.errors.append(f"{self.prefix}{key}: {message}")
        self.failed = True

    def get(self, key: str, check: Callable[[Any], _T], default: _T, missing: str = "") -> _T:
        """The checked value; `default` if the key is absent (an error if `missing` says)."""
        if key not in self.raw:
            if missing:
                self.error(key, missing)
            return default
        try:
            return check(self.raw[key])
        except _Invalid as exc:
            self.error(key, _problem(exc, self.raw[key]))
            return default

    def check_unknown_keys(self) -> None:
        for key in map(str, self.raw):
            if key not in _KEYS:
                close = difflib.get_close_matches(key, _KEYS, n=1)
                self.error(key, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))


def _zookeeper(pool: _PoolReader) -> tuple[str | None, str | None, str | None]:
    host = pool.get("zookeeper_host", _zookeeper_hosts, None)
    path = pool.get("zookeeper_path", _znode_path, None)
    cluster = pool.get("zookeeper_redis_path", _znode_path, None)
    missing = [key for key in _ZOOKEEPER_KEYS if key not in pool.raw]
    if 0 < len(missing) < len(_ZOOKEEPER_KEYS):
        pool.error(", ".join(missing), "missing (zookeeper_host, zookeeper_path and "
                                       "zookeeper_redis_path go together)")
    if path and cluster and (path + "/").startswith(cluster + "/"):
        pool.error("zookeeper_path", f"{path!r} lies in zookeeper_redis_path {cluster!r}, "
                                     "where it would be taken for a shard")
    return host, path, cluster


def _pool_servers(pool: _PoolReader, zookeeper: bool) -> tuple[tuple[ServerSpec, ...], int]:
    if "servers" not in pool.raw:
        pool.error("servers", "missing (required)")
        return (), SLOTS
    entries, problems = _check_servers(pool.raw["servers"])
    for problem in problems:
        pool.error("servers", problem)
    if problems:
        return (), SLOTS
    servers, modulus = _resolve(entries)
    if zookeeper and modulus != SLOTS:
        pool.error("servers", f"weights total {modulus}, but ZooKeeper shards are slot ranges "
                              f"over 0-{SLOTS - 1}: make them total {SLOTS} or use ranges")
    return servers, modulus


_ZOOKEEPER_PLACEMENT = (f"ZooKeeper's shards are md5 slot ranges over 0-{SLOTS - 1}, so a "
                        "ZooKeeper pool needs 'hash: md5' and 'distribution: modula'")


def _placement(pool: _PoolReader, zookeeper: bool,
               servers: tuple[ServerSpec, ...]) -> tuple[str, bytes | None, str]:
    """(hash, hash_tag, distribution): nutcracker's defaults for a static pool; md5 and modula,
    said in the file, for a ZooKeeper pool."""
    if zookeeper:
        hash_name = pool.get("hash", _hash, "md5", f"missing: {_ZOOKEEPER_PLACEMENT}")
        if hash_name != "md5":
            pool.error("hash", f"{hash_name!r} cannot place keys here: {_ZOOKEEPER_PLACEMENT}")
    else:
        hash_name = pool.get("hash", _hash, DEFAULT_HASH)
    hash_tag = pool.get("hash_tag", _hash_tag, None)
    if zookeeper:
        distribution = pool.get("distribution", _distribution, "modula",
                                f"missing: {_ZOOKEEPER_PLACEMENT}")
        if distribution != "modula":
            pool.error("distribution", f"{distribution!r} cannot place keys here: "
                                       f"{_ZOOKEEPER_PLACEMENT}")
    else:
        reported = len(pool.errors)
        distribution = pool.get("distribution", _distribution, DEFAULT_DISTRIBUTION)
        read = len(pool.errors) == reported  # not a bad value replaced by the default
        if read and distribution != "modula" and servers and servers[0].weight is None:
            default = "" if "distribution" in pool.raw else " (nutcracker's default)"
            pool.error("distribution", f"{distribution!r}{default} places keys by weight, but "
                       "the servers are slot ranges (a modula continuum): write "
                       "'distribution: modula' or give host:port:weight entries")
    return hash_name, hash_tag, distribution


def _read_pool(path: str, name: str, raw: dict[Any, Any],
               errors: list[str]) -> tuple[PoolConfig, bool]:
    """The pool as read (defaults where a key was bad) and whether every key was good."""
    pool = _PoolReader(path, name, raw, errors)
    pool.check_unknown_keys()
    no_listen: _Listen = ("", None, None, None, None)
    listen, host, port, unix_path, mode = pool.get("listen", _listen, no_listen,
                                                   "missing (required), e.g. 127.0.0.1:22121")
    zk_host, zk_path, zk_cluster = _zookeeper(pool)
    servers, modulus = _pool_servers(pool, zookeeper=zk_host is not None)
    get = pool.get
    # Keys in the order problems are reported. redis has one possible value: checked, not kept
    # (every Config speaks Redis).
    hash_name, hash_tag, distribution = _placement(pool, zk_host is not None, servers)
    timeout_ms = get("timeout", _optional_milliseconds,
                     ZOOKEEPER_TIMEOUT_MS if zk_host else None)
    backlog = get("backlog", _non_negative, 512)
    client_connections = get("client_connections", _non_negative, 0)
    tcpkeepalive = get("tcpkeepalive", _boolean, False)
    reuseport = get("reuseport", _boolean, False)
    preconnect = get("preconnect", _boolean, False)
    get("redis", _redis, True, _MISSING_REDIS)
    config = PoolConfig(
        name=name, listen=listen, listen_host=host, listen_port=port, listen_path=unix_path,
        listen_mode=mode, hash=hash_name, hash_tag=hash_tag, distribution=distribution,
        timeout_ms=timeout_ms, backlog=backlog, client_connections=client_connections,
        tcpkeepalive=tcpkeepalive, reuseport=reuseport, preconnect=preconnect,
        redis_auth=get("redis_auth", _string, None),
        redis_db=get("redis_db", _non_negative, 0),
        server_connections=get("server_connections", _positive, 1),
        auto_eject_hosts=get("auto_eject_hosts", _boolean, False),
        server_retry_timeout_ms=get("server_retry_timeout", _non_negative_ms, 30000),
        server_failure_limit=get("server_failure_limit", _non_negative, 2),
        modulus=modulus, servers=servers,
        zookeeper_host=zk_host, zookeeper_path=zk_path, zookeeper_redis_path=zk_cluster,
        zookeeper_session_timeout_ms=get("zookeeper_session_timeout", _milliseconds, 10000),
        zookeeper_auth=get("zookeeper_auth", _user_password, None),
        max_bulk_length=get("max_bulk_length", _integer(1, "expected a positive integer "
                                                           "(bytes)"), 536870912),
        max_multibulk_length=get("max_multibulk_length", _positive, 1048576),
        client_idle_timeout_ms=get("client_idle_timeout", _milliseconds, None),
        pinned_connections=get("pinned_connections", _positive, 512),
        allow_flush=get("allow_flush", _boolean, True),
        pubsub_output_limit=get("pubsub_output_limit", _bytes, 32 * 1024 * 1024),
        pubsub_output_soft_limit=get("pubsub_output_soft_limit", _bytes, 8 * 1024 * 1024),
        pubsub_output_soft_seconds=get("pubsub_output_soft_seconds", _integer(
            0, "expected an integer >= 0 (seconds)"), 60),
        client_output_limit=get("client_output_limit", _bytes, 256 * 1024 * 1024),
        client_output_soft_limit=get("client_output_soft_limit", _bytes, 0),
        client_output_soft_seconds=get("client_output_soft_seconds", _integer(
            0, "expected an integer >= 0 (seconds)"), 0),
        proxy_memory_limit=get("proxy_memory_limit", _bytes, 1024 * 1024 * 1024),
        failover_hold_ms=get("failover_hold", _integer(0, "expected an integer >= 0 "
                                                          "(milliseconds; 0 = do not hold)"),
                             FAILOVER_HOLD_MS if zk_host else 0),
        slowlog_log_slower_than=get("slowlog_log_slower_than", _microseconds, 10000),
        slowlog_max_len=get("slowlog_max_len", _integer(0, "expected an integer >= 0 "
                                                           "(entries)"), 128),
    )
    return config, not pool.failed


# --- Whole file ---------------------------------------------------------------------------------

def _same_listener(a: PoolConfig, b: PoolConfig) -> bool:
    if not (a.listen_port or a.listen_path) or not (b.listen_port or b.listen_path):
        return False  # a listen that was missing or bad: already reported
    if a.listen_path or b.listen_path:
        return a.listen_path == b.listen_path
    # 0.0.0.0 takes the port on every address.
    hosts = {a.listen_host, b.listen_host}
    return a.listen_port == b.listen_port and (len(hosts) == 1 or "0.0.0.0" in hosts)


def _cross_pool(path: str, pools: list[PoolConfig]) -> list[str]:
    problems = []
    for index, pool in enumerate(pools):
        earlier = pools[:index]
        if clash := next((e for e in earlier if _same_listener(e, pool)), None):
            problems.append(f"{path}: pool {pool.name!r}: listen: {pool.listen!r} is already "
                            f"used by pool {clash.name!r}")
        if clash := next((e for e in earlier if pool.zookeeper_path
                          and e.zookeeper_path == pool.zookeeper_path), None):
            problems.append(f"{path}: pool {pool.name!r}: zookeeper_path: "
                            f"{pool.zookeeper_path!r} is already used by pool {clash.name!r}")
    return problems


SECRETS = ("redis_auth", "zookeeper_auth")


def settings_digest(pools: tuple[PoolConfig, ...]) -> str:
    """What proxies publish to show whether they run the same settings: a hash of every
    pool setting but the secrets (a hash of the file itself would let anyone who reads
    ZooKeeper guess a short password offline)."""
    shown = [{field: getattr(pool, field) for field in PoolConfig.__slots__
              if field not in SECRETS} for pool in pools]
    return hashlib.sha256(repr(shown).encode()).hexdigest()


def _parse(text: str, path: str) -> Config:
    data = _yaml_load(text, path)
    if not isinstance(data, dict) or not data:
        shown = "an empty file" if data is None else _show(data)
        raise ConfigError([f"{path}: expected a mapping of pool names to pool settings, "
                           f"got {shown}"])
    errors: list[str] = []
    pools, read = [], []  # the pools that are valid; every pool read, for the cross checks
    for name, raw in data.items():
        if not isinstance(name, str) or not name:
            errors.append(f"{path}: pool name {_show(name)}: expected a non-empty string")
        elif not isinstance(raw, dict) or not raw:
            errors.append(f"{path}: pool {name!r}: expected a mapping of settings, "
                          f"got {_show(raw)}")
        else:
            pool, valid = _read_pool(path, name, raw, errors)
            read.append(pool)
            if valid:
                pools.append(pool)
    errors += _cross_pool(path, read)
    if errors:
        raise ConfigError(errors)
    return Config(pools=tuple(pools), path=path, digest=settings_digest(tuple(pools)))


def parse(text: str, path: str = "<string>") -> Config:
    """Parse YAML text; raise ConfigError listing every problem, one line each."""
    return _parse(text, path)


def load(path: str) -> Config:
    """Read and parse a file; an unreadable file is a one-line ConfigError too."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 (bad byte at offset {exc.start})"]) from None
    return _parse(text, path)
