"""``pyproxy``: the command line, kept thin. nutcracker's flags keep their meaning.

Exit codes: 0 clean stop or valid config, 1 invalid config (``-t``), 2 usage error (a bad
flag value too: checked before the config is read, with ``-t`` as without), 3 startup
failure. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import resource
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import __version__, address, config, example_config
from .detach import detach
from .server import StartupError, exporter_address, serve
from .workers import SINGLE_PROCESS, Role, supervise

DESCRIPTION = """\
pyproxy: a Redis sharding proxy (a twemproxy replacement) with ZooKeeper failover.

Keys go to the server nutcracker 0.5 would send them to, with any of its hashes and
distributions (ketama, modula, random). With the zookeeper_* pool keys, keys are hashed with
md5 into 4096 slots, the masters come from ZooKeeper and follow failover live.
"""

EPILOG = """\
examples:
  pyproxy -c conf/icd.yml            run the pools in icd.yml
  pyproxy -t -c conf/icd.yml         check the file and exit (0 = valid)
  pyproxy -c icd.yml -d -p icd.pid -o proxy.log
                                     run in the background, as the seed's nutcracker did

signals (each logs one line):
  SIGTERM, SIGINT   stop accepting, deregister from ZooKeeper, finish in-flight requests
                    (up to 5 s), exit 0
  SIGHUP            reopen the log file (after logrotate)
  SIGTTIN, SIGTTOU  raise / lower the log level by one (as nutcracker's -v, 0..11)

exit codes: 0 stopped cleanly or config valid, 1 config invalid (-t), 2 usage or a bad
            flag value (-t checks the flags too), 3 could not start (one line says why)

files: conf/example.yml documents every pool key (`pyproxy --example-config` prints it);
       conf/icd.yml is the seed's file (`pyproxy --example-config icd.yml`).
see also: pyproxy-watchdog --help, pyproxy-admin --help, README.md
"""

DEFAULT_METRICS = "127.0.0.1:22123"

# nutcracker's -v levels (0 emerg .. 11 pverb) mapped onto Python's.
_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
           4: logging.WARNING, 5: logging.INFO}
MAX_LEVEL = 11


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyproxy", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--conf-file", default="conf/nutcracker.yml", metavar="FILE",
                        help="configuration file (default: %(default)s)")
    parser.add_argument("-t", "--test-conf", action="store_true",
                        help="check the configuration for errors and exit")
    parser.add_argument("-v", "--verbose", type=int, default=5, metavar="N",
                        help="log level 0-11 as nutcracker's (default 5 = notice; 6+ = debug)")
    parser.add_argument("-o", "--output", metavar="FILE", help="log to FILE (default stderr)")
    parser.add_argument("-p", "--pid-file", metavar="FILE", help="write the process id to FILE")
    parser.add_argument("-d", "--daemonize", action="store_true", help="run in the background")
    parser.add_argument("-s", "--stats-port", type=int, metavar="PORT",
                        help="serve nutcracker-style JSON stats on PORT (off by default)")
    parser.add_argument("-a", "--stats-addr", default="127.0.0.1", metavar="ADDR",
                        help="address of the stats port (default %(default)s)")
    parser.add_argument("-D", "--describe-stats", action="store_true",
                        help="describe the nutcracker-style stats and exit")
    parser.add_argument("--metrics", nargs="?", const=DEFAULT_METRICS, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics "
                             f"(off by default; bare --metrics means {DEFAULT_METRICS})")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes sharing each listener with SO_REUSEPORT (default 1); "
                             "metrics/stats ports of worker i are the given port + i")
    parser.add_argument("--example-config", nargs="?", const="example.yml", metavar="NAME",
                        choices=("example.yml", "icd.yml"),
                        help="print the example config (every pool key with its default; "
                             "icd.yml: the seed's file) and exit")
    parser.add_argument("-m", "--mbuf-size", type=int, metavar="N",
                        help="accepted for nutcracker's command lines; pyproxy has no mbufs")
    parser.add_argument("-i", "--stats-interval", type=int, metavar="MS",
                        help="accepted for nutcracker's command lines; pyproxy's stats are "
                             "taken when asked for")
    parser.add_argument("-V", "--version", action="version", version=f"pyproxy {__version__}")
    return parser


def flag_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the flags' values, one line each (before anything starts)."""
    problems = []
    if args.workers < 1:
        problems.append(f"--workers {args.workers}: expected at least 1")
    if not 0 <= args.verbose <= 11:
        problems.append(f"-v {args.verbose}: expected a level 0-11 (5 = notice, 6+ = debug)")
    ports = []
    if args.stats_port is not None:
        if not 1 <= args.stats_port <= 65535:
            problems.append(f"-s {args.stats_port}: expected a port 1-65535 "
                            "(leave -s out to serve no stats)")
        else:
            ports.append(("-s", args.stats_port))
        if not address.valid_host(args.stats_addr):
            problems.append(f"-a {args.stats_addr}: expected an IPv4 address or a hostname")
    if args.metrics is not None:
        try:
            ports.append(("--metrics", exporter_address(args.metrics, "--metrics")[1]))
        except StartupError as exc:
            problems.append(str(exc))
    for flag, port in ports:  # worker i serves on the given port + i
        if port + args.workers - 1 > 65535 >= port:
            problems.append(f"{flag}: port {port} + {args.workers - 1} for the last of "
                            f"--workers {args.workers} is above 65535")
    return problems


def setup_logging(level: int, output: str | None) -> None:
    """Log to stderr or FILE; a FILE is reopened when logrotate moves it (and on SIGHUP)."""
    handler: logging.Handler
    if output:
        handler = logging.handlers.WatchedFileHandler(output)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_python_level(level))


