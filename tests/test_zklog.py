"""kazoo's reconnect chatter is limited to one line per distinct message per interval."""

from __future__ import annotations

import logging
import time

from pyproxy.cluster.zklog import OncePerInterval


def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("kazoo.client", level, __file__, 1, message, None, None)


def test_repeats_are_dropped_until_the_interval_passes() -> None:
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    try:
        quiet = OncePerInterval(interval=0.2)
        dropped = record("Connection dropped: socket connection error: Connection refused")
        assert quiet.filter(dropped)
        assert not quiet.filter(dropped)
        assert quiet.filter(record("Connecting to 127.0.0.1(127.0.0.1):2181"))  # another one
        assert quiet.filter(record("fatal", logging.ERROR))
        assert quiet.filter(record("fatal", logging.ERROR))  # errors always pass
        time.sleep(0.25)
        assert quiet.filter(dropped)
        root.setLevel(logging.DEBUG)
        assert quiet.filter(dropped)  # -v 6+: everything passes
    finally:
        root.setLevel(saved)
