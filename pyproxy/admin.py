"""``pyproxy-admin``: lay out ZooKeeper from a config, show the cluster, locate a key, move
slots between shards with their keys (``reshard``).

Replaces the seed's manual zkCli steps. A command-line tool, so it uses kazoo's blocking
API (there is no event loop to block here).

* ``init``   creates the parent of ``zookeeper_path``, ``zookeeper_redis_path`` and one shard
             node per ``servers`` entry (``redis-0000``, ``redis-0001``, ... in list order)
             holding ``{"weight":"start-end"}``. Idempotent; different existing weights are
             refused unless ``--force``, which writes them all in one ZooKeeper transaction
             (routing only: it warns that keys do not move).
* ``status`` each shard's range, master and replicas as ZooKeeper has them, each redis's own
             view (``ROLE``, replication offset), and the registered proxies.
* ``slot``   a key's slot, shard and current master. Without ZooKeeper (``--offline``, or
             when it does not answer) the slot and the shard are computed from the config
             alone, and the output says so: the master shown is then the configured one.
* ``hotkeys`` the keys taking the most requests, from the proxy's ``/status.json``: at
             ``--metrics HOST:PORT``, else at every metrics address the pool's proxy (and
             its ``--workers``) wrote in its ZooKeeper node; the workers' samples added up.
* ``add-shard``, ``remove-shard``, ``reshard``, ``rebalance``: see ``reshard``.

Exit codes: 0 ok, 1 the operation was refused or failed, 2 usage, 3 ZooKeeper unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.request
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from . import address, reshard
from . import config as configuration
from .cluster import layout as layout_plans
from .cluster import zk as zkutil
from .cluster import zkschema
from .routing.hashing import make_slotter
from .routing.routes import Routes
from .routing.table import format_ranges, slot_set
from .server import static_table
from .watchdog.probe import Conn, RedisError, parse_role

ZK_CONNECT_TIMEOUT = 5.0
ZK_SESSION_TIMEOUT = 5.0  # short: a killed resharding admin's lock goes with its session
STATUS_TIMEOUT = 10.0  # seconds a proxy's /status.json gets to answer
WILDCARD = "0.0.0.0"  # a metrics host that names no one to connect to


class AdminError(Exception):
    """A one-line reason, printed as is; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _pool(loaded: configuration.Config, name: str | None) -> configuration.PoolConfig:
    pools = [p for p in loaded.pools if name is None or p.name == name]
    if not pools:
        raise AdminError(f"{loaded.path}: no pool named {name!r}")
    if len(pools) > 1:
        names = ", ".join(p.name for p in pools)
        raise AdminError(f"{loaded.path}: several pools ({names}); choose one with --pool")
    return pools[0]


def _zk_pool(loaded: configuration.Config, name: str | None) -> configuration.PoolConfig:
    pool = _pool(loaded, name)
    if not pool.uses_zookeeper:
        raise AdminError(f"{loaded.path}: pool {pool.name!r} has no zookeeper_* keys")
    return pool


def _connect(pool: configuration.PoolConfig) -> KazooClient:
    assert pool.zookeeper_host is not None
    hosts = pool.zookeeper_host
    zk = zkutil.make_client(hosts, ZK_SESSION_TIMEOUT, pool.zookeeper_auth)
    try:
        zk.start(timeout=ZK_CONNECT_TIMEOUT)
    except KazooTimeoutError:
        zk.close()
        raise AdminError(f"cannot reach ZooKeeper at {hosts} within {ZK_CONNECT_TIMEOUT:.0f}s",
                         3) from None
    return zk


