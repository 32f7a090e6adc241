"""``pyproxy-watchdog``: the seed's command line, kept.

    pyproxy-watchdog -f zoo-watchdog.conf -dc HOST:PORT ZK_SHARD_PATH [--metrics HOST:PORT]
                     [--daemon] [--pidfile PIDFILE]

* ``-f FILE``: the conf file (``conf.py``).
* ``-c HOST:PORT``: the redis this watchdog guards. It is also the node name other
  watchdogs read to ``REPLICAOF`` it, so it must be the address the other servers reach.
* ``-d``: the seed always passes it, glued to ``-c`` (``-dc``); its meaning in the original
  binary is not documented. Here ``-d`` copies the log to stderr.
* ``ZK_SHARD_PATH``: the shard, e.g. ``/redis/cluster/icd/redis-0000``; laid out by the
  admin (it is not created: a missing path is logged and waited for).
* ``--metrics HOST:PORT``: serve Prometheus metrics there (optional).
* ``--daemon``: run in the background. The command returns only once the watchdog is ready
  to run — conf read, log file open, pid file written, metrics port bound, its redis
  answering — with 0; until then every failure is one line on the caller's stderr and the
  exit status is 3, so an init script can trust it. Needs ``logFile`` (a daemon has no
  stderr). Without it the watchdog runs in the foreground (under systemd or a supervisor).
* ``--pidfile PIDFILE``: write the process id there (the daemon's, with ``--daemon``);
  removed when the watchdog stops.
* ``--example-config``: print the shipped zoo-watchdog.conf and exit.

Long options only for the additions: ``-d`` and ``-c`` keep the seed's meanings.

At start the redis is waited for, up to ``redisStartTimeout`` ms (conf; 60 s by default):
one log line when it does not answer at first, one when it does. Signals: SIGTERM/SIGINT
stop (the node is deleted first), SIGHUP reopens the log file (after logrotate; a file that
was moved away is also reopened at the next line).

Exit codes: 0 stopped by SIGTERM/SIGINT, 2 usage or conf error (every bad conf line, one
line each), 3 startup failure (the redis never answered, the log file, pid file or metrics
port cannot be opened). Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn

from .. import __version__, address, example_config
from ..detach import detach
from . import conf as confmod
from .daemon import Daemon
from .metrics import Metrics
from .probe import Conn, RedisError, check

PROG = "pyproxy-watchdog"
STARTUP_TIMEOUT = 1.0  # seconds one health check may take while waiting for the redis

log = logging.getLogger("pyproxy.watchdog")


class UsageError(Exception):
    pass


class StartupError(Exception):
    """A one-line reason the watchdog could not start (exit 3)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {PROG} --help)")


class _PrintExample(argparse.Action):
    """``--example-config``: print the shipped conf and exit, like ``--version``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        sys.stdout.write(example_config("zoo-watchdog.conf"))
        parser.exit()


def _address(text: str) -> str:
    try:
        address.parse(text)
    except address.AddressError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT: {exc}") from None
    return text


def _shard(text: str) -> str:
    if not text.startswith("/") or text == "/" or "//" in text or text.endswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a ZooKeeper path like /a/b")
    return text


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Health-check one redis, hold its ephemeral sequential node under a\n"
                    "ZooKeeper shard path, and make it master (lowest node) or replica.",
        epilog="example:\n  pyproxy-watchdog -f zoo-watchdog.conf -dc 172.17.32.105:6379 "
               "/redis/cluster/icd/redis-0000\n\n"
               "signals: SIGTERM/SIGINT stop (the node is deleted), SIGHUP reopens the log\n"
               "file: the conf documented: pyproxy-watchdog --example-config\n\n"
               "exit codes: 0 stopped by SIGTERM/SIGINT, 2 usage or conf error, "
               "3 startup failure",
    )
    p.add_argument("-f", dest="conf", required=True, metavar="FILE", help="zoo-watchdog.conf")
    p.add_argument("-d", dest="stderr", action="store_true",
                   help="also log to stderr (the seed's -d)")
    p.add_argument("-c", dest="redis", required=True, type=_address, metavar="HOST:PORT",
                   help="the redis to guard (as the other servers reach it)")
    p.add_argument("shard", type=_shard, metavar="ZK_SHARD_PATH",
                   help="e.g. /redis/cluster/icd/redis-0000")
    p.add_argument("--metrics", type=_address, metavar="HOST:PORT",
                   help="serve Prometheus metrics on HOST:PORT")
    p.add_argument("--daemon", action="store_true",
                   help="run in the background once ready (needs logFile in the conf)")
    p.add_argument("--pidfile", metavar="PIDFILE", help="write the process id to PIDFILE")
    p.add_argument("--example-config", action=_PrintExample,
                   help="print the example zoo-watchdog.conf (every key) and exit")
    p.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _logging(conf: confmod.Conf, me: str, to_stderr: bool) -> None:
    handlers: list[logging.Handler] = []
    if conf.log_file:
        try:
            handlers.append(logging.handlers.WatchedFileHandler(conf.log_file))
        except OSError as exc:
            raise StartupError(f"logFile {conf.log_file}: {exc.strerror or exc}") from None
    if to_stderr or not conf.log_file:
        handlers.append(logging.StreamHandler(sys.stderr))
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s [{me}] %(name)s: %(message)s")
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(conf.log_level)
    if conf.log_level != "DEBUG":
        logging.getLogger("kazoo").setLevel(logging.WARNING)


def _reopen_logs() -> None:
    """Reopen a log file that logrotate moved. Run in a thread of its own (see ``main``):
    it takes each handler's lock, which the main thread may hold where the signal came."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.acquire()
            try:
                handler.reopenIfNeeded()
            finally:
                handler.release()


