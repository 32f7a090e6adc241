"""conftest.py for a copy of twemproxy's tests/ (installed there by twemproxy_suite.py).

The suite was written for nose and redis-py 3.5; this runs it under pytest and redis-py of
today, changing nothing it asserts:

* nose's module fixtures: a test module's ``setup()`` runs before its tests and
  ``teardown()`` after them (pytest 8 no longer calls them); a function is a test by its own
  ``__name__``, as in nose (so utils' decorated ``test_nothrow``, imported by every module,
  is not collected five times over);
* redis-py as 3.5 spoke and read: RESP2, no CLIENT SETINFO on connect, and a WRONGPASS error
  keeps its code in the message (3.5 did not know the code, so test_auth's regex sees it);
* loopback only (this project's rule): the proxy listens on 127.0.0.1, not 0.0.0.0, and
  redis-server binds 127.0.0.1;
* processes are stopped and signalled by the pid in their pid file, not by ``pkill -f``
  (this project's rule: stop only what you started, by pid).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis._parsers.base import BaseParser

_init = redis.Redis.__init__


def _redis_35(self: Any, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("protocol", 2)
    kwargs.setdefault("lib_name", None)
    kwargs.setdefault("lib_version", None)
    _init(self, *args, **kwargs)


redis.Redis.__init__ = _redis_35  # type: ignore[method-assign]
BaseParser.EXCEPTION_CLASSES = {code: kind for code, kind in BaseParser.EXCEPTION_CLASSES.items()
                                if code != "WRONGPASS"}


def _kill_from_pidfile(pidfile: str, signo: int) -> None:
    try:
        pid = int(Path(pidfile).read_text().split()[0])
        os.kill(pid, signo)
    except (OSError, ValueError, IndexError):
        pass


_patched: list[bool] = []


def _patch_harness() -> None:
    """Once, after the first test module's common.py has put the suite's lib/ on sys.path."""
    if _patched:
        return
    _patched.append(True)
    import server_modules

    nutcracker_conf = server_modules.NutCracker._gen_conf
    redis_conf = server_modules.RedisServer._gen_conf

    def loopback_nutcracker(self: Any) -> str:
        return str(nutcracker_conf(self)).replace("listen: 0.0.0.0:", "listen: 127.0.0.1:")

    def loopback_redis(self: Any) -> str:
        return str(redis_conf(self)) + "\nbind 127.0.0.1\n"

    def signal_by_pid(self: Any, signo: str) -> None:
        _kill_from_pidfile(self.args["pidfile"], getattr(signal, f"SIG{signo}"))

    server_modules.NutCracker._gen_conf = loopback_nutcracker
    server_modules.RedisServer._gen_conf = loopback_redis
    server_modules.NutCracker.signal = signal_by_pid


@pytest.fixture(autouse=True, scope="module")
def _nose_module_fixtures(request: pytest.FixtureRequest) -> Iterator[None]:
    _patch_harness()
    module = request.module
    if callable(getattr(module, "setup", None)):
        module.setup()
    yield
    if callable(getattr(module, "teardown", None)):
        module.teardown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        function = getattr(item, "obj", None)
        name = getattr(function, "__name__", "")
        is_test = name.startswith("test") and getattr(function, "__test__", True)
        (kept if is_test else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
