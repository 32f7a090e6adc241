#!/usr/bin/env python3
"""``make demo``: the seed's two-server cluster, on this machine's loopback.

The seed (shared/seeds/000, an operations guide) builds a 2-shard Redis cluster on two servers.
Here server A is 127.0.0.2 and server B is 127.0.0.3::

    ZooKeeper 127.0.0.1:2181 (one server; the seed has an ensemble)
    shard redis-0000 (slots 0-2047):    master A:6379 -> replica B:6380
    shard redis-0001 (slots 2048-4095): master B:6379 -> replica A:6380
    a watchdog beside each redis; a proxy on each server at :22121
    Prometheus metrics: proxies on :22123, the watchdog of redis :6379 on :9379, :6380 on :9380

Start order (stop order is the reverse): ZooKeeper; ``pyproxy-admin init`` (the layout); the
four redis; the watchdogs of the masters, then of the replicas (as the seed does, so each
master holds its shard's lowest sequence number); the two proxies.

    python demo/run.py                  bring it up, report failovers, Ctrl-C stops it all
    python demo/run.py --check          bring it up, SET/GET through both proxies, stop, exit 0

Invariants:

* Only 127.0.0.0/8 addresses. Every port is checked before anything starts: a taken port is
  one clear message (naming the process holding it, when /proc says) and nothing started.
* Every wait is bounded and fails with what it waited for and the tail of the log.
* Everything runs in its own session (Ctrl-C reaches only this script) with PR_SET_PDEATHSIG,
  so even a SIGKILLed orchestrator leaves nothing running. SIGINT/SIGTERM/SIGHUP stop every
  process by pid, in reverse start order (SIGTERM, then SIGKILL after 10 s; a second Ctrl-C
  kills at once). A redis restarted by hand from its redis.conf is stopped too (its pidfile).
* Logs and data of every process live in the run dir (default ``demo-run/``, git-ignored),
  which is wiped at the next start.

The Debian packages are installed by ``scripts/deps.py`` (``make demo`` runs it first);
kazoo and pyproxy are imported once the venv runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf" / "demo"
DEFAULT_RUN_DIR = REPO / "demo-run"
MARKER = ".pyproxy-demo"

sys.path.insert(0, str(REPO / "scripts"))
import deps  # noqa: E402  (scripts/deps.py: the Debian packages, shared with make test)

ZOOKEEPER_JAR = deps.ZOOKEEPER_JAR
SLF4J_SIMPLE_JAR = deps.SLF4J_SIMPLE_JAR
JVM_FLAGS = ("-Xms16m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:-UsePerfData",
             "-Djava.net.preferIPv4Stack=true")

ZK_HOST, ZK_PORT = "127.0.0.1", 2181
CLUSTER = "/redis/cluster/icd"
PROXY_NODES = "/redis/proxy/icd"
SERVER_A, SERVER_B = "127.0.0.2", "127.0.0.3"
PROXY_PORT = 22121
PROXY_METRICS_PORT = 22123  # pyproxy --metrics HOST:PORT (its default port)

# Bounds on every wait, in seconds.
ZK_START = 30.0
REDIS_START = 10.0
WATCHDOG_REGISTER = 20.0
REPLICATION_UP = 20.0
PROXY_START = 20.0
ADMIN_RUN = 30.0
STOP_GRACE = 10.0
POLL = 0.05


# --------------------------------------------------------------------------- the topology


@dataclass(frozen=True)
class RedisNode:
    server: str  # "A" or "B"
    host: str
    port: int
    shard: str
    slots: str
    replicaof: tuple[str, int] | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return f"redis {self.server}:{self.port}"

    @property
    def subdir(self) -> str:
        return f"{self.server.lower()}/redis-{self.port}"

    @property
    def metrics_port(self) -> int:
        """Its watchdog's Prometheus port: 9379 for the redis on 6379, 9380 for 6380."""
        return 9000 + self.port % 1000


REDIS = (
    RedisNode("A", SERVER_A, 6379, "redis-0000", "0-2047", None),
    RedisNode("A", SERVER_A, 6380, "redis-0001", "2048-4095", (SERVER_B, 6379)),
    RedisNode("B", SERVER_B, 6379, "redis-0001", "2048-4095", None),
    RedisNode("B", SERVER_B, 6380, "redis-0000", "0-2047", (SERVER_A, 6379)),
)
# The seed starts the masters' watchdogs first, then the replicas'.
WATCHDOG_ORDER = (REDIS[0], REDIS[2], REDIS[3], REDIS[1])
PROXIES = (("A", SERVER_A, "icd-a.yml"), ("B", SERVER_B, "icd-b.yml"))