def _write_pidfile(path: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartupError(f"--pidfile {path}: {exc.strerror or exc}") from None


def _wait_for_redis(redis: str, conf: confmod.Conf) -> None:
    """Return once the redis answers a health check, waiting up to ``redisStartTimeout``."""
    conn = Conn(redis, max(conf.probe_timeout, STARTUP_TIMEOUT), conf.redis_password)
    started = time.monotonic()
    deadline = started + conf.redis_start_timeout
    waited = False
    try:
        while True:
            try:
                check(conn)
            except RedisError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    after = f" after {conf.redis_start_timeout:.0f} s" if waited else ""
                    raise StartupError(f"redis {redis} does not answer{after}: {exc}") from None
                if not waited:
                    log.warning("redis %s does not answer (%s): waiting up to %.0f s for it",
                                redis, exc, conf.redis_start_timeout)
                    waited = True
                time.sleep(min(conf.interval, left))
                continue
            if waited:
                log.info("redis %s answers, after %.1f s", redis, time.monotonic() - started)
            return
    finally:
        conn.close()


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        conf = confmod.load(args.conf)
        if args.daemon and not conf.log_file:
            raise UsageError(f"--daemon needs logFile in {args.conf} (a daemon has no stderr)")
    except UsageError as exc:
        return _fail(str(exc), 2)
    except confmod.ConfError as exc:
        for line in exc.errors:
            _fail(line, 2)
        return 2
    ready = detach() if args.daemon else None
    metrics = Metrics()
    pidfile = None  # once written: removed whenever the watchdog exits
    logged = False  # the log is open: a startup failure is also written there
    try:
        _logging(conf, args.redis, args.stderr)
        logged = bool(conf.log_file)
        if args.pidfile:
            _write_pidfile(args.pidfile)
            pidfile = args.pidfile
        if args.metrics:
            host, port = address.parse(args.metrics)
            try:
                metrics.serve(host, port)
            except OSError as exc:
                raise StartupError(f"--metrics {args.metrics}: {exc.strerror or exc}") from None
        _wait_for_redis(args.redis, conf)
    except StartupError as exc:
        if logged:
            log.error("cannot start: %s", exc)
        _remove_pidfile(pidfile)
        return _fail(str(exc), 3)
    try:
        return _run(args, conf, metrics, ready)
    finally:
        _remove_pidfile(pidfile)


def _run(args: argparse.Namespace, conf: confmod.Conf, metrics: Metrics,
         ready: Callable[[], None] | None) -> int:
    daemon = Daemon(conf, args.redis, args.shard, metrics)

    def on_stop(signum: int, frame: FrameType | None) -> None:
        daemon.post_event("stop")

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=_reopen_logs, name="reopen-logs", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hangup)
    if ready is not None:
        ready()
    log.info("%s %s guarding %s under %s (session %d ms, check every %d ms, %d misses = down)"
             "%s", PROG, __version__, args.redis, args.shard, conf.zk_session_timeout_ms,
             conf.health_interval_ms, conf.health_failures,
             f", pid {os.getpid()}" if args.daemon or args.pidfile else "")
    daemon.run()
    return 0


def _remove_pidfile(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
