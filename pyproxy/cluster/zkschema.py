"""The ZooKeeper layout (README "ZooKeeper layout"): paths, node names and payloads, for proxy,
watchdog and admin alike.

::

    <zookeeper_path>                       ephemeral, this proxy (JSON: ProxyInfo)
    <cluster>                              persistent (zookeeper_redis_path)
    <cluster>/redis-0000                   persistent, data {"weight":"0-2047"}
    <cluster>/redis-0000/<ip:port>-<seq>   ephemeral sequential, one per live redis

Invariants:

* Within a shard the member with the lowest sequence number is the master; the rest are
  replicas in sequence order. Sequence numbers are compared as integers (ZooKeeper counts
  deletions too, so they are not consecutive), never by the whole name.
* ``parse_weight`` accepts the seed's ``{"weight":"0-2047"}``; anything else is a
  ``SchemaError`` naming the node, so one bad shard never crashes a reader.

Pure: no kazoo, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .. import address

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


def weight_data(start: int, end: int) -> bytes:
    return json.dumps({"weight": f"{start}-{end}"}, separators=(",", ":")).encode()


def parse_weight(data: bytes | None, where: str) -> tuple[int, int]:
    """``{"weight":"0-2047"}`` -> (0, 2047)."""
    try:
        doc = json.loads(data or b"")
        text = doc["weight"]
        start_text, end_text = str(text).split("-")
        start, end = int(start_text), int(end_text)
    except (ValueError, KeyError, TypeError, AttributeError):
        shown = (data or b"").decode(errors="replace")[:80]
        raise SchemaError(f"{where}: data {shown!r} is not {{\"weight\":\"start-end\"}}") from None
    if start < 0 or end < start:
        raise SchemaError(f"{where}: weight {start}-{end} is not a valid slot range")
    return start, end


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

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> ProxyInfo:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"proxy node data is not ProxyInfo JSON: {exc}") from None
