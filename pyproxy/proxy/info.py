"""INFO like Redis: the sections tools read, combined over every shard's master, plus the
proxy's own.

The proxy asks every master for ``INFO server clients memory persistence stats keyspace``
(only when a requested section needs a shard's numbers) and answers, section by section:

* Server: ``redis_version`` — the lowest of the masters', so a client enables only what every
  shard has — ``redis_mode:standalone``, ``pyproxy_version``, ``process_id``, ``tcp_port``,
  uptime.
* Clients: ``connected_clients`` (the proxy's own), ``blocked_clients`` (the masters', summed:
  a client blocked through the proxy waits on a connection of its own there).
* Memory: ``used_memory``/``_human``, ``used_memory_peak``/``_human``, ``maxmemory``/``_human``,
  summed.
* Persistence: ``loading`` (1 if any master loads), ``rdb_changes_since_last_save`` (summed),
  ``rdb_last_save_time`` (the oldest).
* Stats: the proxy's own connections, commands, ``instantaneous_ops_per_sec`` and bytes; the
  masters' keyspace hits/misses and expired/evicted keys, summed.
* Replication: ``role:master``, ``connected_slaves:0`` (the proxy is what clients write to).
* Keyspace: ``db0:keys=…,expires=…,avg_ttl=…`` summed (avg_ttl weighted by keys).
* Proxy: pyproxy's pools, shard masters and topology (``pool_<name>``, ``pool_<name>_masters``),
  what holding requests through failovers did (``pool_<name>_failover``, ``_outage_ms``, pools
  with ``failover_hold``), what serving migrating slots did (``pool_<name>_migration``,
  ZooKeeper pools: ``proxy/migration.py``'s counters), and how many shards answered.

``INFO`` is the default sections, ``INFO all``/``everything`` all of them, several names may
be given; unknown names add nothing, as in Redis. A shard that fails to answer leaves its
numbers out (``shards_answered`` says so): INFO itself never fails for one shard.
"""

from __future__ import annotations

import os
import platform
import time
from collections import deque

from .. import __version__
from ..observe.snapshot import ProxySnapshot
from ..observe.stats import LATENCY_BUCKETS, Histogram
from ..protocol import resp
from ..protocol.commands import Command
from ..protocol.resp import encode_command
from . import fanout
from .dispatch import Context, Strategy
from .keyspace import to_shards
from .replies import Reply
from .session import Session

SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "keyspace",
            "proxy")
_FROM_SHARDS = {"server", "clients", "memory", "persistence", "stats", "keyspace"}
_SHARD_INFO = encode_command([b"INFO", b"server", b"clients", b"memory", b"persistence",
                              b"stats", b"keyspace"])
_SUMMED = {
    "clients": ("blocked_clients",),
    "memory": ("used_memory", "used_memory_peak", "maxmemory"),
    "stats": ("keyspace_hits", "keyspace_misses", "expired_keys", "evicted_keys"),
}


class OpsRate:
    """``instantaneous_ops_per_sec``: commands per second over the last samples, taken every
    100 ms (as Redis does) by the server's sampler."""

    SAMPLES = 16

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque(maxlen=self.SAMPLES)

    def sample(self, now: float, total: int) -> None:
        self.samples.append((now, total))

    def per_second(self) -> int:
        if len(self.samples) < 2:
            return 0
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return int((n1 - n0) / (t1 - t0)) if t1 > t0 else 0


def parse_info(text: bytes) -> dict[str, str]:
    """``key:value`` lines of an INFO reply's body."""
    fields = {}
    for line in text.decode(errors="replace").splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value
    return fields


