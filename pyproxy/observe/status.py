"""The proxy's status page: ``report`` (the JSON twin, ``/status.json``) and ``render`` (the
HTML page at ``/``), both pure functions of snapshots.

``report(now, previous, seconds, roles)`` describes every pool from a ``ProxySnapshot``:
its shards with their slot ranges, migration, master and replicas as ZooKeeper (the routing
table) names them and as each redis itself answers ``ROLE`` (``roles``: address -> what it
said, see ``proxy/roles``), whether the proxy has a connection to each master, and — from
the difference with ``previous``, ``seconds`` older (None: since start) — requests per
second and latency quantiles per shard and per pool, and each slot's recent load; the hot
keys, the slowlog and the recent topology events (failovers, migrations).

``render(report)`` draws that, nothing more: the page holds no logic of its own beyond
formatting. Quantiles are the upper bound of the histogram bucket they fall in ("p99 ≤ 2.5
ms"): the histograms' buckets are all the proxy keeps.

Pure: no I/O, no clock (times come in the snapshots and ``seconds``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .. import __version__
from ..routing.routes import Routes
from ..routing.table import RoutingTable, format_ranges
from ..web import document, esc, table
from .snapshot import PoolSnapshot, ProxySnapshot
from .stats import LATENCY_BUCKETS, Histogram


class RoleAnswer(Protocol):
    """What a redis said to ROLE (``proxy.roles.Role``)."""

    @property
    def role(self) -> str: ...

    @property
    def follows(self) -> str: ...

    @property
    def link(self) -> str: ...

    @property
    def offset(self) -> int: ...

    @property
    def error(self) -> str: ...


PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#86bcb6", "#8cd17d", "#d4a6c8")
HEAT = ("#f3f5f8", "#fde8c8", "#fdd49e", "#fdbb84", "#fc8d59", "#ef6548", "#d7301f",
        "#990000")
GRID = 64  # slots per row of the maps: 64 x 64 = 4096
STANDS_OUT = 3  # samples a hot key must have beyond its count's error to be shown


def _key_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The upper bound (seconds) of the bucket holding the q-quantile; None without data,
    ``inf`` when it lies past the last bound."""
    total = sum(counts)
    if not total:
        return None
    running = 0
    for index, count in enumerate(counts):
        running += count
        if running >= q * total:
            return LATENCY_BUCKETS[index] if index < len(LATENCY_BUCKETS) else float("inf")
    return float("inf")


def _since(now: Histogram, before: Histogram | None) -> list[int]:
    """The counts since ``before``; all of ``now`` if a count went down (the backend was
    made anew, e.g. its address left the table and came back: its counters restarted)."""
    if before is None:
        return list(now.counts)
    since = [a - b for a, b in zip(now.counts, before.counts, strict=True)]
    return list(now.counts) if min(since) < 0 else since


def _latency(counts: list[int]) -> dict[str, float | None]:
    def ms(q: float) -> float | None:
        value = quantile(counts, q)
        return None if value is None else value * 1000.0

    return {"p50_ms": ms(0.5), "p99_ms": ms(0.99), "count": sum(counts)}


def _rate(now: int, before: int | None, seconds: float | None) -> float | None:
    if before is None or not seconds:
        return None
    return max(0, now - before) / seconds


def _members(shard_master: str | None, replicas: tuple[str, ...],
             roles: Mapping[str, RoleAnswer]) -> list[dict[str, Any]]:
    members = []
    for where, named in ([(shard_master, "master")] if shard_master else []) + [
            (r, "replica") for r in replicas]:
        answer = roles.get(where)
        member: dict[str, Any] = {"address": where, "zookeeper": named}
        if answer is not None:
            member.update(role=answer.role, follows=answer.follows, link=answer.link,
                          offset=answer.offset, error=answer.error)
            member["agrees"] = (answer.role == "master") == (named == "master") and (
                named == "master" or answer.follows == shard_master)
        members.append(member)
    return members


