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
=====================  ========  ==========================================================

Invariants: every problem is a ``ConfError`` whose text is one line starting with
``FILE:LINE:`` (or ``FILE:`` for a missing key or an unreadable file); a key given twice is
an error, not "last one wins". Pure: no I/O besides reading the file.
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
    """A bad conf file; ``str()`` is one line naming the file and the line."""


@dataclass(frozen=True, slots=True)
class Conf:
    zk_servers: str
    log_level: str = "INFO"
    log_file: str | None = None
    zk_session_timeout_ms: int = 4000
    health_interval_ms: int = 500
    health_timeout_ms: int = 250
    health_failures: int = 3

    @property
    def session_timeout(self) -> float:
        return self.zk_session_timeout_ms / 1000.0

    @property
    def interval(self) -> float:
        return self.health_interval_ms / 1000.0

    @property
    def probe_timeout(self) -> float:
        return self.health_timeout_ms / 1000.0


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


# conf key -> (Conf field, parser). One table: the parser, the error text and the docs agree.
KEYS: dict[str, tuple[str, Callable[[str], object]]] = {
    "zkServersList": ("zk_servers", _zk_servers),
    "logLevel": ("log_level", _level),
    "logFile": ("log_file", str),
    "zkSessionTimeout": ("zk_session_timeout_ms", _int_range(400, 600_000)),
    "healthCheckInterval": ("health_interval_ms", _int_range(10, 600_000)),
    "healthCheckTimeout": ("health_timeout_ms", _int_range(10, 600_000)),
    "healthCheckFailures": ("health_failures", _int_range(1, 1000)),
}


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if raw[:1] in ("'", '"'):
        raise ValueError(f"unterminated quote in {raw!r}")
    return _INLINE_COMMENT.sub("", raw)


def parse(text: str, name: str) -> Conf:
    """Parse conf ``text``; ``name`` is the file name used in error messages."""
    values: dict[str, object] = {}
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, eq, raw = stripped.partition("=")
        key = key.strip()
        where = f"{name}:{lineno}"
        if not eq or not key:
            raise ConfError(f"{where}: expected 'key = value', got {stripped[:60]!r}")
        if key not in KEYS:
            raise ConfError(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})")
        if key in seen:
            raise ConfError(f"{where}: {key} given twice (first on line {seen[key]})")
        seen[key] = lineno
        field, parser = KEYS[key]
        try:
            value = _unquote(raw.strip())
            if not value:
                raise ValueError("empty value")
            values[field] = parser(value)
        except ValueError as exc:
            raise ConfError(f"{where}: bad {key}: {exc}") from None
    if "zk_servers" not in values:
        raise ConfError(f"{name}: zkServersList is required (host:port,host:port)")
    return Conf(**values)  # type: ignore[arg-type]


def load(path: str) -> Conf:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse(text, path)