def human(size: int) -> str:
    """Redis's bytesToHuman: 1.50K, 12.34M, ..."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.2f}{unit}"
    return f"{size}B"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))


class Info(Strategy):
    def __init__(self, rate: OpsRate):
        self.rate = rate

    def run(self, ctx: Context, session: Session, command: Command, args: list[bytes],
            reply: Reply) -> None:
        asked = [a.decode(errors="replace").lower() for a in args[1:]] or ["default"]
        wanted: list[str] = []
        for name in asked:
            chosen = SECTIONS if name in ("default", "all", "everything") else (name,)
            wanted += [s for s in chosen if s in SECTIONS and s not in wanted]
        shards = ctx.pool.routes.shards
        if not _FROM_SHARDS.intersection(wanted):
            reply.settle(self.render(ctx, session, wanted, [], len(shards)))
            return
        to_shards(shards, session, _SHARD_INFO, reply, _Combine(self, ctx, session, wanted),
                  readonly=True)

    def render(self, ctx: Context, session: Session, wanted: list[str],
               infos: list[dict[str, str]], shard_count: int) -> bytes:
        view = ctx.snapshot()
        blocks = []
        for name in wanted:
            lines = _SECTION[name](self, ctx, view, infos)
            blocks.append(f"# {name.capitalize()}\r\n" + "".join(f"{line}\r\n" for line in lines))
        if "proxy" in wanted:
            blocks[-1] += f"shards_answered:{len(infos)}/{shard_count}\r\n"
        text = "\r\n".join(blocks).encode()
        if session.resp3:
            return b"=%d\r\ntxt:%b\r\n" % (len(text) + 4, text)
        return resp.bulk(text)

    # -- one function per section: lines "key:value"

    def _server(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
                ) -> list[str]:
        versions = [i["redis_version"] for i in infos if "redis_version" in i]
        uptime = int(time.time() - view.started)
        return [
            f"redis_version:{min(versions, key=_version) if versions else '0.0.0'}",
            "redis_mode:standalone",
            f"pyproxy_version:{__version__}",
            f"os:{platform.system()} {platform.release()} {platform.machine()}",
            f"process_id:{os.getpid()}",
            f"tcp_port:{ctx.config.listen_port or 0}",
            f"uptime_in_seconds:{uptime}",
            f"uptime_in_days:{uptime // 86400}",
        ]

    def _clients(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
                 ) -> list[str]:
        pool = next(p for p in view.pools if p.name == ctx.config.name)
        return [f"connected_clients:{pool.clients}", *_sums(infos, "clients")]

    def _memory(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
                ) -> list[str]:
        lines = []
        for field in _SUMMED["memory"]:
            total = _sum(infos, field)
            lines += [f"{field}:{total}", f"{field}_human:{human(total)}"]
        return lines

    def _persistence(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
                     ) -> list[str]:
        saves = [int(i["rdb_last_save_time"]) for i in infos if "rdb_last_save_time" in i]
        return [
            f"loading:{max((int(i.get('loading', 0)) for i in infos), default=0)}",
            f"rdb_changes_since_last_save:{_sum(infos, 'rdb_changes_since_last_save')}",
            f"rdb_last_save_time:{min(saves, default=0)}",
        ]

    def _stats(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
               ) -> list[str]:
        pool = next(p for p in view.pools if p.name == ctx.config.name)
        stats = pool.stats
        return [
            f"total_connections_received:{stats.client_connections_total}",
            f"total_commands_processed:{stats.requests}",
            f"instantaneous_ops_per_sec:{self.rate.per_second()}",
            f"total_net_input_bytes:{stats.request_bytes}",
            f"total_net_output_bytes:{stats.response_bytes}",
            "rejected_connections:0",
            *_sums(infos, "stats"),
        ]

    def _replication(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
                     ) -> list[str]:
        return ["role:master", "connected_slaves:0"]

    def _keyspace(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
                  ) -> list[str]:
        keys = expires = ttl_weight = 0
        for info in infos:
            db = dict(pair.split("=", 1) for pair in info.get("db0", "").split(",") if "=" in pair)
            shard_keys = int(db.get("keys", 0))
            keys += shard_keys
            expires += int(db.get("expires", 0))
            ttl_weight += int(db.get("avg_ttl", 0)) * shard_keys
        if not keys:
            return []
        return [f"db0:keys={keys},expires={expires},avg_ttl={ttl_weight // keys}"]

    def _proxy(self, ctx: Context, view: ProxySnapshot, infos: list[dict[str, str]]
               ) -> list[str]:
        lines = [f"pyproxy_version:{__version__}", f"process_id:{os.getpid()}",
                 f"uptime_in_seconds:{int(time.time() - view.started)}",
                 f"connected_clients:{view.clients}",
                 f"total_connections_received:{view.connections_total}",
                 f"total_commands_processed:{view.requests_total}"]
        for pool in view.pools:
            table = pool.table
            masters = ",".join(f"{s.name}={s.master or '-'}" for s in table.shards)
            lines.append(f"pool_{pool.name}:listen={pool.listen},shards={len(table.shards)},"
                         f"table_version={table.version},source={table.source}")
            lines.append(f"pool_{pool.name}_masters:{masters}")
            hold = pool.hold
            if hold is not None:
                lines.append(f"pool_{pool.name}_failover:held_now={hold.held_now},"
                             f"held={hold.held_total},expired={hold.expired},"
                             f"unknown_outcome={hold.unknown},"
                             f"hold_max_ms={int(_max_observed(hold.hold_time) * 1000)}")
                if hold.outages:  # the last outage of each shard that had one, in ms
                    lines.append(f"pool_{pool.name}_outage_ms:" + ",".join(
                        f"{shard}={int(seconds * 1000)}"
                        for shard, seconds in sorted(hold.outages.items())))
            moved = pool.migration
            if moved is not None:
                lines.append(f"pool_{pool.name}_migration:moves={moved.moves},busy={moved.busy},"
                             f"move_errors={moved.move_errors},paused={moved.paused},"
                             f"pause_expired={moved.pause_expired}")
        return lines


_SECTION = {name: getattr(Info, f"_{name}") for name in SECTIONS}


def _max_observed(histogram: Histogram) -> float:
    """The upper bound of the highest bucket that counted something (0 if none)."""
    for bound, count in zip(reversed((*LATENCY_BUCKETS, float("inf"))),
                            reversed(histogram.counts), strict=True):
        if count:
            return bound
    return 0.0


def _sum(infos: list[dict[str, str]], field: str) -> int:
    return sum(int(i[field]) for i in infos if i.get(field, "").isdigit())


def _sums(infos: list[dict[str, str]], section: str) -> list[str]:
    return [f"{field}:{_sum(infos, field)}" for field in _SUMMED[section]]


class _Combine(fanout.Merge):
    """The shards' INFO replies (errors left out) rendered with the proxy's own numbers."""

    def __init__(self, info: Info, ctx: Context, session: Session, wanted: list[str]):
        self.info, self.ctx, self.session, self.wanted = info, ctx, session, wanted

    def combine(self, replies: list[bytes], places: list[list[int]], count: int) -> bytes:
        infos = [parse_info(resp.bulk_value(raw)) for raw in replies if not resp.is_error(raw)]
        return self.info.render(self.ctx, self.session, self.wanted, infos, len(replies))
