"""``zoo-watchdog.conf``: the seed's ``key = value`` file, read into a frozen ``Conf``.

Format (the seed's, kept): one ``key = value`` per line; blank lines and lines starting
with ``#`` are ignored; a value may be wrapped in double or single quotes (the seed's comment
shows ``zkServersList = "host:port,..."``); an unquoted value may be followed by `` # comment``.

Keys (names are case-sensitive, as in the seed):

=====================  ========  ==========================================================
key                    default   meaning
=====================  ========  ==========================================================
zkServersList          required  ``host:port,host:port[/chroot]`` of the ZooKeeper ensemble
logLevel               INFO      DEBUG, INFO, WARN/WARNING, ERROR (the seed said DEBUG)
logFile                stderr    log file path (relative to the working directory)
zkSessionTimeout       4000      ZooKeeper session timeout, ms (what a dead watchdog costs)
healthCheckInterval    500       ms between two health checks of the redis
healthCheckTimeout     250       ms a health check (PING + ROLE) may take before it failed
healthCheckFailures    3         consecutive failed checks before the redis counts as down
redisStartTimeout      60000     ms the watchdog waits at start for its redis to answer
                                 (0: not at all; exit 3 if the first check fails)
zkAuth                 none      ``USER:PASSWORD``: ZooKeeper digest auth; the watchdog's
                                 nodes can then be changed by that identity only
redisPassword          none      the password of the redis it guards (and of the shard's other
                                 redis, which it fences and repoints); they need
                                 ``masterauth`` set to replicate from each other
=====================  ========  ==========================================================

Invariants: every problem in the file is found and raised at once, as one ``ConfError``
whose ``errors`` are one line each, starting with ``FILE:LINE:`` (or ``FILE:`` for a
missing key or an unreadable file); a key given twice is an error, not "last one wins".
Pure: no I/O besides reading the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .. import address

LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING",
              "ERROR": "ERROR"}

_INLINE_COMMENT = re.compile(r"\s+#.*$")


class ConfError(ValueError):
    """A bad conf file: ``errors`` holds every problem, one line each naming the file and
    the line; ``str()`` is those lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class Conf:
    zk_servers: str
    log_level: str = "INFO"
    log_file: str | None = None
    zk_session_timeout_ms: int = 4000
    health_interval_ms: int = 500
    health_timeout_ms: int = 250
    health_failures: int = 3
    redis_start_timeout_ms: int = 60000
    zk_auth: str | None = None
    redis_password: str | None = None

    @property
    def session_timeout(self) -> float:
        return self.zk_session_timeout_ms / 1000.0

    @property
    def interval(self) -> float:
        return self.health_interval_ms / 1000.0

    @property
    def probe_timeout(self) -> float:
        return self.health_timeout_ms / 1000.0

    @property
    def redis_start_timeout(self) -> float:
        return self.redis_start_timeout_ms / 1000.0


def _zk_servers(text: str) -> str:
    hosts, slash, chroot = text.partition("/")
    for entry in hosts.split(","):
        try:
            address.parse(entry.strip())
        except address.AddressError as exc:
            raise ValueError(f"{entry.strip()!r} is not host:port: {exc}") from None
    if slash and (not chroot or chroot.endswith("/")):
        raise ValueError(f"chroot '/{chroot}' is not a path like /a/b")
    return text.replace(" ", "")


def _level(text: str) -> str:
    level = LOG_LEVELS.get(text.upper())
    if level is None:
        raise ValueError(f"{text!r} is not one of DEBUG, INFO, WARN, ERROR")
    return level


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value
    return parse


def _user_password(text: str) -> str:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected USER:PASSWORD")
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("expected a non-empty value")
    return text


# conf key -> (Conf field, parser). One table: the parser, the error text and the docs agree.
KEYS: dict[str, tuple[str, Callable[[str], object]]] = {
    "zkServersList": ("zk_servers", _zk_servers),
    "logLevel": ("log_level", _level),
    "logFile": ("log_file", str),
    "zkSessionTimeout": ("zk_session_timeout_ms", _int_range(400, 600_000)),
    "healthCheckInterval": ("health_interval_ms", _int_range(10, 600_000)),
    "healthCheckTimeout": ("health_timeout_ms", _int_range(10, 600_000)),
    "healthCheckFailures": ("health_failures", _int_range(1, 1000)),
    "redisStartTimeout": ("redis_start_timeout_ms", _int_range(0, 3_600_000)),
    "zkAuth": ("zk_auth", _user_password),
    "redisPassword": ("redis_password", _non_empty),
}


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if raw[:1] in ("'", '"'):
        raise ValueError(f"unterminated quote in {raw!r}")
    return _INLINE_COMMENT.sub("", raw)


def _line(name: str, lineno: int, stripped: str, seen: dict[str, int],
          values: dict[str, object]) -> str | None:
    """Read one ``key = value`` line into ``values``; the problem with it, if any."""
    where = f"{name}:{lineno}"
    key, eq, raw = stripped.partition("=")
    key = key.strip()
    if not eq or not key:
        return f"{where}: expected 'key = value', got {stripped[:60]!r}"
    if key not in KEYS:
        return f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})"
    if key in seen:
        return f"{where}: {key} given twice (first on line {seen[key]})"
    seen[key] = lineno
    field, parser = KEYS[key]
    try:
        value = _unquote(raw.strip())
        if not value:
            raise ValueError("empty value")
        values[field] = parser(value)
    except ValueError as exc:
        return f"{where}: bad {key}: {exc}"
    return None


def parse(text: str, name: str) -> Conf:
    """Parse conf ``text``; ``name`` is the file name used in error messages."""
    values: dict[str, object] = {}
    seen: dict[str, int] = {}  # key -> the line it was first given on
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            problem = _line(name, lineno, stripped, seen, values)
            if problem is not None:
                problems.append(problem)
    if "zkServersList" not in seen:
        problems.append(f"{name}: zkServersList is required (host:port,host:port)")
    if problems:
        raise ConfError(problems)
    return Conf(**values)  # type: ignore[arg-type]


def load(path: str) -> Conf:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError([f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) \
            from None
    return parse(text, path)
