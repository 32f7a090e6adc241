"""Real server processes for integration tests and benchmarks.

Plain classes, no pytest: redis-server, ZooKeeper 3.8, nutcracker and our own proxy, each run
as a child process on a 127.0.0.0/8 address, in its own temporary directory, with its output in
a log file there. Every wait is bounded and fails with the tail of that log.

Life cycle of every class: ``start()`` (returns self), ``stop()`` (SIGTERM, then SIGKILL),
``kill()`` (SIGKILL), ``pause()``/``resume()`` (SIGSTOP/SIGCONT), ``close()`` (stop + remove
the temp dir). A context manager starts on entry and closes on exit. ``stop_all()`` closes
whatever is still registered (the pytest session finalizer and an ``atexit`` hook call it).

Ports chosen here (``port=None``) come from binding port 0; when a start then fails because
another process took the port in between, it is retried on a new port.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

POLL_INTERVAL = 0.02
STOP_TIMEOUT = 5.0
START_RETRIES = 5
LOG_TAIL_LINES = 40

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
SLF4J_SIMPLE_JAR = "/usr/share/java/slf4j-simple.jar"
NUTCRACKER_FALLBACK = "/usr/sbin/nutcracker"
REPO_ROOT = Path(__file__).resolve().parent.parent

_ADDR_IN_USE = re.compile(r"address already in use|EADDRINUSE", re.IGNORECASE)


# --------------------------------------------------------------------------- errors


class ServerError(RuntimeError):
    """A server failed to start, become ready or stop in time."""


class PortInUseError(ServerError):
    """The server could not bind its port (EADDRINUSE)."""


class MissingDependencyError(ServerError):
    """A binary or jar the fixtures need is not installed."""


# --------------------------------------------------------------------------- helpers


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_LISTEN_PORTS = range(10000, _EPHEMERAL_LOW) if _EPHEMERAL_LOW > 12000 else range(0)
_PORT_CHOICE = random.SystemRandom()  # not the seeded `random` hypothesis replays
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago, drawn at random below the
    kernel's ephemeral range and never twice by this process: a port taken by bind(0)
    comes from the range outgoing connections draw their source ports from, and one of
    them (nutcracker's, a client's) could take it before the server meant for it binds."""
    _check_loopback(host)
    for _ in range(100 if _LISTEN_PORTS else 0):
        port = _PORT_CHOICE.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT is not free
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports_in_a_row(count: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """The first of ``count`` consecutive TCP ports free on ``host`` a moment ago (what
    ``--workers`` needs of ``--metrics``: worker i serves on the port + i)."""
    for _ in range(attempts):
        first = free_port(host)
        if first + count > 65536:
            continue
        following = range(first + 1, first + count)
        if _handed_out.intersection(following):
            continue
        try:
            for port in following:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((host, port))
        except OSError:
            continue
        _handed_out.update(following)
        return first
    raise ServerError(f"no {count} consecutive free ports on {host} in {attempts} attempts")


def _check_loopback(host: str) -> None:
    if not host.startswith("127."):
        raise ValueError(f"test servers only run on 127.0.0.0/8, not {host!r}")


def _port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _request(host: str, port: int, payload: bytes, timeout: float = 0.5) -> bytes:
    """Send ``payload`` and read until EOF, ``timeout`` or 64 KiB; b"" on any socket error."""
    chunks: list[bytes] = []
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(payload)
            while sum(map(len, chunks)) < 65536:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except OSError:
        pass
    return b"".join(chunks)


def _redis_pong(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)  # -NOAUTH: a server with --requirepass is up all the same
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
    except OSError:
        return False


def _listen_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP ``port`` (any address), or None without /proc."""
    inodes: set[str] = set()
    seen = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A":  # LISTEN
                        if int(fields[1].rsplit(":", 1)[1], 16) == port:
                            inodes.add(fields[9])
            seen = True
        except OSError:
            continue
    return inodes if seen else None


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``R``, ``S``, ``T`` stopped, ``Z`` zombie...), or
    None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie."""
    return process_state(pid) not in (None, "Z")


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, ()))
    return out


