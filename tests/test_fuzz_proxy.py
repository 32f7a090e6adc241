"""A bounded whole-proxy fuzz test (issue 15): clients send random and mutated RESP
(``tests/fuzz.py``, seeded) through a real proxy over two real redis-servers while one
well-behaved client (``tests/checked.py``) pipelines rounds whose every reply it checks. That
client must get exactly the right answer to every request, with not one error; afterwards the
proxy answers, logged no traceback, and holds no descriptor beyond those of before — but for
backend connections it keeps open on purpose (idle pinned connections for reuse, RESP3
groups), counted on the redis-servers. ``PYPROXY_FUZZ_SEED`` replays another seed.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from tests.checked import CheckedClient
from tests.fuzz import Fuzzer
from tests.servers import free_port, two_shards, wait_until
from tests.test_proxy import Raw, key_on, pool_yaml

SEED = int(os.environ.get("PYPROXY_FUZZ_SEED", "15"))
FUZZERS = 6
CONNECTIONS = 400  # per fuzzer
SECONDS = 8.0  # at most, per fuzzer
IDLE_PINS = 32  # per backend and protocol: pyproxy/proxy/backend.py's _IDLE_PINS


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def from_proxy(server: Any) -> int:
    """Connections the redis-server has open (all from the proxy), but the one asking."""
    listing = server.client().execute_command("CLIENT", "LIST").decode()
    return sum(1 for line in listing.splitlines() if "cmd=client|list" not in line)


def connected_clients(probe: Raw) -> int:
    info = probe.call("INFO", "clients").decode()
    return int(info.split("connected_clients:")[1].split()[0])


def test_fuzzed_clients_harm_no_one(redis_factory: Any, proxy_factory: Any) -> None:
    a, b = redis_factory(), redis_factory()
    proxy = proxy_factory(lambda: pool_yaml(free_port(), two_shards(a, b), timeout=2000,
                                            allow_flush="false"))
    good = CheckedClient("good", proxy.port, [key_on(i % 2, b"good", i) for i in range(6)],
                         value_size=200, pause=0.005, max_seconds=60)
    with Raw("127.0.0.1", proxy.port) as probe:
        good.start()
        wait_until(lambda: good.tally.rounds >= 5, 10, "the good client's first rounds")
        fds, backend_links = open_files(proxy.pid), from_proxy(a) + from_proxy(b)
        clients = connected_clients(probe)
        fuzzers = [Fuzzer(proxy.port, SEED * 100 + n, connections=CONNECTIONS,
                          max_seconds=SECONDS) for n in range(FUZZERS)]
        started = time.monotonic()
        for fuzzer in fuzzers:
            fuzzer.start()
        try:
            for fuzzer in fuzzers:
                fuzzer.join(SECONDS + 20)
        finally:
            for fuzzer in fuzzers:
                fuzzer.stop()
        fuzzed = time.monotonic() - started
        rounds_during = good.tally.rounds
        tally = good.stop()
        outcomes: Counter[str] = Counter()
        for fuzzer in fuzzers:
            outcomes.update(fuzzer.outcomes)
        print(f"\nFUZZ-PROXY seed {SEED}: {sum(outcomes.values())} connections, "
              f"{sum(f.sent for f in fuzzers):,} bytes in {fuzzed:.1f} s: {dict(outcomes)}; "
              f"the good client: {tally.summary()}")
        assert tally.mismatches == 0 and tally.stale == 0, tally.examples
        assert not tally.errors, tally.errors
        assert rounds_during >= 20
        assert outcomes["no close after half-close"] == 0
        assert sum(outcomes.values()) >= FUZZERS * 20
        # afterwards: alive, every fuzz client gone, no descriptor left behind
        assert probe.call("PING") == b"+PONG\r\n"
        wait_until(lambda: connected_clients(probe) == clients - 1, 10,
                   "the fuzz clients (and the good one) to be gone")

        def settled() -> bool:
            extra = from_proxy(a) + from_proxy(b) - backend_links
            return open_files(proxy.pid) == fds - 1 + extra

        wait_until(settled, 10, "the proxy's descriptors back to before (plus backend links)")
        kept = from_proxy(a) + from_proxy(b) - backend_links
        assert 0 <= kept <= 2 * (1 + 2 * IDLE_PINS), kept  # RESP3 groups, idle pins
    log = proxy.log_text()
    assert "Traceback" not in log and "Fatal error" not in log, log[-3000:]