def init(pool: configuration.PoolConfig, force: bool) -> list[str]:
    """Create the layout; return what was done, one line each. With ``force``, differing
    weights are all rewritten in one ZooKeeper transaction (proxies see one change)."""
    assert pool.zookeeper_host and pool.zookeeper_path and pool.zookeeper_redis_path
    done: list[str] = []
    zk = _connect(pool)
    try:
        proxies = pool.zookeeper_path.rsplit("/", 1)[0] or "/"
        cluster = pool.zookeeper_redis_path
        for path in (proxies, cluster):
            if not zk.exists(path):
                zk.ensure_path(path)
                done.append(f"created {path}")
        wanted = [(zkschema.shard_path(cluster, zkschema.shard_name(i)), ((s.start, s.end),))
                  for i, s in enumerate(pool.servers)]
        conflicts = []
        for path, ranges in wanted:
            stat = zk.exists(path)
            if stat is None:
                zk.create(path, zkschema.shard_data(ranges))
                done.append(f"created {path} weight {format_ranges(ranges)}")
                continue
            data, stat = zk.get(path)
            try:
                existing: object = zkschema.parse_shard(data, path)
            except zkschema.SchemaError:
                existing = None
            if existing != (ranges, None):
                conflicts.append((path, ranges, data, stat.version))
        if conflicts and not force:
            lines = [f"{p}: has {_data_text(d)}, config says {format_ranges(r)}"
                     for p, r, d, _ in conflicts]
            raise AdminError("refusing to change existing weights (use --force): "
                             + "; ".join(lines))
        if conflicts:
            transaction = zk.transaction()
            for path, ranges, _, version in conflicts:
                transaction.set_data(path, zkschema.shard_data(ranges), version=version)
            if any(isinstance(result, Exception) for result in transaction.commit()):
                raise AdminError("the weights changed in ZooKeeper meanwhile: nothing written; "
                                 "run the command again")
            done += [f"set {p} weight {format_ranges(r)}" for p, r, _, _ in conflicts]
            done.append("warning: this moved the routing of those slots, not their keys: keys "
                        "already written there are no longer reachable (pyproxy-admin reshard "
                        "moves slots with their keys)")
    finally:
        zk.stop()
        zk.close()
    return done


def _data_text(data: bytes) -> str:
    """A znode's data as an operator reads it: its text, not Python's bytes literal."""
    if not data:
        return "no data"
    text = data.decode(errors="replace")
    return text if text.isprintable() else repr(text)


def _redis_view(address: str) -> dict[str, Any]:
    """What the redis itself says: role and replication offset (or why it did not say).

    Uses the watchdog's probe, so admin and watchdog read ROLE the same way.
    """
    conn = Conn(address, timeout=1.0)
    try:
        role, master, offset = parse_role(conn.call("ROLE"))
    except RedisError as exc:
        return {"reachable": False, "error": str(exc)}
    finally:
        conn.close()
    view: dict[str, Any] = {"reachable": True, "role": role, "offset": offset}
    if master is not None:
        view["master"] = master
    return view


def status(pool: configuration.PoolConfig) -> dict[str, Any]:
    assert pool.zookeeper_host and pool.zookeeper_path and pool.zookeeper_redis_path
    zk = _connect(pool)
    try:
        cluster = pool.zookeeper_redis_path
        shards = []
        try:
            names = sorted(zk.get_children(cluster))
        except NoNodeError:
            raise AdminError(f"{cluster} does not exist (run: pyproxy-admin init)") from None
        for name in names:
            path = zkschema.shard_path(cluster, name)
            data, _ = zk.get(path)
            migrating: dict[str, str] | None = None
            try:
                ranges, migration = zkschema.parse_shard(data, path)
                weight: str = format_ranges(ranges)
                if migration is not None:
                    migrating = {"slots": format_ranges(migration.slots),
                                 "to": migration.target, "id": migration.id,
                                 "state": migration.state}
            except zkschema.SchemaError as exc:
                weight = f"INVALID ({exc})"
            members = zkschema.order_members(zk.get_children(path))
            shards.append({
                "name": name, "weight": weight, "migrating": migrating,
                "master": members[0].address if members else None,
                "members": [
                    {"node": m.name, "address": m.address, **_redis_view(m.address)}
                    for m in members
                ],
            })
        proxies_path = pool.zookeeper_path.rsplit("/", 1)[0] or "/"
        proxies = []
        for child in sorted(zk.get_children(proxies_path) if zk.exists(proxies_path) else []):
            data, _ = zk.get(f"{proxies_path.rstrip('/')}/{child}")
            try:
                proxies.append({"node": child, **json.loads(data)})
            except ValueError:
                proxies.append({"node": child, "data": data.decode(errors="replace")})
        return {"cluster": cluster, "shards": shards, "proxies": proxies}
    finally:
        zk.stop()
        zk.close()