def _pool(view: PoolSnapshot, before: PoolSnapshot | None, seconds: float | None,
          roles: Mapping[str, RoleAnswer]) -> dict[str, Any]:
    table = view.table
    shards = []
    for index, shard in enumerate(table.shards):
        backend = view.backend_of(index)
        old = before.backends.get(shard.master) if before and shard.master else None
        entry: dict[str, Any] = {
            "name": shard.name, "ranges": [list(r) for r in shard.ranges],
            "ranges_text": format_ranges(shard.ranges), "slots": shard.slots,
            "master": shard.master, "replicas": list(shard.replicas),
            "members": _members(shard.master, shard.replicas, roles),
            "migration": None if shard.migration is None else {
                "slots": format_ranges(shard.migration.slots), "target": shard.migration.target,
                "id": shard.migration.id, "state": shard.migration.state},
            "up": None if backend is None else bool(backend.connections),
        }
        if backend is not None:
            served, old_served = backend.stats, old.stats if old is not None else None
            entry.update(
                inflight=backend.inflight, requests=served.requests,
                requests_per_s=_rate(served.requests,
                                     old_served.requests if old_served else None, seconds),
                latency=_latency(_since(served.latency, old_served.latency if old_served
                                        else None)))
        shards.append(entry)
    activity = view.activity
    slots = list(activity.slot_requests) if activity else []
    old_slots = before.activity.slot_requests if before and before.activity else None
    recent = ([max(0, a - b) for a, b in zip(slots, old_slots, strict=True)]
              if old_slots is not None and len(old_slots) == len(slots) else slots)
    stats = view.stats
    old_pool = before.stats if before is not None else None
    report: dict[str, Any] = {
        "name": view.name, "listen": view.listen, "clients": view.clients,
        "requests": stats.requests,
        "requests_per_s": _rate(stats.requests, old_pool.requests if old_pool else None,
                                seconds),
        "latency": _latency(_since(stats.latency, old_pool.latency if old_pool else None)),
        "table": {"version": table.version, "source": table.source, "hash": table.hash,
                  "distribution": table.distribution, "modulus": table.modulus},
        "zookeeper": None if view.topology is None else {
            "session": view.topology.session_state, "registered": view.topology.registered,
            "changes": view.topology.changes, "rejected": view.topology.rejected,
            "master_changes": dict(view.topology.master_changes)},
        "shards": shards, "slot_requests": slots, "slot_recent": recent,
        "hot_keys": _hot_keys(view, table), "slowlog": [], "events": [],
    }
    if activity is not None:
        report["slowlog"] = [
            {"id": e.id, "time": e.time, "duration_us": e.duration_us,
             "args": [_key_text(a) for a in e.args], "addr": e.addr,
             "name": _key_text(e.name), "shard": e.shard} for e in activity.slowlog]
        report["events"] = [{"time": e.time, "version": e.version, "kind": e.kind,
                             "shard": e.shard, "text": e.text} for e in activity.events]
    return report


def _hot_keys(view: PoolSnapshot, table: RoutingTable) -> dict[str, Any]:
    activity = view.activity
    if activity is None:
        return {"samples": 0, "sample_every": 0, "keys": []}
    names = Routes(table, [s.name for s in table.shards], activity.hash_tag)
    masters = {s.name: s.master for s in table.shards}
    keys = []
    for hot in activity.hot_keys:
        shard = names.locate(hot.key)
        keys.append({"key": _key_text(hot.key), "count": hot.count, "error": hot.error,
                     "share": hot.share(activity.hot_samples),
                     "share_at_least": max(0, hot.count - hot.error) / activity.hot_samples
                     if activity.hot_samples else 0.0,
                     "shard": shard, "master": masters.get(shard)})
    return {"samples": activity.hot_samples, "sample_every": activity.sample_every,
            "keys": keys}


def report(now: ProxySnapshot, previous: ProxySnapshot | None, seconds: float | None,
           roles: Mapping[str, RoleAnswer], generated: float) -> dict[str, Any]:
    """The JSON twin: every pool, rates over the last ``seconds`` (None: no previous)."""
    old = {p.name: p for p in previous.pools} if previous is not None else {}
    return {
        "version": __version__, "started": now.started, "generated": generated,
        "uptime_s": generated - now.started, "window_s": seconds,
        "pools": [_pool(p, old.get(p.name), seconds, roles) for p in now.pools],
    }


# ------------------------------------------------------------------ HTML


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value == float("inf"):
        return f"> {LATENCY_BUCKETS[-1] * 1000:g} ms"
    return f"≤ {value:g} ms"


