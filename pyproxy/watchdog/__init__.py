"""The watchdog (replaces the seed's ``redis-zoo-watchdog.elf``; README "Watchdog").

One watchdog runs beside each redis. While its redis answers health checks it holds one
ephemeral sequential node ``<host:port>-<seq>`` under the shard's ZooKeeper path; the
lowest node is the shard's master, so the watchdog makes its redis ``REPLICAOF NO ONE``
when its node is the lowest and ``REPLICAOF <lowest>`` otherwise. After
``healthCheckFailures`` failed checks it deletes its node; a redis that comes back
registers anew, with a higher sequence number: as a replica.

Modules, data flowing one way:

* ``cli``       the seed's command line (``-f FILE -dc HOST:PORT ZK_SHARD_PATH``), exit codes
* ``conf``      ``zoo-watchdog.conf`` (``key = value``) -> frozen ``Conf``
* ``probe``     a minimal RESP client with deadlines, and the health check (PING + ROLE)
* ``registrar`` the kazoo session: list members, create/delete our node
* ``decide``    pure rules: ``State -> [Action]``
* ``daemon``    the control loop executing them; the fencing sequences and timing bounds
* ``metrics``   optional Prometheus endpoint

Failure domain: this package never imports the proxy's I/O modules (client, backend,
pool, server, topology); it shares only ``pyproxy.zkschema`` with the proxy. Threads: one
control loop (the main thread) plus kazoo's own threads, which only enqueue events.
Requires redis >= 6.2 (``CLIENT PAUSE ... WRITE``, ``CLIENT UNPAUSE``).
"""