def slot(pool: configuration.PoolConfig, key: bytes, offline: bool = False) -> dict[str, Any]:
    """The key's slot, and its shard and master as ZooKeeper has them, else as configured
    (``source`` says which; ``note`` why ZooKeeper was not asked or did not answer). Under
    ketama or random there are no slots (``slot`` is None)."""
    number = make_slotter(pool.hash_tag, pool.modulus, pool.hash)(key)
    result: dict[str, Any] = {"key": key.decode(errors="replace"), "slot": number}
    if pool.distribution != "modula":
        server = Routes(static_table(pool), pool.servers, pool.hash_tag).locate(key)
        anywhere = pool.distribution == "random"  # a server picked per request
        result.update(slot=None, shard="any (random)" if anywhere else server.name,
                      master="any" if anywhere else server.address, source="config")
        return result
    if pool.uses_zookeeper and offline:
        result["note"] = "ZooKeeper not asked (--offline)"
    elif pool.uses_zookeeper:
        try:
            view = status(pool)
        except AdminError as exc:
            if exc.code != 3:  # ZooKeeper answered: what it said is the error
                raise
            result["note"] = str(exc)
        else:
            for shard in view["shards"]:
                try:
                    ranges = zkschema.parse_ranges(shard["weight"], shard["name"])
                except zkschema.SchemaError:
                    continue
                if any(start <= number <= end for start, end in ranges):
                    result.update(shard=shard["name"], master=shard["master"],
                                  source="zookeeper")
                    moving = shard["migrating"]
                    if moving and number in slot_set(zkschema.parse_ranges(moving["slots"], "")):
                        result["migrating_to"] = moving["to"]
                    return result
    for index, server in enumerate(pool.servers):
        if server.start <= number <= server.end:
            name = zkschema.shard_name(index) if pool.uses_zookeeper else server.name
            result.update(shard=name, master=server.address, source="config")
    return result


def registered_metrics(pool: configuration.PoolConfig) -> list[str]:
    """The metrics addresses in the nodes of the pool's proxy (``zookeeper_path``) and of its
    workers (``<zookeeper_path>.worker<i>``), each reachable: a wildcard host is replaced
    by the host the proxy listens on."""
    assert pool.zookeeper_path
    parent, _, own = pool.zookeeper_path.rpartition("/")
    zk = _connect(pool)
    try:
        try:
            children = zk.get_children(parent or "/")
        except NoNodeError:
            children = []
        found = []
        for child in sorted(c for c in children if c == own or c.startswith(f"{own}.worker")):
            try:
                info = zkschema.ProxyInfo.decode(zk.get(f"{parent}/{child}")[0])
                if not info.metrics:
                    continue  # it runs without --metrics
                host, port = address.parse(info.metrics)
                if host == WILDCARD:
                    host = address.parse(info.listen)[0]
            except (NoNodeError, zkschema.SchemaError, address.AddressError):
                continue  # gone meanwhile, or not a proxy's node
            found.append(f"{host}:{port}")
        return found
    finally:
        zk.stop()
        zk.close()


def _status_json(where: str) -> dict[str, Any]:
    url = f"http://{where}/status.json"
    try:
        with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT) as answer:
            return dict(json.loads(answer.read()))
    except (OSError, ValueError) as exc:
        raise AdminError(f"{url}: {exc}") from None