def _per_s(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}/s" if value >= 10 else f"{value:.1f}/s"


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _slot_map(cells: list[str], titles: list[str], label: str) -> str:
    """A GRID-wide SVG of one colour per slot, runs of equal colour in a row drawn as one
    rect (with its slots in a tooltip)."""
    rows = max(1, -(-len(cells) // GRID))
    parts = [f'<svg class="slots" viewBox="0 0 {GRID} {rows}" preserveAspectRatio="none" '
             f'role="img" aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">']
    for row in range(rows):
        col = 0
        start = row * GRID
        while col < GRID and start + col < len(cells):
            slot = start + col
            run = 1
            while (col + run < GRID and slot + run < len(cells)
                   and cells[slot + run] == cells[slot] and titles[slot + run] == titles[slot]):
                run += 1
            tip = f"slot {slot}" if run == 1 else f"slots {slot}-{slot + run - 1}"
            parts.append(f'<rect x="{col}" y="{row}" width="{run}" height="1" '
                         f'fill="{cells[slot]}"><title>{esc(tip)}: {esc(titles[slot])}'
                         "</title></rect>")
            col += run
    parts.append("</svg>")
    return "".join(parts)


def _maps(pool: dict[str, Any]) -> str:
    modulus = pool["table"]["modulus"]
    if pool["table"]["distribution"] != "modula" or modulus > GRID * GRID:
        return ('<p class="none">keys are placed by '
                f'{esc(pool["table"]["distribution"])}: no slot map</p>')
    owner = [""] * modulus
    owner_title = [""] * modulus
    legend = []
    for index, shard in enumerate(pool["shards"]):
        colour = _colour(index)
        legend.append(f'<span><span class="swatch" style="background:{colour}"></span>'
                      f'{esc(shard["name"])} {esc(shard["ranges_text"] or "no slots")}</span>')
        for start, end in shard["ranges"]:
            for slot in range(start, end + 1):
                owner[slot], owner_title[slot] = colour, shard["name"]
        moving = shard["migration"]
        if moving:
            for part in moving["slots"].split(","):
                a, _, b = part.partition("-")
                for slot in range(int(a), int(b or a) + 1):
                    owner[slot] = "#222"
                    owner_title[slot] = (f"{shard['name']} -> {moving['target']} "
                                         f"({moving['state']})")
    recent = pool["slot_recent"] or [0] * modulus
    peak = max(recent) or 1
    heat = [HEAT[_heat_level(n, peak)] for n in recent]
    heat_title = [f"{n} keys" for n in recent]
    window = "since the last refresh" if pool["requests_per_s"] is not None else "since start"
    return (
        '<div class="maps">'
        f'<figure>{_slot_map(owner, owner_title, "slots by shard")}'
        '<figcaption>slots by shard (black: migrating)</figcaption></figure>'
        f'<figure>{_slot_map(heat, heat_title, "slots by load")}'
        f'<figcaption>keys per slot {esc(window)} (darkest: {peak:,})</figcaption></figure>'
        f'</div><div class="legend">{"".join(legend)}</div>')


def _heat_level(count: int, peak: int) -> int:
    """0 for an idle slot, else 1..len(HEAT)-1 on a log scale up to ``peak`` (one hot slot
    must not wash out the others)."""
    if count <= 0:
        return 0
    top = len(HEAT) - 1
    if peak <= 1:
        return top
    return 1 + min(top - 1, int((top - 1) * math.log(count) / math.log(peak)))


def _member_cell(member: dict[str, Any]) -> str:
    said = member.get("role")
    if said is None:
        return f"<code>{esc(member['address'])}</code>"
    if not said:
        text = f'<span class="down">no answer</span> <span class="none">{esc(member["error"])}'
        return f"<code>{esc(member['address'])}</code> {text}</span>"
    detail = said
    if said == "slave":
        detail = f"replica of {member['follows']} (link {member['link']})"
    mark = "" if member.get("agrees") else ' <span class="warn">≠ ZooKeeper</span>'
    return (f"<code>{esc(member['address'])}</code> "
            f'<span class="none">ROLE: {esc(detail)}, offset {member["offset"]}</span>{mark}')


def _shards(pool: dict[str, Any]) -> str:
    rows = []
    for index, shard in enumerate(pool["shards"]):
        members = shard["members"]
        master = [m for m in members if m["zookeeper"] == "master"]
        replicas = [m for m in members if m["zookeeper"] == "replica"]
        up = shard["up"]
        state = ('<span class="none">no master</span>' if up is None else
                 '<span class="up">up</span>' if up else '<span class="down">down</span>')
        latency = shard.get("latency") or {}
        moving = shard["migration"]
        rows.append([
            f'<span class="swatch" style="background:{_colour(index)}"></span>'
            f'<b data-shard="{esc(shard["name"])}">{esc(shard["name"])}</b>',
            f'<code class="ranges">{esc(shard["ranges_text"] or "none")}</code>'
            f' <span class="none">({shard["slots"]})</span>',
            _member_cell(master[0]) if master else '<span class="down">none</span>',
            "<br>".join(_member_cell(m) for m in replicas) or '<span class="none">none</span>',
            state,
            _per_s(shard.get("requests_per_s")),
            f'{_ms(latency.get("p50_ms"))} / {_ms(latency.get("p99_ms"))}',
            str(shard.get("inflight", "–")),
            esc(f"{moving['state']}: {moving['slots']} -> {moving['target']}") if moving
            else "",
        ])
    return table(["shard", "slots", "master (ZooKeeper, then ROLE)", "replicas", "backend",
                  "requests", "p50 / p99", "in flight", "migration"], rows,
                 attrs=' class="shards"')


def _events(pool: dict[str, Any]) -> str:
    rows = [[esc(_when(e["time"])), esc(e["kind"]), esc(e["shard"]), esc(e["text"]),
             str(e["version"])] for e in pool["events"]]
    return table(["when", "what", "shard", "change", "table"], rows,
                 "no failover, migration or slot change since start")


def _hot(pool: dict[str, Any]) -> str:
    """The keys whose count is more than its error can explain (the rest may be noise: with
    every key equally hot, the summary holds whichever came last)."""
    hot = pool["hot_keys"]
    rows = []
    for item in hot["keys"]:
        if item["count"] - item["error"] < STANDS_OUT:
            continue
        width = max(1, round(item["share"] * 200))
        rows.append([f"<code>{esc(item['key'])}</code>",
                     f'<span class="bar" style="width:{width}px"></span>'
                     f'{item["share"] * 100:.1f} %',
                     esc(item["shard"]), f"<code>{esc(item['master'] or 'none')}</code>"])
    note = (f'<p class="none">1 key in {hot["sample_every"]} sampled on average; '
            f'{hot["samples"]:,} samples (halved each minute); shown: keys with at least '
            f"{STANDS_OUT} samples beyond what their count may overestimate</p>")
    return table(["key", "share of requests", "shard", "master"], rows,
                 "no key stands out") + note


def _slowlog(pool: dict[str, Any]) -> str:
    rows = [[str(e["id"]), esc(_when(e["time"])), f'{e["duration_us"] / 1000:,.1f} ms',
             f"<code>{esc(' '.join(e['args']))}</code>", esc(e["shard"]),
             f"<code>{esc(e['addr'])}</code> {esc(e['name'])}"]
            for e in pool["slowlog"][:20]]
    return table(["id", "when", "took", "command", "shard", "client"], rows,
                 "no slow request logged")


def _pool_html(pool: dict[str, Any]) -> str:
    zk = pool["zookeeper"]
    latency = pool["latency"]
    facts = [("listen", pool["listen"]), ("clients", pool["clients"]),
             ("requests", _per_s(pool["requests_per_s"])),
             ("p50 / p99", f"{_ms(latency['p50_ms'])} / {_ms(latency['p99_ms'])}"),
             ("table", f"v{pool['table']['version']} from {pool['table']['source']}, "
                       f"{pool['table']['hash']} + {pool['table']['distribution']}")]
    if zk is not None:
        facts.append(("ZooKeeper", f"{zk['session']}, "
                                   f"{'registered' if zk['registered'] else 'NOT registered'}"))
    fact_html = "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>" for k, v in facts)
    return (f'<section class="pool" data-pool="{esc(pool["name"])}">'
            f'<h2>pool {esc(pool["name"])}</h2><div class="facts">{fact_html}</div>'
            f"<h3>Slots</h3>{_maps(pool)}<h3>Shards</h3>{_shards(pool)}"
            f"<h3>Recent failovers and migrations</h3>{_events(pool)}"
            f"<h3>Hot keys</h3>{_hot(pool)}<h3>Slowlog</h3>{_slowlog(pool)}</section>")


def render(status: dict[str, Any], refresh: int = 5) -> str:
    """The HTML page of a ``report``."""
    body = "".join(_pool_html(pool) for pool in status["pools"]) or '<p class="none">no pool</p>'
    subtitle = (f"pyproxy {status['version']}, up {status['uptime_s'] / 3600:.1f} h — "
                "JSON at /status.json, Prometheus at /metrics")
    return document("pyproxy status", subtitle, f"at {_when(status['generated'])}", body,
                    refresh)
