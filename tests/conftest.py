"""Fixtures over tests/servers.py: real redis-server, ZooKeeper, nutcracker and proxy processes.

* ``zk_server``          session-scoped ZooKeeperServer (do not pause/restart it: use zk_factory)
* ``zk_hosts``           a fresh chroot on it per test: "127.0.0.1:P/t/<test>-<uuid8>"
* ``zk_factory``         private ZooKeeperServer(s) for destructive tests
* ``redis_factory``      ``redis_factory(host="127.0.0.1", port=None, extra_args=())`` -> started
* ``nutcracker_factory`` ``nutcracker_factory(config_or_servers, **kw)`` -> started; a list of
                         "host:port[:weight]" means ``Nutcracker.for_servers(list, **kw)``
* ``proxy_factory``      ``proxy_factory(config, extra_args=(), **kw)`` -> started ProxyProcess;
                         teardown fails the test if the proxy needed SIGKILL to stop

Every factory also takes ``start_timeout=`` (seconds) and returns the started object; a start
that fails raises ServerError (PortInUseError on EADDRINUSE) with the log tail.
Everything a factory made is closed (stopped by pid, temp dir removed) at the test's teardown;
the session ends with ``stop_all()`` for anything left over.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.servers import (  # noqa: E402
    ManagedProcess,
    MissingDependencyError,
    Nutcracker,
    ProxyProcess,
    RedisServer,
    ZooKeeperServer,
    stop_all,
)


def _make(cls_call: Callable[[], Any]) -> Any:
    try:
        return cls_call()
    except MissingDependencyError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_servers() -> Iterator[None]:
    yield
    stop_all()


class _Factory:
    """Starts objects built by ``build(*a, **kw)`` and closes them all at teardown."""

    def __init__(self, build: Callable[..., ManagedProcess]) -> None:
        self._build = build
        self.made: list[ManagedProcess] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start_timeout = kwargs.pop("start_timeout", None)
        obj = _make(lambda: self._build(*args, **kwargs))
        self.made.append(obj)  # tracked before start(): a failed start is still cleaned up
        if start_timeout is None:
            obj.start()
        else:
            obj.start(timeout=start_timeout)
        return obj

    def close_all(self) -> None:
        for obj in reversed(self.made):
            obj.close()


@pytest.fixture(scope="session")
def zk_server() -> Iterator[ZooKeeperServer]:
    zk = _make(ZooKeeperServer)
    try:
        zk.start()
        yield zk
    finally:
        zk.close()


@pytest.fixture
def zk_hosts(zk_server: ZooKeeperServer, request: pytest.FixtureRequest) -> str:
    return str(zk_server.chroot_hosts(request.node.name))


@pytest.fixture
def zk_factory() -> Iterator[_Factory]:
    f = _Factory(ZooKeeperServer)
    yield f
    f.close_all()


@pytest.fixture
def redis_factory() -> Iterator[_Factory]:
    f = _Factory(RedisServer)
    yield f
    f.close_all()


def _nutcracker(config: Any, **kwargs: Any) -> Nutcracker:
    if isinstance(config, (list, tuple)):
        return Nutcracker.for_servers(config, **kwargs)
    return Nutcracker(config, **kwargs)


@pytest.fixture
def nutcracker_factory() -> Iterator[_Factory]:
    f = _Factory(_nutcracker)
    yield f
    f.close_all()


@pytest.fixture
def proxy_factory() -> Iterator[_Factory]:
    f = _Factory(ProxyProcess)
    yield f
    forced = []
    for proxy in reversed(f.made):
        assert isinstance(proxy, ProxyProcess)
        running = proxy.is_running()
        proxy.stop()
        if running and proxy.forced_kill:
            forced.append(f"{proxy!r}\n--- log tail ---\n{proxy.log_tail()}")
    f.close_all()
    if forced:
        pytest.fail(
            "proxy did not exit within 10 s of SIGTERM and was SIGKILLed:\n" + "\n".join(forced),
            pytrace=False,
        )