def owns_listener(pid: int, port: int) -> bool:
    """Whether ``pid`` (or a child of it) holds a socket listening on ``port``: so readiness
    never mistakes another process that already had the port for ours. True without /proc."""
    inodes = _listen_inodes(port)
    if inodes is None:
        return True
    if not inodes:
        return False
    wanted = {f"socket:[{i}]" for i in inodes}
    for p in process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p}/fd/{fd}") in wanted:
                    return True
            except OSError:
                continue
    return False


def pool_config(port: int, servers: list[str], host: str = "127.0.0.1", **keys: Any) -> str:
    """A pyproxy config: pool ``alpha`` (md5, modula, redis) on host:port over ``servers``
    ("host:port:range-or-weight"); ``keys`` add pool settings in order (e.g. timeout=500)."""
    lines = ["alpha:", f"  listen: {host}:{port}", "  hash: md5", "  distribution: modula",
             "  redis: true"]
    lines += [f"  {key}: {value}" for key, value in keys.items()]
    lines += ["  servers:", *(f"   - {server}" for server in servers)]
    return "\n".join(lines) + "\n"


def two_shards(a: Any, b: Any) -> list[str]:
    """``servers`` entries putting slots 0-2047 on ``a`` and 2048-4095 on ``b``."""
    return [f"{a.address}:0-2047", f"{b.address}:2048-4095"]


def redis_client(host: str, port: int, **kwargs: Any) -> Any:
    """A ``redis.Redis`` that works through proxies too: RESP2 and no CLIENT SETINFO on connect
    (redis-py 8 defaults to ``HELLO 3`` + ``CLIENT SETINFO``, which twemproxy answers by closing
    the connection). ``kwargs`` override, e.g. ``protocol=3``."""
    import inspect

    import redis

    kwargs.setdefault("socket_timeout", 5)
    kwargs.setdefault("protocol", 2)
    params = inspect.signature(redis.Redis.__init__).parameters
    if "driver_info" in params:
        kwargs.setdefault("driver_info", None)
    elif "lib_name" in params:
        kwargs.setdefault("lib_name", None)
        kwargs.setdefault("lib_version", None)
    return redis.Redis(host=host, port=port, **kwargs)


