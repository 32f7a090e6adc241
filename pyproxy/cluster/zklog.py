"""Keep kazoo's reconnect chatter readable: each distinct message at most once a minute.

While ZooKeeper is unreachable kazoo logs every connection attempt ("Connecting to ...",
"Connection dropped: ...") — two lines a second with the bounded backoff pyproxy uses, for as
long as the outage lasts. The proxy and the watchdog log their own session changes
(suspended, lost, connected), so repeating kazoo's lines adds nothing. At debug verbosity
everything passes.

Pure: a logging filter, no I/O of its own; shared by the proxy and the watchdog.
"""

from __future__ import annotations

import logging
import time

REPEAT_AFTER = 60.0  # seconds before the same message is let through again


class OncePerInterval(logging.Filter):
    def __init__(self, interval: float = REPEAT_AFTER):
        super().__init__()
        self.interval = interval
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        now = time.monotonic()
        if now - self.last.get(message, -self.interval) < self.interval:
            return False
        if len(self.last) > 100:  # a handful of hosts and errors; never grows past this
            self.last.clear()
        self.last[message] = now
        return True


_installed = OncePerInterval()


def quiet_kazoo_reconnects() -> None:
    """Install the filter on kazoo's client logger (idempotent)."""
    logger = logging.getLogger("kazoo.client")
    if _installed not in logger.filters:
        logger.addFilter(_installed)
