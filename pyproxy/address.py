"""``host:port``, read one way everywhere: config, ZooKeeper member names, flags, the watchdog.

A host is an IPv4 literal or a hostname whose labels are letters, digits, ``_`` and ``-``
(not at either end), 1-63 bytes each and 253 in all; a port is 1-65535 in decimal. No IPv6:
twemproxy's ``host:port`` syntax has none, and the last ``:`` splits. Anything else is an
``AddressError`` whose text says what was wrong, so a bad name read from ZooKeeper is
refused where it is read instead of failing later inside a connect.

Pure: no I/O.
"""

from __future__ import annotations

import re

_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")


class AddressError(ValueError):
    """Not a ``host:port``; ``str()`` says why in a few words."""


def valid_host(host: str) -> bool:
    if _IPV4.fullmatch(host):
        return all(int(part) <= 255 for part in host.split("."))
    if not host or re.fullmatch(r"[0-9.]+", host) or len(host) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in host.split("."))


def parse(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``("host", port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise AddressError("expected 'host:port'")
    if not valid_host(host):
        raise AddressError(f"bad host {host!r} (expected an IPv4 address or a hostname)")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise AddressError(f"bad port {port!r} (expected 1..65535)")
    return host, int(port)


def parse_endpoint(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"[host:]port"`` -> ``("host", port)``, a bare port meaning ``default_host``: the form
    of the exporters' flags (``--metrics 9121``, ``--metrics 127.0.0.2:9121``)."""
    host, _, port = text.rpartition(":")
    return parse(f"{host or default_host}:{port}")