PORTS: tuple[tuple[str, int, str], ...] = (
    (ZK_HOST, ZK_PORT, "ZooKeeper"),
    *((r.host, r.port, r.label) for r in REDIS),
    *((r.host, r.metrics_port, f"metrics of watchdog {r.server}:{r.port}") for r in REDIS),
    *((host, PROXY_METRICS_PORT, f"metrics of proxy {server}") for server, host, _ in PROXIES),
    *((host, PROXY_PORT, f"proxy {server}") for server, host, _ in PROXIES),
)

class DemoError(Exception):
    """A one-paragraph reason the demo cannot go on."""


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGHUP arrived: tear down."""


# --------------------------------------------------------------------------- ports and /proc


def _local_address(field: str) -> tuple[str, int]:
    """A ``local_address`` of /proc/net/tcp or tcp6 (``0100007F:0050``: the address as the
    kernel's 32-bit words, each in this machine's byte order) -> ``("127.0.0.1", 80)``."""
    hex_ip, hex_port = field.split(":")
    raw = b"".join(struct.pack("=I", int(hex_ip[i:i + 8], 16)) for i in range(0, len(hex_ip), 8))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), int(hex_port, 16)


def _takes(listening: str, host: str) -> bool:
    """Whether a listener on address ``listening`` takes ``host``'s port: the same address
    (IPv4-mapped too) or a wildcard."""
    return listening.removeprefix("::ffff:") in (host, "0.0.0.0", "::")


def _listener_inodes(host: str, port: int) -> set[str]:
    """The sockets listening on ``host:port`` (or on that port of every address)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) <= 9 or fields[3] != "0A":  # 0A: LISTEN
                    continue
                listening, listening_port = _local_address(fields[1])
                if listening_port == port and _takes(listening, host):
                    inodes.add(f"socket:[{fields[9]}]")
    return inodes


def _pids_holding(inodes: set[str], pids: list[int] | None = None) -> list[int]:
    found = []
    candidates = pids if pids is not None else [int(p) for p in os.listdir("/proc")
                                                 if p.isdigit()]
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        found.append(pid)
                        break
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(f.read().replace(b"\0", b" ").decode(errors="replace").split())
    except OSError:
        return ""


def port_holders(host: str, port: int) -> str:
    """' (pid 12: redis-server ...)' for whoever listens on ``host:port``; '' if /proc won't
    say."""
    pids = _pids_holding(_listener_inodes(host, port))
    if not pids:
        return ""
    return " (" + "; ".join(f"pid {p}: {cmdline(p)[:70]}" for p in pids) + ")"


def busy_ports() -> list[str]:
    """The demo's ports that cannot be bound right now, one line each."""
    busy = []
    for host, port, what in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                busy.append(f"{host}:{port} ({what}): {exc.strerror}{port_holders(host, port)}")
    return busy


def owns_listener(pid: int, host: str, port: int) -> bool:
    inodes = _listener_inodes(host, port)
    return bool(inodes) and bool(_pids_holding(inodes, [pid]))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- tiny RESP client


class RespError(Exception):
    pass


def redis_call(host: str, port: int, *args: str | bytes, timeout: float = 2.0) -> Any:
    """One command; the reply as str/int/None/list; ``-ERR`` raises RespError."""
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    frame = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(frame)
        with s.makefile("rb") as f:
            return _read_reply(f)


