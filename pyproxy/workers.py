"""``--workers N``: N processes, one event loop each, sharing every listener.

Each worker binds the pool's listen address with SO_REUSEPORT, so the kernel spreads new
client connections over the workers; a connection stays with the worker that accepted it.
Every worker keeps its own backend connections and follows ZooKeeper with its own session
(so all follow the same topology) and registers its own node: worker 0 ``zookeeper_path``,
worker i ``<zookeeper_path>.worker<i>`` — each acknowledges the layout it routes by, which a
migration waits for (``cluster/topology``). Metrics and stats ports are per worker: worker i
serves on the configured port + i.

Every line a worker logs names it (``worker 1 pyproxy.server: ...``); the supervisor's own
lines are unnamed.

The supervisor (the parent) forks the workers before any event loop or thread exists,
forwards SIGTERM/SIGINT/SIGHUP/SIGTTIN/SIGTTOU to them, restarts a worker that dies
unexpectedly (at most once a second per worker), and exits when all workers have exited
after a stop signal — 0 if every worker exited 0.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pyproxy.workers")

STOP_TIMEOUT = 15.0  # after SIGTERM, how long workers get before SIGKILL
RESTART_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Role:
    """What one process is among the proxy's workers."""

    index: int = 0
    count: int = 1

    @property
    def reuse_port(self) -> bool:
        return self.count > 1

    def node(self, path: str) -> str:
        """The ZooKeeper node this worker registers for a pool's ``zookeeper_path``."""
        return path if self.index == 0 else f"{path}.worker{self.index}"

    def port(self, base: int) -> int:
        return base + self.index


SINGLE_PROCESS = Role()


def name_worker_in_logs(index: int) -> None:
    """From now on this process's log records carry ``worker <index>`` before the logger."""
    make_record = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        made.name = f"worker {index} {made.name}"
        return made

    logging.setLogRecordFactory(record)


def supervise(count: int, run_worker: Callable[[Role], int]) -> int:
    """Fork ``count`` workers running ``run_worker(role)``; return the exit status."""
    children: dict[int, Role] = {}
    started: dict[int, float] = {}
    stopping = False
    status = 0

    def spawn(role: Role) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            name_worker_in_logs(role.index)
            for sig in (signal.SIGTTIN, signal.SIGTTOU):  # until its loop handles them
                signal.signal(sig, signal.SIG_IGN)
            code = 1
            try:
                code = run_worker(role)
            finally:
                os._exit(code)
        children[pid] = role
        started[role.index] = time.monotonic()
        log.info("worker %d started, pid %d", role.index, pid)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, forward)
    for index in range(count):
        spawn(Role(index, count))
    deadline: float | None = None
    while children:
        if stopping and deadline is None:
            deadline = time.monotonic() + STOP_TIMEOUT
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if deadline is not None and time.monotonic() > deadline:
                for child in list(children):
                    os.kill(child, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.05)
            continue
        role = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            status = status or (code if code > 0 else 1 if code < 0 else 0)
            continue
        log.error("worker %d (pid %d) exited with %d; restarting", role.index, pid, code)
        if code == 3 and time.monotonic() - started[role.index] < RESTART_INTERVAL:
            forward(signal.SIGTERM, None)  # a worker that cannot start: give up cleanly
            status = 3
            continue
        time.sleep(max(0.0, RESTART_INTERVAL - (time.monotonic() - started[role.index])))
        spawn(role)
    return status