def _python_level(level: int) -> int:
    return _LEVELS.get(level, logging.DEBUG)


def raise_open_files_limit() -> None:
    """Every client and backend connection is a file descriptor: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return
        logging.getLogger("pyproxy").info("open files limit raised from %d to %d", soft, hard)


def reopen_logs() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.reopenIfNeeded()


def signal_handlers(level: int) -> dict[signal.Signals, Callable[[], None]]:
    """nutcracker's runtime signals: SIGHUP reopens the log, SIGTTIN / SIGTTOU raise / lower
    the -v level by one within 0..11. Each logs one line, whatever the level (as nutcracker's
    log_safe does)."""
    current = level

    def say(text: str, *args: object) -> None:
        root = logging.getLogger()
        logging.getLogger("pyproxy").log(max(logging.INFO, root.level), text, *args)

    def hangup() -> None:
        reopen_logs()
        say("signal %d (SIGHUP) received, reopening log file", signal.SIGHUP)

    def change(sig: signal.Signals, step: int) -> Callable[[], None]:
        def handle() -> None:
            nonlocal current
            current = max(0, min(MAX_LEVEL, current + step))
            logging.getLogger().setLevel(_python_level(current))
            say("signal %d (%s) received, log level %s to %d", sig, sig.name,
                "up" if step > 0 else "down", current)
        return handle

    return {signal.SIGHUP: hangup, signal.SIGTTIN: change(signal.SIGTTIN, +1),
            signal.SIGTTOU: change(signal.SIGTTOU, -1)}


def main(argv: list[str] | None = None) -> int:
    # Until the event loop handles them: a SIGTTIN/SIGTTOU must not stop the process (their
    # default action, unless the process group is orphaned).
    for sig in (signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.describe_stats:
        from .observe.statsport import describe

        print(describe())
        return 0
    if args.example_config:
        sys.stdout.write(example_config(args.example_config))
        return 0
    problems = flag_problems(args)
    for line in problems:
        print(f"pyproxy: {line}", file=sys.stderr)
    if problems:
        return 2
    try:
        loaded = config.load(args.conf_file)
    except config.ConfigError as exc:
        for line in exc.errors:
            print(f"pyproxy: {line}", file=sys.stderr)
        return 1 if args.test_conf else 3
    if args.test_conf:
        print(f"pyproxy: configuration file '{args.conf_file}' syntax is ok")
        return 0
    try:
        setup_logging(args.verbose, args.output)
    except OSError as exc:
        print(f"pyproxy: cannot open log file {args.output}: {exc.strerror}", file=sys.stderr)
        return 3
    # -d: the command returns once the proxy listens (or exits 3 with the reason on stderr)
    ready = detach() if args.daemonize else None
    if args.pid_file:
        try:
            with open(args.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            print(f"pyproxy: cannot write pid file {args.pid_file}: {exc.strerror}",
                  file=sys.stderr)
            return 3
    logging.getLogger("pyproxy").info("pyproxy %s starting, pid %d, config %s", __version__,
                                      os.getpid(), args.conf_file)
    raise_open_files_limit()
    stats = f"{args.stats_addr}:{args.stats_port}" if args.stats_port else None

    def run_worker(role: Role) -> int:
        try:
            run(serve(loaded, metrics=args.metrics, stats=stats,
                      handlers=signal_handlers(args.verbose), role=role,
                      on_ready=ready if role.count == 1 else None))
        except StartupError as exc:
            print(f"pyproxy: {exc}", file=sys.stderr)
            logging.getLogger("pyproxy").error("startup failed: %s", exc)
            return 3
        return 0

    try:
        if args.workers > 1:
            if ready is not None:  # before the workers fork (they must not hold the pipe)
                ready()
            return supervise(args.workers, run_worker)
        return run_worker(SINGLE_PROCESS)
    finally:
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass


def run(main_coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        asyncio.run(main_coroutine)
    else:
        uvloop.run(main_coroutine)