def _read_reply(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise RespError("connection closed before a full reply")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RespError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RespError(f"unexpected reply {line[:40]!r}")


def redis_info(host: str, port: int, section: str = "replication") -> dict[str, str]:
    text = redis_call(host, port, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def http_ok(host: str, port: int, path: str) -> bool:
    """Whether GET ``path`` answers 200 (the metrics endpoints)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return s.recv(64).split(b"\r\n", 1)[0].split()[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


def _holds(node: RedisNode, key: str, value: str) -> bool:
    return bool(redis_call(node.host, node.port, "GET", key) == value)


def srvr(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"srvr")
            chunks = []
            while data := s.recv(4096):
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- processes


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when this process dies (any death)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


_PREEXEC = _pdeathsig()


def tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc.strerror})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (log empty)"


class Proc:
    """One child process: own session, output appended to ``log``."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log, self.cwd, self.env = name, argv, log, cwd, env
        self.popen: subprocess.Popen[bytes] | None = None
        self.reported_exit = False

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"### {time.strftime('%H:%M:%S')} demo/run.py starts: "
                      f"{shlex.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_PREEXEC)
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_text(self) -> str:
        assert self.popen is not None
        rc = self.popen.returncode
        if rc is not None and rc < 0:
            return f"killed by {signal.Signals(-rc).name}"
        return f"exit code {rc}"

    def died(self, what: str) -> DemoError:
        return DemoError(f"{self.name} (pid {self.pid}) ended ({self.exit_text()}) while "
                         f"{what}; the end of {self.log}:\n{tail(self.log)}")


def stop_pid(pid: int, wait: Callable[[float], bool], hurry: Callable[[], bool]) -> str:
    """SIGTERM, wait up to STOP_GRACE (less if ``hurry()``), then SIGKILL. ``wait(t)`` -> gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and not hurry():
        if wait(0.05):
            return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait(5.0)
    return "killed (SIGKILL)" + ("" if hurry() else f" after {STOP_GRACE:.0f}s")


# --------------------------------------------------------------------------- the demo


def watchdog_timing() -> str:
    """What the demo's zoo-watchdog.conf means for a failover, in words."""
    try:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from pyproxy.watchdog import conf as watchdog_conf

        c = watchdog_conf.load(str(CONF / "zoo-watchdog.conf"))
        return (f"Its watchdog misses {c.health_failures} health checks "
                f"({c.health_interval_ms} ms apart) and deletes its node;")
    except Exception:  # the wording only; never stop the demo for it
        return "Its watchdog sees it fail and deletes its node;"


def _rel(path: Path | str) -> str:
    text = os.path.relpath(path)
    return text if not text.startswith("../..") else str(path)


class Demo:
    def __init__(self, run_dir: Path, out: Callable[[str], None] = print) -> None:
        self.run_dir = run_dir
        self.say = out
        self.procs: list[Proc] = []
        self.by_redis: dict[RedisNode, Proc] = {}
        self.proxies: dict[str, Proc] = {}
        self.zk: Any = None
        self.signal_count = 0
        self.bin = Path(sys.executable).parent
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signal_count += 1

    def install_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def check_interrupt(self) -> None:
        if self.signal_count:
            raise Interrupted()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.check_interrupt()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL, left))

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float,
                 proc: Proc | None = None) -> float:
        """Poll until true; the seconds it took. Raises DemoError on timeout or if ``proc``
        ends first."""
        t0 = time.monotonic()
        last_error = ""
        while True:
            self.check_interrupt()
            try:
                if predicate():
                    return time.monotonic() - t0
            except Exception as exc:  # refused connections, kazoo timeouts: not yet
                last_error = f" (last try: {type(exc).__name__}: {exc})"
            if proc is not None and not proc.running():
                raise proc.died(f"waiting for {what}")
            if time.monotonic() - t0 > timeout:
                where = f"; the end of {proc.log}:\n{tail(proc.log)}" if proc else ""
                raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}"
                                f"{last_error}{where}")
            time.sleep(POLL)

    # -- commands ----------------------------------------------------------------------------

    def tool(self, script: str, module: str) -> list[str]:
        path = self.bin / script
        return [str(path)] if path.exists() else [sys.executable, "-m", module]

    def shown(self, script: str, module: str) -> str:
        """How a person types it from the current directory."""
        path = self.bin / script
        if path.exists():
            return _rel(path) if Path(_rel(path)).parts[0] == ".venv" else str(path)
        return f"PYTHONPATH={_rel(REPO)} {_rel(sys.executable)} -m {module}"

    def spawn(self, name: str, argv: list[str], log: Path, cwd: Path) -> Proc:
        proc = Proc(name, argv, log, cwd, self.env)
        self.procs.append(proc)
        proc.start()
        self._write_pids()
        return proc

    def _write_pids(self) -> None:
        lines = [f"{p.pid} {p.name}" for p in self.procs if p.popen is not None]
        (self.run_dir / "pids").write_text("\n".join(lines) + "\n")

    # -- preparation -------------------------------------------------------------------------

    def preflight(self) -> None:
        missing = deps.missing_packages(deps.DEMO)
        if missing:
            raise DemoError(f"missing Debian packages: {' '.join(missing)}; install them "
                            "(`make demo` does it as root):\n    "
                            + deps.install_command(missing))
        self._check_previous_run()
        busy = busy_ports()
        if busy:
            raise DemoError("these ports are taken, so nothing was started:\n    "
                            + "\n    ".join(busy)
                            + "\nStop what holds them (or the other demo), then try again.")

    def _check_previous_run(self) -> None:
        pids_file = self.run_dir / "pids"
        if not pids_file.exists():
            return
        left = []
        for line in pids_file.read_text().splitlines():
            pid_text, _, name = line.partition(" ")
            if pid_text.isdigit() and alive(int(pid_text)) and \
                    str(self.run_dir) in cmdline(int(pid_text)) + self._cwd(int(pid_text)):
                left.append(f"pid {pid_text} ({name})")
        if left:
            raise DemoError(f"a demo is still running from {_rel(self.run_dir)}: "
                            + ", ".join(left) + "; stop it first (Ctrl-C in its terminal, or "
                            "kill those pids)")

    @staticmethod
    def _cwd(pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return ""

    def prepare_run_dir(self) -> None:
        d = self.run_dir
        if d.exists() and any(d.iterdir()) and not (d / MARKER).exists():
            raise DemoError(f"{d} exists and is not a demo run dir (no {MARKER}); "
                            "choose another --run-dir")
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        (d / MARKER).write_text("made by demo/run.py; wiped at its next start\n")

    # -- bring up ----------------------------------------------------------------------------

    def row(self, name: str, address: str, proc: Proc, took: float, extra: str = "") -> None:
        self.say(f"  {name:<16} {address:<16} pid {proc.pid:<7} ready in {took:.1f}s"
                 + (f"  {extra}" if extra else ""))

    def up(self) -> None:
        self.preflight()
        self.prepare_run_dir()
        self.say(f"pyproxy demo: the seed's cluster on loopback; logs and data in "
                 f"{_rel(self.run_dir)}/")
        self.start_zookeeper()
        self.connect_zk()
        self.admin_init()
        for node in REDIS:
            self.start_redis(node)
        for node in WATCHDOG_ORDER:
            self.start_watchdog(node)
        self.wait_replication()
        for server, host, conf in PROXIES:
            self.start_proxy(server, host, conf)

    def start_zookeeper(self) -> None:
        d = self.run_dir / "zookeeper"
        (d / "data").mkdir(parents=True)
        lines = []
        for line in (CONF / "zoo.cfg").read_text().splitlines():
            if line.startswith("dataDir="):
                line = f"dataDir={d / 'data'}"
            lines.append(line)
        (d / "zoo.cfg").write_text("\n".join(lines) + "\n")
        argv = [shutil.which("java") or "java", *JVM_FLAGS, "-cp",
                f"{ZOOKEEPER_JAR}:{SLF4J_SIMPLE_JAR}",
                "org.apache.zookeeper.server.ZooKeeperServerMain", str(d / "zoo.cfg")]
        proc = self.spawn("zookeeper", argv, d / "zookeeper.log", d)
        took = self.wait_for(f"ZooKeeper {ZK_HOST}:{ZK_PORT} to serve (srvr: Mode:)",
                             lambda: "Mode:" in srvr(ZK_HOST, ZK_PORT)
                             and owns_listener(proc.pid, ZK_HOST, ZK_PORT), ZK_START, proc)
        self.row("zookeeper", f"{ZK_HOST}:{ZK_PORT}", proc, took)

    def connect_zk(self) -> None:
        import logging

        from kazoo.client import KazooClient

        kazoo_log = logging.getLogger("kazoo")
        kazoo_log.addHandler(logging.NullHandler())
        kazoo_log.propagate = False
        self.zk = KazooClient(hosts=f"{ZK_HOST}:{ZK_PORT}", timeout=4.0,
                              connection_retry=dict(max_tries=-1, delay=0.1, backoff=2,
                                                    max_delay=1.0))
        try:
            self.zk.start(timeout=10)
        except Exception as exc:
            raise DemoError(f"cannot open a ZooKeeper session on {ZK_HOST}:{ZK_PORT}: "
                            f"{exc!r}") from None

    def zk_children(self, path: str) -> list[str]:
        from kazoo.exceptions import NoNodeError

        try:
            return list(self.zk.get_children_async(path).get(timeout=2.0))
        except NoNodeError:
            return []

    def admin_init(self) -> None:
        conf = CONF / "icd-a.yml"
        argv = [*self.tool("pyproxy-admin", "pyproxy.admin"), "init", "-c", str(conf)]
        log = self.run_dir / "admin-init.log"
        with open(log, "wb") as out:
            admin = subprocess.Popen(argv, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_for("pyproxy-admin init", lambda: admin.poll() is not None, ADMIN_RUN)
        finally:
            if admin.poll() is None:
                admin.kill()
            admin.wait()
        text = log.read_text(errors="replace").strip()
        if admin.returncode != 0:
            raise DemoError(f"`pyproxy-admin init -c {_rel(conf)}` failed "
                            f"(exit {admin.returncode}):\n{text}")
        self.say(f"  pyproxy-admin init -c {_rel(conf)}:")
        for line in text.splitlines():
            self.say(f"      {line}")

    def redis_conf(self, node: RedisNode, d: Path) -> Path:
        conf = d / "redis.conf"
        lines = [
            f"# {node.label}: written by demo/run.py after the seed's "
            f"redis-{'slave' if node.replicaof else 'master'}.conf",
            f"bind {node.host}",
            f"port {node.port}",
            "daemonize no",
            f"pidfile {d / 'redis.pid'}",
            f"logfile {d / 'redis.log'}",
            f"dir {d}",
            'save ""',
            "appendonly no",
            "repl-diskless-sync-delay 0",
        ]
        if node.replicaof:
            lines.append(f"replicaof {node.replicaof[0]} {node.replicaof[1]}")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start_redis(self, node: RedisNode) -> None:
        d = self.run_dir / node.subdir
        d.mkdir(parents=True)
        conf = self.redis_conf(node, d)
        proc = self.spawn(node.label, [shutil.which("redis-server") or "redis-server",
                                       str(conf)], d / "redis.log", d)
        self.by_redis[node] = proc
        took = self.wait_for(f"{node.label} to answer PING",
                             lambda: redis_call(node.host, node.port, "PING", timeout=0.5)
                             == "PONG" and owns_listener(proc.pid, node.host, node.port),
                             REDIS_START, proc)
        role = f"replica of {node.replicaof[0]}:{node.replicaof[1]}" if node.replicaof \
            else "master"
        self.row(node.label, node.address, proc, took, f"{node.shard} {role}")

    def start_watchdog(self, node: RedisNode) -> None:
        d = self.run_dir / node.subdir
        shutil.copyfile(CONF / "zoo-watchdog.conf", d / "zoo-watchdog.conf")
        shard_path = f"{CLUSTER}/{node.shard}"
        argv = [*self.tool("pyproxy-watchdog", "pyproxy.watchdog"), "-f", "zoo-watchdog.conf",
                "-dc", node.address, shard_path,
                "--metrics", f"{node.host}:{node.metrics_port}"]
        proc = self.spawn(f"watchdog {node.server}:{node.port}", argv, d / "zoo-watchdog.log",
                          d)
        prefix = f"{node.address}-"

        def registered() -> bool:
            return (any(c.startswith(prefix) for c in self.zk_children(shard_path))
                    and http_ok(node.host, node.metrics_port, "/metrics"))

        took = self.wait_for(f"the watchdog of {node.label} to register {shard_path}/{prefix}*",
                             registered, WATCHDOG_REGISTER, proc)
        nodes = sorted(c for c in self.zk_children(shard_path) if c.startswith(prefix))
        self.row(proc.name, node.address, proc, took,
                 f"{shard_path}/{nodes[-1] if nodes else '?'}")

    def wait_replication(self) -> None:
        for node in REDIS:
            if node.replicaof is None:
                continue
            master = f"{node.replicaof[0]}:{node.replicaof[1]}"

            def linked(node: RedisNode = node) -> bool:
                info = redis_info(node.host, node.port)
                return info.get("role") == "slave" and info.get("master_link_status") == "up"

            took = self.wait_for(f"{node.label} to replicate {master} (master_link_status:up)",
                                 linked, REPLICATION_UP, self.by_redis[node])
            self.say(f"  {'replication':<16} {node.address:<16} of {master:<19} "
                     f"up in {took:.1f}s")

    def start_proxy(self, server: str, host: str, conf_name: str) -> None:
        conf = CONF / conf_name
        d = self.run_dir / server.lower()
        argv = [*self.tool("pyproxy", "pyproxy"), "-c", str(conf),
                "--metrics", f"{host}:{PROXY_METRICS_PORT}"]
        proc = self.spawn(f"proxy {server}", argv, d / "proxy.log", d)
        self.proxies[server] = proc
        own = f"{PROXY_NODES}/{host}:{PROXY_PORT}"

        def ready() -> bool:
            return (redis_call(host, PROXY_PORT, "PING", timeout=0.5) == "PONG"
                    and owns_listener(proc.pid, host, PROXY_PORT)
                    and http_ok(host, PROXY_METRICS_PORT, "/metrics")
                    and self.zk.exists_async(own).get(timeout=2.0) is not None)

        took = self.wait_for(f"proxy {server} on {host}:{PROXY_PORT} to answer PING and "
                             f"register {own}", ready, PROXY_START, proc)
        self.row(proc.name, f"{host}:{PROXY_PORT}", proc, took,
                 f"-c {_rel(conf)}, registered {own}")

    # -- while running -----------------------------------------------------------------------

    def cluster_view(self) -> dict[str, str]:
        """shard -> one line: ZooKeeper's master and replicas, with each redis's own role."""
        view = {}
        for shard in ("redis-0000", "redis-0001"):
            members = []
            for child in self.zk_children(f"{CLUSTER}/{shard}"):
                address, _, seq = child.rpartition("-")
                if seq.isdigit():
                    members.append((int(seq), address))
            members.sort()
            described = []
            for _, address in members:
                host, _, port = address.rpartition(":")
                try:
                    role = redis_info(host, int(port), "replication").get("role", "?")
                except (OSError, RespError, ValueError):
                    role = "unreachable"
                described.append(f"{address} (redis says {role})")
            slots = "0-2047" if shard == "redis-0000" else "2048-4095"
            if described:
                rest = ", ".join(described[1:]) or "none"
                view[shard] = f"{shard} slots {slots}: master {described[0]}; replicas: {rest}"
            else:
                view[shard] = f"{shard} slots {slots}: NO LIVE REDIS"
        return view

    def admin_status(self) -> str:
        argv = [*self.tool("pyproxy-admin", "pyproxy.admin"), "status", "-c",
                str(CONF / "icd-a.yml")]
        try:
            r = subprocess.run(argv, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=ADMIN_RUN)
        except subprocess.TimeoutExpired:
            return "(pyproxy-admin status timed out)"
        return (r.stdout + r.stderr).decode(errors="replace").rstrip()

    def print_guide(self) -> None:
        admin = self.shown("pyproxy-admin", "pyproxy.admin")
        master = REDIS[0]
        replica = next(r for r in REDIS if r.shard == master.shard and r.replicaof)
        pid = self.by_redis[master].pid
        say = self.say
        say("")
        say(self.admin_status())
        say("")
        conf = _rel(CONF / "icd-a.yml")
        say("The cluster is up.")
        say("  Connect to either proxy:")
        say(f"    redis-cli -h {SERVER_A} -p {PROXY_PORT} set k v")
        say(f"    redis-cli -h {SERVER_B} -p {PROXY_PORT} get k")
        say("  Shards, masters, replicas and proxies as ZooKeeper and each redis see them; "
            "a key's shard:")
        say(f"    {admin} status -c {conf}")
        say(f"    {admin} slot -c {conf} k")
        say("  Metrics (Prometheus text):")
        say(f"    proxies:   http://{SERVER_A}:{PROXY_METRICS_PORT}/metrics  "
            f"http://{SERVER_B}:{PROXY_METRICS_PORT}/metrics")
        say("    watchdogs: " + "  ".join(f"http://{r.host}:{r.metrics_port}/metrics"
                                         for r in REDIS[:2]))
        say("               " + "  ".join(f"http://{r.host}:{r.metrics_port}/metrics"
                                         for r in REDIS[2:]))
        say(f"  Watch a failover: stop {master.label}, the master of {master.shard} "
            f"(slots {master.slots}):")
        say(f"    kill {pid}")
        say(f"    {watchdog_timing()} the")
        say(f"    watchdog of {replica.address} makes that replica the master, and both proxies "
            f"send slots {master.slots}")
        say("    to it. This window reports each change.")
        say("  Then bring the old master back: it rejoins as a replica of the new master:")
        say(f"    redis-server {_rel(self.run_dir / master.subdir / 'redis.conf')} "
            "--daemonize yes")
        run = _rel(self.run_dir)
        say(f"  Logs: {run}/zookeeper/zookeeper.log, {run}/{{a,b}}/proxy.log,")
        say(f"        {run}/{{a,b}}/redis-{{6379,6380}}/{{redis.log,zoo-watchdog.log}}")
        say("Ctrl-C stops everything.")
        say("")

    def monitor(self) -> None:
        """Until a signal: report processes that end and every change ZooKeeper shows."""
        last: dict[str, str] = self.cluster_view()
        for line in last.values():
            self.say(f"[{time.strftime('%H:%M:%S')}] {line}")
        zk_ok = True
        hand_pids: dict[RedisNode, int] = {}
        while True:
            for proc in self.procs:
                if not proc.running() and not proc.reported_exit:
                    proc.reported_exit = True
                    self.say(f"[{time.strftime('%H:%M:%S')}] {proc.name} (pid {proc.pid}) "
                             f"ended: {proc.exit_text()}")
            for node in REDIS:
                pid = self.hand_started_redis(node)
                if pid and hand_pids.get(node) != pid:
                    hand_pids[node] = pid
                    self.say(f"[{time.strftime('%H:%M:%S')}] {node.label} is running again "
                             f"(pid {pid}, started by hand)")
            try:
                view = self.cluster_view()
                if not zk_ok:
                    self.say(f"[{time.strftime('%H:%M:%S')}] ZooKeeper answers again")
                zk_ok = True
            except Exception as exc:  # kazoo timeouts, connection loss: say it once
                if zk_ok:
                    self.say(f"[{time.strftime('%H:%M:%S')}] ZooKeeper does not answer "
                             f"({type(exc).__name__})")
                zk_ok = False
                view = last
            for shard, line in view.items():
                if last.get(shard) != line:
                    self.say(f"[{time.strftime('%H:%M:%S')}] {line}")
                    last[shard] = line
            self.sleep(0.5)

    def hand_started_redis(self, node: RedisNode) -> int | None:
        """The pid of a redis-server started by hand from this node's redis.conf, if any."""
        proc = self.by_redis.get(node)
        if proc is None or proc.running():
            return None
        pidfile = self.run_dir / node.subdir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid != proc.pid and alive(pid) and "redis-server" in cmdline(pid) \
                and owns_listener(pid, node.host, node.port):
            return pid
        return None

    # -- check mode --------------------------------------------------------------------------

    def check(self) -> None:
        """SET k v / GET k through both proxies, and one key per shard, checked on the
        masters and replicas themselves."""
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from pyproxy.routing.hashing import slot_of

        a, b = SERVER_A, SERVER_B
        steps = []

        def expect(host: str, args: tuple[str, ...], want: object) -> None:
            got = redis_call(host, PROXY_PORT, *args)
            steps.append(f"{host}:{PROXY_PORT} {' '.join(args)} -> {got!r}")
            if got != want:
                raise DemoError(f"through the proxy {host}:{PROXY_PORT}, {' '.join(args)} "
                                f"answered {got!r}, expected {want!r}\n  " + "\n  ".join(steps))

        expect(a, ("SET", "k", "v"), "OK")
        expect(a, ("GET", "k"), "v")
        expect(b, ("GET", "k"), "v")
        expect(b, ("SET", "k", "v2"), "OK")
        expect(a, ("GET", "k"), "v2")
        # one key on each shard, written through one proxy, read back through the other and
        # from the shard's master and replica directly
        for node in (REDIS[0], REDIS[2]):
            start, end = (int(x) for x in node.slots.split("-"))
            key = next(f"demo:{node.shard}:{i}" for i in range(10000)
                       if start <= slot_of(f"demo:{node.shard}:{i}".encode()) <= end)
            writer, reader = (a, b) if node.server == "A" else (b, a)
            expect(writer, ("SET", key, node.shard), "OK")
            expect(reader, ("GET", key), node.shard)
            if redis_call(node.host, node.port, "GET", key) != node.shard:
                raise DemoError(f"{key} (slot {slot_of(key.encode())}) is not on "
                                f"{node.shard}'s master {node.address}")
            replica = next(r for r in REDIS if r.shard == node.shard and r.replicaof)
            self.wait_for(f"{key} to reach the replica {replica.address}",
                          functools.partial(_holds, replica, key, node.shard), 5.0)
            steps.append(f"{key}: on master {node.address} and replica {replica.address}")
        for line in steps:
            self.say(f"  {line}")
        self.say("OK")

    # -- tear down ---------------------------------------------------------------------------

    def down(self) -> list[int]:
        """Stop everything, reverse start order; every pid it stopped (or found ended)."""
        def hurry() -> bool:  # a second Ctrl-C: SIGKILL now
            return self.signal_count > 1

        stopped: list[int] = []
        if self.zk is not None:
            with contextlib.suppress(Exception):
                self.zk.stop()
                self.zk.close()
            self.zk = None
        if self.procs:
            self.say("stopping, in reverse order:")
        redis_of = {id(proc): node for node, proc in self.by_redis.items()}
        for proc in reversed(self.procs):
            if proc.popen is None:
                continue
            popen = proc.popen
            node = redis_of.get(id(proc))
            by_hand = self.hand_started_redis(node) if node is not None else None
            if by_hand:  # a redis restarted by hand from its redis.conf takes its place
                how = stop_pid(by_hand, functools.partial(self._wait_gone, by_hand), hurry)
                self.say(f"  {proc.name:<18} pid {by_hand:<7} {how} (started by hand; "
                         f"pid {proc.pid} had ended)")
                stopped.append(by_hand)
            if popen.poll() is not None:
                if not by_hand:
                    self.say(f"  {proc.name:<18} pid {proc.pid:<7} had ended "
                             f"({proc.exit_text()})")
            else:
                how = stop_pid(popen.pid, functools.partial(self._wait_popen, popen), hurry)
                self.say(f"  {proc.name:<18} pid {proc.pid:<7} {how}")
            stopped.append(proc.pid)
        if self.procs:
            (self.run_dir / "pids").unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _wait_popen(popen: subprocess.Popen[bytes], timeout: float) -> bool:
        try:
            popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


# --------------------------------------------------------------------------- main


def say(line: str, err: bool = False) -> None:
    """Print, never failing: with `make demo | tee log`, Ctrl-C kills tee too, and the
    teardown must go on with nowhere to write."""
    try:
        print(line, file=sys.stderr if err else sys.stdout, flush=True)
    except (BrokenPipeError, OSError):
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, (sys.stderr if err else sys.stdout).fileno())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="demo/run.py",
        description="The seed's two-server pyproxy cluster on loopback: ZooKeeper, four redis, "
                    "four watchdogs, two proxies. Ctrl-C stops everything it started.",
    )
    parser.add_argument("--check", action="store_true",
                        help="bring it up, SET/GET through both proxies, print OK, tear down")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help="where logs and data go (default: %(default)s); wiped at start")
    args = parser.parse_args(argv)
    demo = Demo(args.run_dir.resolve(), out=say)
    demo.install_signals()
    code = 0
    try:
        demo.up()
        if args.check:
            demo.check()
        else:
            demo.print_guide()
            demo.monitor()
    except Interrupted:
        say("\ninterrupted")
    except DemoError as exc:
        say(f"demo: {exc}", err=True)
        code = 1
    except Exception as exc:  # a bug here must still tear down what was started
        import traceback

        say(f"demo: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}", err=True)
        code = 1
    finally:
        stopped = demo.down()
        left = [pid for pid in stopped if alive(pid)]
        if left:
            say(f"demo: still running after SIGKILL: {left}", err=True)
            code = 1
        elif demo.procs:
            say(f"nothing left running ({len(stopped)} processes); logs in "
                f"{_rel(demo.run_dir)}/")
    return code


if __name__ == "__main__":
    sys.exit(main())
