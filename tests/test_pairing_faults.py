"""Pairing under faults (issue 15, "Done when"): 50 pipelining clients through a proxy over two
real redis-servers while one of them is SIGSTOPped and SIGCONTed, then SIGKILLed and restarted
empty on the same port. Every reply that is not a proxy error must be exactly what its own
request expects (``tests/checked.py``: unique values per client, key and round): 0 mismatches.
The counts are printed (``PAIRING-UNDER-FAULTS``).

The proxy's ``timeout`` is 300 ms, so the pause times requests out that Redis answers later:
with ``server_failure_limit`` 2 the connection is reset after two timeouts in a row; with 1000
it is kept, and the late replies must be swallowed.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.checked import CheckedClient, Tally
from tests.servers import wait_until
from tests.test_proxy import Raw, key_on, two_shard_config

CLIENTS = 50
PHASE = 1.0  # seconds of load between two faults


@pytest.mark.parametrize("failure_limit", [2, 1000], ids=["reset", "kept"])
def test_fifty_pipelining_clients_get_no_wrong_reply_under_faults(
        redis_factory: Any, proxy_factory: Any, failure_limit: int) -> None:
    a, b = redis_factory(), redis_factory()
    proxy = proxy_factory(two_shard_config(a, b, timeout=300,
                                           server_failure_limit=failure_limit))
    clients = [CheckedClient(f"c{n}", proxy.port,
                             [key_on(i % 2, b"pair%d" % n, i) for i in range(4)],
                             max_seconds=60)
               for n in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        time.sleep(PHASE)
        a.pause()
        time.sleep(PHASE)
        a.resume()
        time.sleep(PHASE)
        a.kill()
        time.sleep(PHASE / 2)
        a.restart()
        probe_key = key_on(0, b"pair-probe")
        with Raw("127.0.0.1", proxy.port) as probe:
            wait_until(lambda: probe.call("SET", probe_key, "1") == b"+OK\r\n", 10,
                       "the restarted shard to serve again")
        time.sleep(PHASE)
    finally:
        tallies = [client.stop() for client in clients]
    total = Tally()
    for tally in tallies:
        total.add(tally)
    print(f"\nPAIRING-UNDER-FAULTS {CLIENTS} clients, server_failure_limit {failure_limit}: "
          f"{total.summary()}")
    assert total.mismatches == 0 and total.stale == 0, total.examples
    assert total.redis_errors() == {}, total.errors
    assert total.errors["timed out"] > 0 and total.errors["down"] > 0  # the faults were seen
    assert total.ok > 10 * CLIENTS
    # everyone was served again after the restart, round after round without an error
    assert min(tally.streak for tally in tallies) >= 5, sorted(t.streak for t in tallies)
    assert "Traceback" not in proxy.log_text()