def hotkeys(where: list[str], pool: str | None, top: int) -> dict[str, Any]:
    """The ``top`` hottest keys of each pool (only ``pool`` if given) the proxies at ``where``
    report, their summaries added up: a key's count (and the error it may overestimate by)
    summed over the proxies, its share of all their samples. Each proxy lists its hottest
    only: a key one of them does not list counts 0 there."""
    pools: dict[str, dict[str, Any]] = {}
    for place in where:
        for reported in _status_json(place)["pools"]:
            if pool is not None and reported["name"] != pool:
                continue
            hot = reported["hot_keys"]
            merged = pools.setdefault(reported["name"], {
                "pool": reported["name"], "proxies": [], "samples": 0,
                "sample_every": hot["sample_every"], "keys": {}})
            merged["proxies"].append(place)
            merged["samples"] += hot["samples"]
            for item in hot["keys"]:
                key = merged["keys"].setdefault(item["key"], {
                    "key": item["key"], "count": 0, "error": 0, "shard": item["shard"],
                    "master": item["master"]})
                key["count"] += item["count"]
                key["error"] += item["error"]
    if pool is not None and not pools:
        raise AdminError(f"no pool named {pool!r} at {', '.join(where)}")
    result = []
    for merged in pools.values():
        samples = merged["samples"]
        ranked = sorted(merged["keys"].values(), key=lambda k: -k["count"])[:top]
        for key in ranked:
            key["share"] = key["count"] / samples if samples else 0.0
            key["share_at_least"] = (key["count"] - key["error"]) / samples if samples else 0.0
        result.append({**merged, "keys": ranked})
    return {"pools": result}


def _print_hotkeys(view: dict[str, Any]) -> None:
    for pool in view["pools"]:
        proxies = len(pool["proxies"])
        print(f"pool {pool['pool']}: {pool['samples']:,} samples (1 key in "
              f"{pool['sample_every']} sampled, halved each minute) from {proxies} "
              f"prox{'y' if proxies == 1 else 'ies'} ({', '.join(pool['proxies'])})")
        if not pool["keys"]:
            print("  no key sampled yet")
            continue
        print(f"  {'share':>7} {'at least':>8}  {'shard':<12} {'master':<21} key")
        for key in pool["keys"]:
            print(f"  {key['share']:7.1%} {key['share_at_least']:8.1%}  {key['shard']:<12} "
                  f"{key['master'] or 'NONE':<21} {key['key']}")


def _print_slot(result: dict[str, Any]) -> None:
    where = result["source"]
    if "note" in result:
        where = f"config only: {result['note']}; the live master may differ"
    moving = f", moving to {result['migrating_to']}" if "migrating_to" in result else ""
    print(f"key {result['key']!r} slot {result['slot']} shard {result['shard']}{moving} "
          f"master {result['master'] or 'NONE'} ({where})")


def _print_status(view: dict[str, Any]) -> None:
    print(f"cluster {view['cluster']}")
    for shard in view["shards"]:
        print(f"  {shard['name']}  slots {shard['weight'] or 'none'}  "
              f"master {shard['master'] or 'NONE'}")
        moving = shard["migrating"]
        if moving:
            print(f"    migrating {moving['slots']} -> {moving['to']} ({moving['state']}, "
                  f"id {moving['id']})")
        for member in shard["members"]:
            if member["reachable"]:
                seen = f"role={member['role']} offset={member['offset']}"
                if member.get("master"):
                    seen += f" following={member['master']}"
            else:
                seen = f"UNREACHABLE ({member['error']})"
            print(f"    {member['node']:<32} {seen}")
    print("proxies")
    for proxy in view["proxies"] or [{"node": "(none registered)"}]:
        extra = (f"  pid={proxy['pid']} version={proxy['version']} "
                 f"layout={proxy.get('layout') or 'none yet'}" if "pid" in proxy else "")
        print(f"  {proxy['node']}{extra}")


