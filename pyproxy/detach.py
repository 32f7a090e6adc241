"""Going to the background the way an init script can trust: ``detach()``.

The command that was run stays in the foreground until the daemon says it is ready (its
listeners bound, its configuration checked): then it exits 0. A daemon that fails before
that says why on stderr — still the caller's — and the command exits 3. Used by
``pyproxy -d`` and ``pyproxy-watchdog --daemon``. Double fork and ``setsid``, as nutcracker
does, so the daemon never gets a controlling terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def detach() -> Callable[[], None]:
    """Go to the background; the caller's process stays until the daemon is ready.

    Returns ``ready()``, which points the daemon's stdin, stdout and stderr at /dev/null and
    lets the caller's process exit 0. A daemon that exits before calling it has said why on
    stderr (still the caller's), and the caller's process exits 3."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    if os.fork() > 0:  # the command that was run: wait for the daemon's word
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            os._exit(0 if pipe.read() == b"ready" else 3)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:  # the session leader leaves, so the daemon never gets a terminal
        os._exit(0)

    def ready() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        os.write(write_end, b"ready")
        os.close(write_end)

    return ready
