"""The watchdog's status page on its ``--metrics`` port: ``/`` (HTML) and ``/status.json``.

The control loop (``daemon``) is the only thread that changes the watchdog's state; after
every turn it publishes a ``View`` — immutable, built from copies — into ``Metrics``, and the
HTTP server's thread renders the last one published (a reference read: nothing it reads can
change under it). The counters come from the watchdog's Prometheus registry, which is
thread-safe.

What it shows: the redis guarded and what its last health check said (role, the master it
follows and the link, offset, consecutive failures), ZooKeeper (connected, session, our node,
the shard's members in order: the first is the master), whether the redis is fenced, health
checks and promotions counted, and the recent actions (fence, follow, promote, register, ...).

Pure: no I/O (the caller passes the time the page is made).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from .. import __version__
from ..web import document, esc, table

EVENTS_KEPT = 20  # recent actions on the page


@dataclass(frozen=True, slots=True)
class Event:
    time: float  # unix
    text: str


@dataclass(frozen=True, slots=True)
class Member:
    node: str
    address: str


@dataclass(frozen=True, slots=True)
class View:
    """The watchdog after one turn of its loop (see the module docstring)."""

    redis: str  # host:port guarded
    shard: str  # the ZooKeeper shard path
    started: float  # unix
    role: str | None  # the last successful health check's; None: that check failed
    follows: str | None  # the master it replicates (replicas)
    link_up: bool
    offset: int | None
    failures: int  # consecutive failed health checks
    failure_limit: int
    connected: bool  # to ZooKeeper
    session: int | None
    node: str | None  # our node's name, when registered
    members: tuple[Member, ...] | None  # by sequence; None: not listed (no ZooKeeper)
    fenced_for: float | None  # seconds writes have been paused; None: not fenced
    events: tuple[Event, ...]  # newest first


def report(view: View, registry: CollectorRegistry, generated: float) -> dict[str, Any]:
    """The JSON twin."""
    def counted(name: str, labels: dict[str, str] | None = None) -> int:
        return int(registry.get_sample_value(name, labels or {}) or 0)

    members = None if view.members is None else [
        {"node": m.node, "address": m.address, "master": index == 0, "me": m.node == view.node}
        for index, m in enumerate(view.members)]
    return {
        "version": __version__, "generated": generated, "started": view.started,
        "uptime_s": generated - view.started, "redis": view.redis, "shard": view.shard,
        "health": {"ok": view.role is not None, "role": view.role, "follows": view.follows,
                   "link_up": view.link_up, "offset": view.offset, "failures": view.failures,
                   "failure_limit": view.failure_limit},
        "zookeeper": {"connected": view.connected,
                      "session": None if view.session is None else f"0x{view.session:x}",
                      "node": view.node, "members": members},
        "fenced": view.fenced_for is not None, "fenced_for_s": view.fenced_for,
        "checks": {"ok": counted("pyproxy_watchdog_health_checks_total", {"result": "ok"}),
                   "fail": counted("pyproxy_watchdog_health_checks_total", {"result": "fail"})},
        "promotions": counted("pyproxy_watchdog_promotions_total"),
        "events": [{"time": e.time, "text": e.text} for e in view.events],
    }


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def _yes(flag: bool, yes: str, no: str) -> str:
    return f'<span class="up">{esc(yes)}</span>' if flag else f'<span class="down">{esc(no)}</span>'


def render(data: dict[str, Any]) -> str:
    health, zk = data["health"], data["zookeeper"]
    if health["ok"]:
        role = health["role"] if health["role"] == "master" else (
            f"replica of {health['follows']} (link {'up' if health['link_up'] else 'down'})")
        answer = f'<span class="up">answers</span>: {esc(role)}, offset {health["offset"]}'
    else:
        answer = (f'<span class="down">not answering</span>: {health["failures"]} of '
                  f'{health["failure_limit"]} checks failed')
    fenced = ('<span class="none">no</span>' if not data["fenced"] else
              f'<span class="warn">yes, writes paused for {data["fenced_for_s"]:.1f} s</span>')
    facts = [("redis", f"<code>{esc(data['redis'])}</code>"), ("health", answer),
             ("fenced", fenced),
             ("ZooKeeper", _yes(zk["connected"], f"connected, session {zk['session']}",
                                "not connected")),
             ("node", f"<code>{esc(zk['node'])}</code>" if zk["node"] else
              '<span class="down">not registered</span>'),
             ("checks", f"{data['checks']['ok']:,} ok / {data['checks']['fail']:,} failed"),
             ("promotions", str(data["promotions"]))]
    body = ['<section class="pool"><h2>shard ' + esc(data["shard"]) + "</h2>",
            '<div class="facts">' + "".join(f"<span>{esc(k)} <b>{v}</b></span>"
                                            for k, v in facts) + "</div>"]
    rows = [[f"<code>{esc(m['node'])}</code>", f"<code>{esc(m['address'])}</code>",
             "master" if m["master"] else "replica", "this watchdog" if m["me"] else ""]
            for m in zk["members"] or []]
    body.append("<h3>Members in ZooKeeper (the first is the master)</h3>")
    body.append(table(["node", "redis", "as", ""], rows, "none registered" if
                      zk["members"] is not None else "not listed: ZooKeeper not connected",
                      ' class="members"'))
    body.append("<h3>Recent actions</h3>")
    body.append(table(["when", "what"], [[esc(_when(e["time"])), esc(e["text"])]
                                        for e in data["events"]],
                      "nothing done since start"))
    body.append("</section>")
    uptime = data["uptime_s"] / 3600
    return document(f"pyproxy-watchdog {data['redis']}",
                    f"{data['version']}, up {uptime:.1f} h — JSON at /status.json, Prometheus "
                    "at /metrics", f"at {_when(data['generated'])}", "".join(body))