ADMIN_EPILOG = """\
examples:
  pyproxy-admin init -c conf/icd.yml          create /redis/proxy/icd, /redis/cluster/icd,
                                              redis-0000 {"weight":"0-2047"}, redis-0001 ...
  pyproxy-admin status -c conf/icd.yml        shards, slots, migrations, masters, replicas
                                              (each redis's own ROLE and offset), proxies
  pyproxy-admin slot user:42 -c conf/icd.yml  the key's slot, shard and current master
                                              (from the config alone with --offline or
                                              when ZooKeeper does not answer)
  pyproxy-admin hotkeys -c conf/icd.yml       the keys taking the most requests, from the
                                              status page of every proxy process registered
                                              at the pool's zookeeper_path (or give
                                              --metrics HOST:PORT of one proxy)
  pyproxy-admin add-shard -c conf/icd.yml redis-0002
                                              a shard with no slots, for watchdogs to join
  pyproxy-admin rebalance -c conf/icd.yml --dry-run
                                              the plan to spread the slots evenly
  pyproxy-admin rebalance -c conf/icd.yml     move them, with their keys, under load
  pyproxy-admin reshard -c conf/icd.yml --slots 0-1023 --to redis-0002
  pyproxy-admin remove-shard -c conf/icd.yml redis-0002   (once it owns no slot)

A resharding command killed at any point is continued by running one again.

exit codes: 0 ok, 1 refused or failed (e.g. init would change weights: use --force),
            2 usage, 3 ZooKeeper unreachable
"""

