"""The ZooKeeper layout (README "ZooKeeper layout"): paths, node names and payloads, for proxy,
watchdog and admin alike.

::

    <zookeeper_path>                       ephemeral, this proxy (JSON: ProxyInfo)
    <cluster>                              persistent (zookeeper_redis_path)
    <cluster>/redis-0000                   persistent, data {"weight":"0-2047"}
    <cluster>/redis-0000/<ip:port>-<seq>   ephemeral sequential, one per live redis

A shard's data (``shard_data`` writes it, ``parse_shard`` reads it)::

    {"weight":"0-1023,2048-2559"}          the slots it owns: ranges, or "" for none
    {"weight":"0-2047",                    ... and, on the SOURCE shard of a migration,
     "migrating":{"slots":"1024-2047",     the slots (of its own) moving,
                  "to":"redis-0002",       the shard they move to,
                  "id":"<uuid>",           which migration (``pyproxy-admin`` makes one),
                  "state":"prepare"}}      "prepare", then "moving" (see ``routing.table``)

Invariants:

* Within a shard the member with the lowest sequence number is the master; the rest are
  replicas in sequence order. Sequence numbers are compared as integers (ZooKeeper counts
  deletions too, so they are not consecutive), never by the whole name.
* ``parse_shard`` accepts the seed's ``{"weight":"0-2047"}`` and the forms above; anything
  else is a ``SchemaError`` naming the node, so one bad shard never crashes a reader.
* ``layout_digest`` names a cluster's slot layout (ranges and migrations, not masters): a
  proxy publishes the digest it routes by in its node (``ProxyInfo.layout``), which is how
  ``pyproxy-admin`` knows every proxy has applied a step of a migration.

Pure: no kazoo, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .. import address
from ..routing.table import MIGRATION_STATES, Migration, Ranges, format_ranges

SHARD_PREFIX = "redis-"


class SchemaError(ValueError):
    """Data in ZooKeeper that does not follow the layout."""


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:04d}"


def shard_path(cluster: str, shard: str) -> str:
    return f"{cluster.rstrip('/')}/{shard}"


def member_prefix(address: str) -> str:
    """The name a watchdog creates (ZooKeeper appends the 10-digit sequence)."""
    return f"{address}-"


def shard_data(ranges: Ranges, migration: Migration | None = None) -> bytes:
    doc: dict[str, object] = {"weight": format_ranges(ranges)}
    if migration is not None:
        doc["migrating"] = {"slots": format_ranges(migration.slots), "to": migration.target,
                            "id": migration.id, "state": migration.state}
    return json.dumps(doc, separators=(",", ":")).encode()


def weight_data(start: int, end: int) -> bytes:
    """The seed's ``{"weight":"start-end"}``: one range, no migration."""
    return shard_data(((start, end),))


def parse_ranges(text: object, where: str) -> Ranges:
    """``"0-1023,2048-2559"`` -> ((0, 1023), (2048, 2559)); ``""`` -> (). Ascending, apart."""
    if not isinstance(text, str):
        raise SchemaError(f"{where}: {text!r} is not a string of slot ranges")
    ranges: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start_text, sep, end_text = part.partition("-")
        if not (sep and start_text.isdigit() and end_text.isdigit()):
            raise SchemaError(f"{where}: {part!r} is not a slot range start-end")
        start, end = int(start_text), int(end_text)
        if end < start or (ranges and start <= ranges[-1][1]):
            raise SchemaError(f"{where}: {text!r} is not ascending, non-overlapping ranges")
        ranges.append((start, end))
    return tuple(ranges)


def parse_shard(data: bytes | None, where: str) -> tuple[Ranges, Migration | None]:
    """A shard's data -> (its ranges, the migration it is the source of)."""
    try:
        doc = json.loads(data or b"")
        weight = doc["weight"]
    except (ValueError, KeyError, TypeError):
        shown = (data or b"").decode(errors="replace")[:80]
        raise SchemaError(f"{where}: data {shown!r} is not {{\"weight\":\"start-end\"}}") from None
    ranges = parse_ranges(weight, f"{where} weight")
    moving = doc.get("migrating") if isinstance(doc, dict) else None
    if moving is None:
        return ranges, None
    try:
        migration = Migration(parse_ranges(moving["slots"], f"{where} migrating slots"),
                              str(moving["to"]), str(moving["id"]), str(moving["state"]))
    except (KeyError, TypeError):
        raise SchemaError(f"{where}: migrating {moving!r} lacks slots, to, id or state") from None
    if migration.state not in MIGRATION_STATES or not migration.slots:
        raise SchemaError(f"{where}: migrating {moving!r}: no slots, or state not one of "
                          f"{', '.join(MIGRATION_STATES)}")
    return ranges, migration


def layout_digest(shards: Iterable[tuple[str, Ranges, Migration | None]]) -> str:
    """A short name for a slot layout: ``(shard, ranges, migration)`` of every shard."""
    text = json.dumps(sorted(
        [name, format_ranges(ranges), None if m is None else
         [format_ranges(m.slots), m.target, m.id, m.state]] for name, ranges, m in shards))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Member:
    """One registered redis of a shard: ``<host:port>-<seq>``."""

    name: str
    address: str
    sequence: int


def parse_member(name: str) -> Member | None:
    """Parse a child name; None for names that are not ``host:port-NNNNNNNNNN`` with a valid
    host and port (see ``address``)."""
    member_address, sep, seq = name.rpartition("-")
    if not sep or not seq.isdigit():
        return None
    try:
        address.parse(member_address)
    except address.AddressError:
        return None
    return Member(name, member_address, int(seq))


def order_members(names: list[str]) -> list[Member]:
    """Members by sequence number: the first is the master."""
    members = [m for m in (parse_member(n) for n in names) if m is not None]
    members.sort(key=lambda m: m.sequence)
    return members


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What a proxy writes into its ephemeral node."""

    listen: str
    version: str
    pid: int
    started: float
    config_digest: str
    topology_version: int
    pool: str
    layout: str = ""  # layout_digest of the table it routes by ("" until ZooKeeper's)
    metrics: str = ""  # host:port of its --metrics (status page, /status.json); "" if none

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> ProxyInfo:
        """Keys this version does not know (a newer proxy's) are left out."""
        try:
            fields = json.loads(data)
            return cls(**{name: fields[name] for name in cls.__dataclass_fields__
                          if name in fields})
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"proxy node data is not ProxyInfo JSON: {exc}") from None
