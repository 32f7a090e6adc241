"""``pyproxy-watchdog``: the seed's command line, kept.

    pyproxy-watchdog -f zoo-watchdog.conf -dc HOST:PORT ZK_SHARD_PATH [--metrics HOST:PORT]

* ``-f FILE``: the conf file (``conf.py``).
* ``-c HOST:PORT``: the redis this watchdog guards. It is also the node name other
  watchdogs read to ``REPLICAOF`` it, so it must be the address the other servers reach.
* ``-d``: the seed always passes it, glued to ``-c`` (``-dc``); its meaning in the original
  binary is not documented. Here the watchdog always runs in the foreground (run it under a
  supervisor, or with ``&`` as the seed does) and ``-d`` also copies the log to stderr.
* ``ZK_SHARD_PATH``: the shard, e.g. ``/redis/cluster/icd/redis-0000``; laid out by the
  admin (it is not created: a missing path is logged and waited for).
* ``--metrics HOST:PORT``: serve Prometheus metrics there (optional).

Exit codes: 0 stopped by SIGTERM/SIGINT, 2 usage or conf error, 3 startup failure (the
redis does not answer, the log file or metrics port cannot be opened). Every error is one
line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import NoReturn

from .. import __version__, address
from . import conf as confmod
from .daemon import Daemon
from .metrics import Metrics
from .probe import Conn, RedisError, check

PROG = "pyproxy-watchdog"
STARTUP_TIMEOUT = 1.0  # seconds the first health check may take


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {PROG} --help)")


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
               "/redis/cluster/icd/redis-0000\n\nexit codes: 0 stopped by SIGTERM/SIGINT, "
               "2 usage or conf error, 3 startup failure",
    )
    p.add_argument("-f", dest="conf", required=True, metavar="FILE", help="zoo-watchdog.conf")
    p.add_argument("-d", dest="stderr", action="store_true",
                   help="also log to stderr (the seed's -d; always runs in the foreground)")
    p.add_argument("-c", dest="redis", required=True, type=_address, metavar="HOST:PORT",
                   help="the redis to guard (as the other servers reach it)")
    p.add_argument("shard", type=_shard, metavar="ZK_SHARD_PATH",
                   help="e.g. /redis/cluster/icd/redis-0000")
    p.add_argument("--metrics", type=_address, metavar="HOST:PORT",
                   help="serve Prometheus metrics on HOST:PORT")
    p.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _logging(conf: confmod.Conf, me: str, to_stderr: bool) -> None:
    handlers: list[logging.Handler] = []
    if conf.log_file:
        try:
            handlers.append(logging.FileHandler(conf.log_file))
        except OSError as exc:
            raise confmod.ConfError(f"logFile {conf.log_file}: {exc.strerror or exc}") from None
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


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        conf = confmod.load(args.conf)
    except (UsageError, confmod.ConfError) as exc:
        return _fail(str(exc), 2)
    try:
        check(Conn(args.redis, max(conf.probe_timeout, STARTUP_TIMEOUT)))
    except RedisError as exc:
        return _fail(f"redis {args.redis} does not answer: {exc}", 3)
    try:
        _logging(conf, args.redis, args.stderr)
    except confmod.ConfError as exc:
        return _fail(str(exc), 3)
    metrics = Metrics()
    if args.metrics:
        host, port = address.parse(args.metrics)
        try:
            metrics.serve(host, port)
        except OSError as exc:
            return _fail(f"--metrics {args.metrics}: {exc.strerror or exc}", 3)
    daemon = Daemon(conf, args.redis, args.shard, metrics)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.post_event("stop")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("pyproxy.watchdog").info(
        "%s %s guarding %s under %s (session %d ms, check every %d ms, %d misses = down)",
        PROG, __version__, args.redis, args.shard, conf.zk_session_timeout_ms,
        conf.health_interval_ms, conf.health_failures)
    daemon.run()
    return 0