RESHARDING = ("add-shard", "remove-shard", "reshard", "rebalance")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyproxy-admin",
        description="Lay out ZooKeeper for a pyproxy cluster, show it, locate keys, and move "
                    "slots between shards with their keys.",
        epilog=ADMIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in (("init", "create the ZooKeeper layout from the config"),
                       ("status", "show shards, masters, replicas and proxies"),
                       ("slot", "print a key's slot, shard and master"),
                       ("check", "check the config file (like pyproxy -t)"),
                       ("add-shard", "add a shard that owns no slots yet"),
                       ("remove-shard", "remove a shard that owns no slots"),
                       ("reshard", "move slots, with their keys, to a shard"),
                       ("rebalance", "spread the slots evenly over the shards with a master"),
                       ("hotkeys", "the keys taking the most requests (the proxy's sample)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--conf-file", required=name != "hotkeys", metavar="FILE",
                       help="the proxy's config" + (
                           " (its pool's proxies are found in ZooKeeper; not needed with "
                           "--metrics)" if name == "hotkeys" else ""))
        p.add_argument("--pool", help="pool name (needed when the file has several)")
        if name == "init":
            p.add_argument("--force", action="store_true",
                           help="overwrite differing weights (routing only: keys do not move)")
        if name in ("status", "slot", "hotkeys"):
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "hotkeys":
            p.add_argument("--metrics", metavar="[HOST:]PORT",
                           help="the proxy's --metrics address (default: the ones its "
                                "ZooKeeper node tells)")
            p.add_argument("-n", "--top", type=int, default=10, metavar="N",
                           help="keys shown per pool (default 10)")
        if name == "slot":
            p.add_argument("--offline", action="store_true",
                           help="do not ask ZooKeeper: the slot and the configured shard")
            p.add_argument("key")
        if name in ("add-shard", "remove-shard"):
            p.add_argument("name", help="the shard's node name, e.g. redis-0002")
        if name == "reshard":
            p.add_argument("--slots", required=True, metavar="A-B[,C-D]",
                           help="the slots to move (ranges or single slots)")
            p.add_argument("--to", required=True, metavar="NAME", help="the shard to move to")
        if name in ("reshard", "rebalance"):
            p.add_argument("--dry-run", action="store_true",
                           help="print the plan (slots, estimated keys, from -> to); change "
                                "nothing")
            p.add_argument("--yes", action="store_true", help="do not ask on a terminal")
            p.add_argument("--batch", type=int, default=100, metavar="KEYS",
                           help="keys per MIGRATE (default 100)")
            p.add_argument("--rate", type=float, default=0.0, metavar="KEYS_PER_S",
                           help="move at most this many keys per second (default: no limit)")
            p.add_argument("--ack-timeout", type=float, default=5.0, metavar="SECONDS",
                           help="how long every proxy gets to acknowledge a step (default 5; "
                                "at most 8)")
            p.add_argument("--force", action="store_true",
                           help="go on when a registered proxy does not acknowledge (a write "
                                "it still sends to the old shard may be lost)")
    return parser


def _reshard(pool: configuration.PoolConfig, args: argparse.Namespace) -> None:
    if args.action in ("reshard", "rebalance") and not 0 < args.ack_timeout <= 8:
        raise AdminError("--ack-timeout must be within 0-8 s: requests held for a migration "
                         "being prepared wait 10 s at most")
    if args.action in ("reshard", "rebalance") and args.batch < 1:
        raise AdminError("--batch must be at least 1")
    zk = _connect(pool)
    try:
        cluster = reshard.Cluster(zk, pool)
        if args.action == "add-shard":
            print(reshard.add_shard(cluster, args.name))
            return
        if args.action == "remove-shard":
            print(reshard.remove_shard(cluster, args.name))
            return
        options = reshard.Options(dry_run=args.dry_run, yes=args.yes, force=args.force,
                                  batch=args.batch, rate=args.rate,
                                  ack_timeout=args.ack_timeout)
        if args.action == "reshard":
            slots = reshard.slots_argument(args.slots)
            reshard.Resharder(cluster, options).run(
                lambda layout: layout_plans.plan_reshard(layout, slots, args.to))
        else:
            reshard.Resharder(cluster, options).run(layout_plans.plan_rebalance)
    except (reshard.ReshardError, layout_plans.LayoutError, zkschema.SchemaError) as exc:
        raise AdminError(str(exc)) from None
    finally:
        zk.stop()
        zk.close()


def _hotkeys_source(loaded: configuration.Config | None,
                    args: argparse.Namespace) -> tuple[list[str], str | None]:
    """(metrics addresses, pool name or None for all) for ``hotkeys``."""
    if args.top < 1:
        raise AdminError("--top must be at least 1", 2)
    if args.metrics is not None:
        try:
            host, port = address.parse_endpoint(args.metrics)
        except address.AddressError as exc:
            raise AdminError(f"--metrics: expected [HOST:]PORT, got {args.metrics!r} ({exc})",
                             2) from None
        pool = args.pool if loaded is None else _pool(loaded, args.pool).name
        return [f"{host}:{port}"], pool
    assert loaded is not None
    pool = _pool(loaded, args.pool)
    if not pool.uses_zookeeper:
        raise AdminError(f"{loaded.path}: pool {pool.name!r} has no zookeeper_* keys: give "
                         f"--metrics HOST:PORT of its proxy")
    where = registered_metrics(pool)
    if not where:
        raise AdminError(f"no proxy registered at {pool.zookeeper_path} tells a metrics address "
                         f"(is it running with --metrics?); or give --metrics HOST:PORT")
    return where, pool.name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # kazoo narrates every failed connection attempt; the admin reports one line instead
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    if args.action == "hotkeys" and args.conf_file is None and args.metrics is None:
        print("pyproxy-admin: hotkeys needs -c FILE (a ZooKeeper pool) or --metrics HOST:PORT",
              file=sys.stderr)
        return 2
    try:
        loaded = configuration.load(args.conf_file) if args.conf_file is not None else None
    except configuration.ConfigError as exc:
        for line in exc.errors:
            print(f"pyproxy-admin: {line}", file=sys.stderr)
        return 1
    try:
        if args.action == "hotkeys":
            view = hotkeys(*_hotkeys_source(loaded, args), args.top)
            print(json.dumps(view, indent=2)) if args.json else _print_hotkeys(view)
            return 0
        assert loaded is not None  # every other action requires -c
        if args.action == "check":
            count = len(loaded.pools)
            print(f"pyproxy-admin: {args.conf_file}: ok ({count} pool{'' if count == 1 else 's'})")
        elif args.action == "init":
            for line in init(_zk_pool(loaded, args.pool), args.force) or ["nothing to do"]:
                print(line)
        elif args.action == "status":
            view = status(_zk_pool(loaded, args.pool))
            print(json.dumps(view, indent=2)) if args.json else _print_status(view)
        elif args.action in RESHARDING:
            _reshard(_zk_pool(loaded, args.pool), args)
        else:
            result = slot(_pool(loaded, args.pool), args.key.encode(), args.offline)
            print(json.dumps(result)) if args.json else _print_slot(result)
    except AdminError as exc:
        print(f"pyproxy-admin: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("pyproxy-admin: interrupted; run the same command again to continue",
              file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"pyproxy-admin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