def _tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if path is None:
        return "(no log)"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(log {path} unreadable: {e})"
    return "\n".join(text.splitlines()[-lines:]) or "(log empty)"


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    proc: ManagedProcess | subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``predicate`` every 20 ms until true; raise ServerError with the log tail on timeout
    or as soon as ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None:
            popen = proc.proc if isinstance(proc, ManagedProcess) else proc
            if popen is not None and popen.poll() is not None:
                _raise_died(proc, popen.returncode, what, log_path)
        if time.monotonic() >= deadline:
            raise ServerError(
                f"timed out after {timeout:.1f}s waiting for {what}\n"
                f"--- log tail ---\n{_proc_tail(proc, log_path)}"
            )
        time.sleep(POLL_INTERVAL)


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 10.0,
    proc: ManagedProcess | subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until ``host:port`` accepts a TCP connection. ``proc`` (one of our servers, or a
    Popen with ``log_path``) is watched: if it dies first, raise with its log tail; and the
    listener must be its own (or a child's), not another process's that held the port."""
    pid = proc.pid if proc is not None else None

    def ready() -> bool:
        if not _port_accepts(host, port):
            return False
        return pid is None or owns_listener(pid, port)

    what = f"{host}:{port} to accept" + (f" (listener owned by pid {pid})" if pid else "")
    wait_until(ready, timeout, what, proc, log_path)


def _proc_tail(proc: object, log_path: Path | None) -> str:
    if isinstance(proc, ManagedProcess):
        return proc.log_tail()
    return _tail(log_path)


def _raise_died(proc: object, rc: int | None, what: str, log_path: Path | None) -> None:
    tail = _proc_tail(proc, log_path)
    cls = PortInUseError if _ADDR_IN_USE.search(tail) else ServerError
    name = getattr(proc, "name", "process")
    raise cls(f"{name} exited with code {rc} while waiting for {what}\n--- log tail ---\n{tail}")


def require_binary(name: str, package: str, fallback: str | None = None) -> str:
    path = shutil.which(name)
    if path is None and fallback and os.access(fallback, os.X_OK):
        path = fallback
    if path is None:
        raise MissingDependencyError(
            f"{name} not found on PATH: install the Debian package '{package}' "
            f"(apt-get install -y {package})"
        )
    return path


def require_file(path: str, package: str) -> str:
    if not os.path.exists(path):
        raise MissingDependencyError(
            f"{path} is missing: install the Debian package '{package}' "
            f"(apt-get install -y {package})"
        )
    return path


# --------------------------------------------------------------------------- registry

_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()


def _register(obj: ManagedProcess) -> None:
    with _live_lock:
        _live[id(obj)] = obj


def _unregister(obj: ManagedProcess) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


def live_servers() -> list[ManagedProcess]:
    with _live_lock:
        return list(_live.values())


def stop_all() -> list[str]:
    """Close every server still registered (stopping it by pid); return their descriptions."""
    left = live_servers()
    for obj in left:
        with contextlib.suppress(Exception):
            obj.close()
    return [repr(obj) for obj in left]


atexit.register(stop_all)


# --------------------------------------------------------------------------- base class


class ManagedProcess:
    """One child process with a temp dir and a log file. Subclasses define ``_command()`` and
    ``_wait_ready()``; ``_pick_ports()`` re-picks auto-chosen ports when a start must be retried."""

    name = "process"
    log_name = "server.log"
    stop_timeout = STOP_TIMEOUT

    def __init__(self, tmpdir: str | os.PathLike[str] | None = None) -> None:
        self._own_dir = tmpdir is None
        self.dir = Path(tmpdir) if tmpdir is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self._paused = False
        self._clients: list[Any] = []

    # -- overridable
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _preexec(self) -> Callable[[], None] | None:
        """Run in the child between fork and exec (resource limits)."""
        return None

    def _prepare(self) -> None:
        """Write config files etc. before each spawn."""

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def _can_repick_ports(self) -> bool:
        return False

    def _pick_ports(self) -> None:
        pass

    # -- paths
    def _ensure_dir(self) -> Path:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix=f"pyproxy-{self.name}-"))
            self._own_dir = True
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir

    @property
    def log_path(self) -> Path | None:
        return self.dir / self.log_name if self.dir is not None else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def log_text(self) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_text("utf-8", "replace")

    def _owns_port(self) -> bool:
        port = getattr(self, "port", None)
        return self.proc is not None and port is not None and owns_listener(self.proc.pid, port)

    def _track(self, client: Any) -> Any:
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()

    # -- state
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- life cycle
    def start(self, timeout: float = 10.0) -> ManagedProcess:
        if self.is_running():
            raise ServerError(f"{self!r} is already running")
        tries = START_RETRIES if self._can_repick_ports() else 1
        for attempt in range(tries):
            try:
                self._spawn_and_wait(timeout)
                return self
            except PortInUseError:
                self._reap()
                if attempt == tries - 1:
                    raise
                self._pick_ports()
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, timeout: float) -> None:
        self._ensure_dir()
        self._prepare()
        cmd = self._command()
        t0 = time.monotonic()
        log_path = self.log_path
        assert log_path is not None
        with open(log_path, "ab") as log:
            log.write(f"### {time.strftime('%H:%M:%S')} start: {shlex.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.dir),
                env=self._env(),
                preexec_fn=self._preexec(),
            )
        self._paused = False
        _register(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self._reap()
            raise
        self.start_seconds = time.monotonic() - t0

    def _reap(self) -> None:
        """SIGKILL (if needed) and wait, without touching the registry."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM and wait; SIGKILL after ``timeout`` (default ``stop_timeout``).
        Returns True if the process exited by itself (or was not running), False if it had to
        be killed."""
        timeout = self.stop_timeout if timeout is None else timeout
        clean = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
                if self._paused:  # a stopped process only sees SIGTERM once continued
                    self.proc.send_signal(signal.SIGCONT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                clean = False
                self._reap()
        elif self.proc is not None:
            self.proc.wait()
        self._paused = False
        self._after_stop()
        return clean

    def kill(self) -> None:
        """SIGKILL and wait (a paused process dies too)."""
        self._reap()
        self._paused = False
        self._after_stop()

    def _after_stop(self) -> None:
        pass

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False

    def _signal(self, sig: int) -> None:
        if not self.is_running():
            raise ServerError(f"{self!r} is not running")
        assert self.proc is not None
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Close the clients it handed out, stop, remove the temp dir (if this object created
        it) and forget the process."""
        try:
            self.close_clients()
            self.stop()
        finally:
            _unregister(self)
            if self._own_dir and self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited({self.returncode})"
        if self._paused:
            state = "paused"
        return f"<{type(self).__name__} {self._where()} pid={self.pid} {state}>"

    def _where(self) -> str:
        return ""


# --------------------------------------------------------------------------- redis


class RedisServer(ManagedProcess):
    """``redis-server`` without persistence on ``host:port`` (port 0/None = pick a free one).
    ``extra_args`` come last, so they override the defaults (e.g. ``--replicaof H P``)."""

    name = "redis"
    log_name = "redis.log"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        tmpdir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(tmpdir)
        _check_loopback(host)
        self.host = host
        self._auto_port = not port
        self.port = port or free_port(host)
        self.extra_args = tuple(extra_args)
        self._binary = require_binary("redis-server", "redis-server")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _where(self) -> str:
        return self.address

    def _can_repick_ports(self) -> bool:
        return self._auto_port

    def _pick_ports(self) -> None:
        self.port = free_port(self.host)

    def _command(self) -> list[str]:
        assert self.dir is not None
        return [
            self._binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
            *self.extra_args,
        ]

    def _wait_ready(self, timeout: float) -> None:
        wait_until(lambda: _redis_pong(self.host, self.port) and self._owns_port(), timeout,
                   f"redis {self.address} to answer PING", self)

    def start(self, timeout: float = 10.0) -> RedisServer:
        super().start(timeout)
        return self

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop if running, then start empty on the same host:port."""
        if self.is_running():
            self.stop()
        if self.dir is not None:
            for entry in self.dir.iterdir():
                if entry.name == self.log_name:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self._spawn_and_wait(timeout)
        return self

    def client(self, **kwargs: Any) -> Any:
        """``redis_client()`` for this server (socket_timeout=5, RESP2); closed by ``close()``."""
        return self._track(redis_client(self.host, self.port, **kwargs))


# --------------------------------------------------------------------------- zookeeper


class ZooKeeperServer(ManagedProcess):
    """A standalone ZooKeeper 3.8 on 127.0.0.1 tuned to start fast (see spec/testing.md)."""

    name = "zookeeper"
    log_name = "zookeeper.log"
    host = "127.0.0.1"
    JVM_FLAGS = (
        "-Xms16m",
        "-Xmx128m",
        "-XX:+UseSerialGC",
        "-XX:-UsePerfData",
        "-Djava.net.preferIPv4Stack=true",
    )

    def __init__(
        self,
        port: int | None = None,
        tmpdir: str | os.PathLike[str] | None = None,
        config_overrides: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(tmpdir)
        self._auto_port = not port
        self.port = port or free_port(self.host)
        self.config_overrides = dict(config_overrides or {})
        self._java = require_binary("java", "default-jre-headless")
        self._jar = require_file(ZOOKEEPER_JAR, "zookeeper")
        self._slf4j = require_file(SLF4J_SIMPLE_JAR, "libslf4j-java")

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def _where(self) -> str:
        return self.hosts

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def _can_repick_ports(self) -> bool:
        return self._auto_port

    def _pick_ports(self) -> None:
        self.port = free_port(self.host)

    def config(self) -> dict[str, object]:
        cfg: dict[str, object] = {
            "tickTime": 200,
            "dataDir": str(self.data_dir),
            "clientPort": self.port,
            "clientPortAddress": self.host,
            "maxClientCnxns": 0,
            "minSessionTimeout": 400,
            "maxSessionTimeout": 60000,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "ruok,stat,srvr,mntr,cons,conf",
            "forceSync": "no",
            "preAllocSize": 4096,
        }
        cfg.update(self.config_overrides)
        return cfg

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={v}\n" for k, v in self.config().items())
        (self._ensure_dir() / "zoo.cfg").write_text(text)

    def _command(self) -> list[str]:
        assert self.dir is not None
        return [
            self._java,
            *self.JVM_FLAGS,
            "-cp", f"{self._jar}:{self._slf4j}",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(self.dir / "zoo.cfg"),
        ]

    def srvr(self) -> str:
        """The answer to the 4-letter word ``srvr`` ("" if none)."""
        return _request(self.host, self.port, b"srvr").decode("utf-8", "replace")

    def _wait_ready(self, timeout: float) -> None:
        wait_until(lambda: "Mode:" in self.srvr() and self._owns_port(), timeout,
                   f"zookeeper {self.hosts} to serve (srvr Mode:)", self)

    def start(self, timeout: float = 20.0) -> ZooKeeperServer:
        super().start(timeout)
        return self

    def restart(self, keep_data: bool = True, timeout: float = 20.0) -> ZooKeeperServer:
        """Stop if running, then start on the same port; ``keep_data=False`` wipes the data
        dir (live clients are then refused for good, see testing.md)."""
        if self.is_running():
            self.stop()
        if not keep_data and self.dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._spawn_and_wait(timeout)
        return self

    def client(self, hosts: str | None = None, **kwargs: Any) -> Any:
        """A started ``kazoo.client.KazooClient``; the caller must ``stop()`` and ``close()``
        it."""
        from kazoo.client import KazooClient

        kwargs.setdefault("timeout", 2.0)
        kwargs.setdefault(
            "connection_retry", dict(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0)
        )
        zk = KazooClient(hosts=hosts or self.hosts, **kwargs)
        try:
            zk.start(timeout=10)
        except BaseException:
            zk.close()
            raise
        return zk

    def chroot_hosts(self, name: str = "test") -> str:
        """``127.0.0.1:P/t/<name>-<uuid8>``, with that path created, for a private namespace."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "test"
        path = f"/t/{safe[:80]}-{uuid.uuid4().hex[:8]}"
        zk = self.client()
        try:
            zk.ensure_path(path)
        finally:
            zk.stop()
            zk.close()
        return f"{self.hosts}{path}"


# --------------------------------------------------------------------------- nutcracker


def _parse_listen(value: object) -> tuple[str, int] | None:
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*\[?([0-9A-Za-z.:-]+?)\]?:(\d+)\s*", value)
    if m is None:
        return None
    return m.group(1), int(m.group(2))


def _find_listens(node: object) -> list[tuple[str, int]]:
    """Every ``listen: host:port`` anywhere in a parsed YAML document, in document order."""
    found: list[tuple[str, int]] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "listen":
                addr = _parse_listen(value)
                if addr is not None:
                    found.append(addr)
            else:
                found.extend(_find_listens(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_find_listens(item))
    return found


class Nutcracker(ManagedProcess):
    """twemproxy 0.5 as a peer. ``config`` is YAML text or a dict of pools. With ``listen_port``
    (or when a pool has no ``listen``) the listen address is set to 127.0.0.1:<port>;
    the port is re-picked on EADDRINUSE only when this class picked it."""

    name = "nutcracker"
    log_name = "nutcracker.log"

    def __init__(
        self,
        config: str | Mapping[str, Any],
        listen_port: int | None = None,
        tmpdir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(tmpdir)
        import yaml

        self._binary = require_binary("nutcracker", "nutcracker", NUTCRACKER_FALLBACK)
        parsed = yaml.safe_load(config) if isinstance(config, str) else _plain(config)
        if not isinstance(parsed, dict) or not parsed:
            raise ValueError("nutcracker config must be a non-empty mapping of pools")
        self.pools: dict[str, dict[str, Any]] = parsed
        self._auto_pools: list[str] = []
        for i, (pool_name, pool) in enumerate(self.pools.items()):
            if i == 0 and listen_port:
                pool["listen"] = f"127.0.0.1:{listen_port}"
            elif "listen" not in pool:
                self._auto_pools.append(pool_name)
                pool["listen"] = f"127.0.0.1:{free_port()}"
        self._auto_stats = True
        self.stats_port = free_port()

    @classmethod
    def for_servers(
        cls, servers: Iterable[str], *, ordered: bool = True, **pool_keys: Any
    ) -> Nutcracker:
        """One pool ``alpha`` (md5, modula, redis) over ``servers`` ("host:port[:weight]
        [name]", weight 1 if omitted). ``pool_keys`` add or override pool settings;
        ``listen_port`` and ``tmpdir`` go to the constructor.

        nutcracker sorts a pool's servers by name (the explicit name, else "host:port";
        shorter names first, then bytewise: tests/test_parity.py decides this against the
        real binary) and modula distribution follows that sorted order. With
        ``ordered`` (the default) unnamed servers are named ``s0000``, ``s0001``, ... so the
        order given here is the order used: ``["H:P1:2048", "H:P2:2048"]`` then means keys
        whose md5 slot (first 4 digest bytes little-endian, mod 4096) is below 2048 go to P1."""
        listen_port = pool_keys.pop("listen_port", None)
        tmpdir = pool_keys.pop("tmpdir", None)
        entries = []
        for i, entry in enumerate(servers):
            addr, _, name = entry.strip().partition(" ")
            if addr.count(":") < 2:
                addr += ":1"
            if not name and ordered:
                name = f"s{i:04d}"
            entries.append(f"{addr} {name}" if name else addr)
        pool: dict[str, Any] = {
            "hash": "md5",
            "distribution": "modula",
            "redis": True,
            "servers": entries,
        }
        pool.update(pool_keys)
        return cls({"alpha": pool}, listen_port=listen_port, tmpdir=tmpdir)

    @property
    def listens(self) -> list[tuple[str, int]]:
        out = []
        for pool in self.pools.values():
            addr = _parse_listen(pool.get("listen"))
            if addr is not None:
                out.append(addr)
        return out

    @property
    def host(self) -> str:
        return self.listens[0][0]

    @property
    def port(self) -> int:
        """Listen port of the first pool."""
        return self.listens[0][1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _where(self) -> str:
        return self.address

    @property
    def config_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "nutcracker.yml"

    def config_text(self) -> str:
        import yaml

        return yaml.safe_dump(self.pools, sort_keys=False)

    def _can_repick_ports(self) -> bool:
        return True

    def _pick_ports(self) -> None:
        # Only ports this object chose; a caller's fixed ports fail on the first try anyway.
        for name in self._auto_pools:
            self.pools[name]["listen"] = f"127.0.0.1:{free_port()}"
        self.stats_port = free_port()

    def _prepare(self) -> None:
        self.config_path.write_text(self.config_text())
        r = subprocess.run(
            [self._binary, "-t", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )
        if r.returncode != 0:
            out = (r.stdout + r.stderr).decode("utf-8", "replace").strip()
            raise ServerError(
                f"nutcracker rejected its config ({out})\n--- config ---\n{self.config_text()}"
            )

    def _command(self) -> list[str]:
        return [
            self._binary,
            "-c", str(self.config_path),
            "-s", str(self.stats_port),
            "-a", "127.0.0.1",
            "-o", str(self.log_path),
        ]

    def _wait_ready(self, timeout: float) -> None:
        for host, port in self.listens:
            wait_for_port(host, port, timeout, self)

    def start(self, timeout: float = 10.0) -> Nutcracker:
        super().start(timeout)
        return self

    def client(self, **kwargs: Any) -> Any:
        """``redis_client()`` on the first pool's listen address; closed by ``close()``."""
        return self._track(redis_client(self.host, self.port, **kwargs))

    def stats(self) -> dict[str, Any]:
        """The JSON from the stats port."""
        import json

        raw = _request("127.0.0.1", self.stats_port, b"", timeout=2.0)
        return json.loads(raw.decode()) if raw else {}


def _plain(obj: Any) -> Any:
    """A deep copy of mappings/lists as plain dicts/lists (so callers' objects stay untouched)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- our proxy


class ProxyProcess(ManagedProcess):
    """``python -m pyproxy -c FILE *extra_args`` with stdout+stderr in ``proxy.log``.

    ``config`` is YAML text, or a callable returning it (called again, for new ports, when a
    start fails with EADDRINUSE). Ready when every ``listen: host:port`` found anywhere in the
    YAML accepts a TCP connection. ``stop()`` returns False if SIGTERM was not enough within
    ``stop_timeout`` (10 s) and it had to SIGKILL; ``forced_kill`` records that too.
    ``open_files`` sets RLIMIT_NOFILE (soft and hard) for the proxy process."""

    name = "pyproxy"
    log_name = "proxy.log"
    stop_timeout = 10.0

    def __init__(
        self,
        config: str | Callable[[], str],
        extra_args: Sequence[str] = (),
        tmpdir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        open_files: int | None = None,
    ) -> None:
        super().__init__(tmpdir)
        self.open_files = open_files
        self._config_source = config
        self.config_text = config() if callable(config) else config
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.forced_kill = False
        self.listens = self._listens()

    def _listens(self) -> list[tuple[str, int]]:
        import yaml

        return _find_listens(yaml.safe_load(self.config_text))

    @property
    def config_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "pyproxy.yml"

    @property
    def port(self) -> int:
        """Listen port of the first pool."""
        if not self.listens:
            raise ServerError("the proxy config has no listen: host:port")
        return self.listens[0][1]

    @property
    def host(self) -> str:
        return self.listens[0][0] if self.listens else "127.0.0.1"

    def _where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.listens)

    def _can_repick_ports(self) -> bool:
        return callable(self._config_source)

    def _pick_ports(self) -> None:
        assert callable(self._config_source)
        self.config_text = self._config_source()
        self.listens = self._listens()

    def _prepare(self) -> None:
        self.config_path.write_text(self.config_text)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "pyproxy", "-c", str(self.config_path), *self.extra_args]

    def _preexec(self) -> Callable[[], None] | None:
        if self.open_files is None:
            return None
        import resource

        limits = (self.open_files, self.open_files)
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    def _wait_ready(self, timeout: float) -> None:
        if not self.listens:
            raise ServerError(f"no listen: host:port in the proxy config:\n{self.config_text}")
        for host, port in self.listens:
            wait_for_port(host, port, timeout, self)

    def start(self, timeout: float = 10.0) -> ProxyProcess:
        super().start(timeout)
        return self

    def client(self, **kwargs: Any) -> Any:
        """``redis_client()`` on the first listen address; closed by ``close()``."""
        return self._track(redis_client(self.host, self.port, **kwargs))

    def stop(self, timeout: float | None = None) -> bool:
        clean = super().stop(timeout)
        if not clean:
            self.forced_kill = True
        return clean


# --------------------------------------------------------------------------- a cuttable link


class TcpRelay:
    """A loopback TCP forwarder to ``target`` ("host:port") on a port of its own, for a test
    that takes one client's connection away from a server while the server and its other
    clients run on: ``cut()`` drops every connection through it and refuses new ones
    (accepted, then closed at once) until ``mend()``. Threads: one accepting, two per
    connection, each ending when its sockets close; ``close()`` closes them all."""

    ACCEPT_POLL = 0.05

    def __init__(self, target: str, host: str = "127.0.0.1") -> None:
        target_host, target_port = target.rsplit(":", 1)
        _check_loopback(host)
        _check_loopback(target_host)
        self.target = (target_host, int(target_port))
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(self.ACCEPT_POLL)
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
        self._drop(*self._sockets())

    def mend(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._acceptor.join(timeout=STOP_TIMEOUT)
        self._listener.close()
        self._drop(*self._sockets())

    def _sockets(self) -> list[socket.socket]:
        with self._lock:
            return list(self._open)

    def _accept(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                refused = self._cut or self._closed
            try:
                if refused:
                    raise ConnectionRefusedError("the relay is cut")
                upstream = socket.create_connection(self.target, timeout=STOP_TIMEOUT)
            except OSError:
                conn.close()
                continue
            conn.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._open |= {conn, upstream}
            for source, sink in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(source, sink), name="relay-pump",
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv
            sock.close()


__all__ = [
    "MissingDependencyError",
    "Nutcracker",
    "PortInUseError",
    "ProxyProcess",
    "RedisServer",
    "ServerError",
    "TcpRelay",
    "ZooKeeperServer",
    "free_port",
    "live_servers",
    "owns_listener",
    "redis_client",
    "require_binary",
    "stop_all",
    "wait_for_port",
    "wait_until",
]
