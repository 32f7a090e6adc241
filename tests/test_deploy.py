"""deploy/: the Prometheus alert rules, the Grafana dashboard, the systemd units and the
logrotate snippet, each checked by the tool that will read it.

* alert rules: ``promtool check rules`` and the unit tests ``promtool test rules`` (every alert
  fires in one test and stays quiet in another); the example scrape config by
  ``promtool check config``;
* the dashboard: importable JSON, every query valid PromQL (given to promtool as recording
  rules), and every ``pyproxy_*`` series it or the rules use exported — by the code's metric
  tables and by a real scrape of a running proxy (with a ZooKeeper pool) and watchdog;
* the units: ``systemd-analyze verify``, their command lines accepted by the programs;
* logrotate: the snippet rotates the logs of a running proxy and watchdog, whose next lines
  go to the new files.

promtool, systemd-analyze and logrotate come with ``make test`` (scripts/deps.py).
"""

from __future__ import annotations

import getpass
import grp
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyproxy.cluster import zkschema
from pyproxy.observe.metrics import BACKEND_SERIES, MIGRATION_SERIES, POOL_SERIES
from pyproxy.watchdog import cli as watchdog_cli
from pyproxy.watchdog.metrics import Metrics
from tests import test_watchdog
from tests.servers import (
    REPO_ROOT,
    free_port,
    pool_config,
    redis_client,
    require_binary,
    two_shards,
    wait_until,
)
from tests.test_watchdog import DEADLINE, Watchdog, members

DEPLOY = REPO_ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "pyproxy-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "pyproxy-alerts.test.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "pyproxy-dashboard.json"
UNITS = DEPLOY / "systemd"
LOGROTATE = DEPLOY / "logrotate" / "pyproxy"

METRIC = re.compile(r"\bpyproxy_[a-z0-9_]+\b")

zk = test_watchdog.zk  # the fixture: a client on a fresh chroot with SHARD laid out


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


# --------------------------------------------------------------------------- alert rules


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    names = {rule["alert"] for rule in _alerts()}
    assert names >= {"PyproxyShardWithoutMaster", "PyproxyBackendDown", "PyproxyNotRegistered",
                     "PyproxyTopologyRejected", "PyproxyLatencyHigh",
                     "PyproxyFailoverHoldExhausted"}
    for name in names:
        fired = [c for c in cases if c["alertname"] == name and c["exp_alerts"]]
        quiet = [c for c in cases if c["alertname"] == name and not c["exp_alerts"]]
        assert fired, f"no unit test where {name} fires"
        assert quiet, f"no unit test where {name} stays quiet"


def test_example_scrape_config_is_valid() -> None:
    checked = promtool("check", "config", SCRAPE_CONFIG.name, cwd=SCRAPE_CONFIG.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --------------------------------------------------------------------------- the dashboard


def _panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in items:
        found.append(panel)
        found += _panels(panel.get("panels", []))
    return found


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used - variables)


def _as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables given values, for promtool."""
    if expr.startswith("label_values("):  # Grafana's own function around a selector
        expr = expr[len("label_values("):].rsplit(",", 1)[0]
    return re.sub(r"\$(\w+)", lambda m: "5m" if m[1] == "__rate_interval" else ".*", expr)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = _queries(json.loads(DASHBOARD.read_text()))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": _as_promql(q)} for i, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(queries)} rules found" in checked.stdout


def _exposed_names(text: str) -> set[str]:
    """Every sample name a Prometheus text exposition can carry: its samples, and for each
    family declared (some have no sample yet, e.g. no master change so far) its names."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            if kind == "histogram":
                names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
            elif kind == "counter":
                names |= {family, family if family.endswith("_total") else f"{family}_total"}
            else:
                names.add(family)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _code_tables() -> set[str]:
    """The series the code's tables name (the proxy's) and the watchdog's registry holds."""
    names = {f"pyproxy_{series}" + ("" if series.endswith("_total") else "_total")
             for series, (kind, _, _) in POOL_SERIES.items() if kind == "counter"}
    names |= {f"pyproxy_{series}" for series, (kind, _, _) in POOL_SERIES.items()
              if kind == "gauge"}
    names |= {f"pyproxy_backend_{series}_total" for series in BACKEND_SERIES}
    names |= {f"pyproxy_migration_{series}_total" for series in MIGRATION_SERIES}
    names |= {sample.name for family in Metrics().registry.collect() for sample in family.samples}
    return names


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        return str(page.read().decode())


def test_dashboard_and_rules_use_only_exported_series(
        redis_factory: Any, proxy_factory: Any, zk: Any, zk_hosts: str) -> None:
    a, b = redis_factory(), redis_factory()
    # a ZooKeeper pool, so the topology and session series are there too
    for index, (start, end) in enumerate([(0, 2047), (2048, 4095)]):
        zk.create(f"/c/{zkschema.shard_name(index)}", zkschema.weight_data(start, end),
                  makepath=True)
    zk.create(f"/c/redis-0000/{a.address}-", ephemeral=True, sequence=True)
    zk.create(f"/c/redis-0001/{b.address}-", ephemeral=True, sequence=True)
    port, proxy_metrics, watchdog_metrics = free_port(), free_port(), free_port()
    proxy_factory(pool_config(port, two_shards(a, b), zookeeper_host=zk_hosts,
                              zookeeper_path=f"/p/127.0.0.1:{port}", zookeeper_redis_path="/c"),
                  extra_args=("--metrics", f"127.0.0.1:{proxy_metrics}"))
    client = redis_client("127.0.0.1", port)
    client.set("k", "v")
    client.get("k")
    client.close()
    dog = Watchdog(zk_hosts, redis_factory(),
                   extra_args=("--metrics", f"127.0.0.1:{watchdog_metrics}"))
    try:
        dog.start(timeout=DEADLINE)
        wait_until(lambda: len(members(zk)) == 1, DEADLINE, "the watchdog registered", dog)
        exported = _exposed_names(_scrape(proxy_metrics) + _scrape(watchdog_metrics))
    finally:
        dog.close()
    tables = _code_tables()
    assert tables <= exported, f"in the code's tables, not scraped: {sorted(tables - exported)}"
    exported |= tables

    dashboard = set(METRIC.findall(" ".join(_queries(json.loads(DASHBOARD.read_text())))))
    rules = set(METRIC.findall(" ".join(rule["expr"] for rule in _alerts())))
    assert dashboard - exported == set(), "the dashboard uses series nothing exports"
    assert rules - exported == set(), "the alert rules use series nothing exports"
    print(f"{len(dashboard)} series in the dashboard, {len(rules)} in the rules, "
          f"{len(exported)} exported")


# --------------------------------------------------------------------------- systemd


def _unit_lines(name: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in (UNITS / name).read_text().splitlines()
            if line.startswith(f"{key}=")]


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify, with the venv's commands standing in for /opt/pyproxy's."""
    analyze = require_binary("systemd-analyze", "systemd")
    bin_dir = Path(sys.executable).parent
    for unit in ("pyproxy@.service", "pyproxy-watchdog@.service"):
        text = (UNITS / unit).read_text()
        assert "/opt/pyproxy/bin/" in text
        (tmp_path / unit).write_text(text.replace("/opt/pyproxy/bin/", f"{bin_dir}/"))
    instances = ["./pyproxy@icd.service", "./pyproxy-watchdog@redis-6379.service"]
    result = subprocess.run([analyze, "verify", "--man=no", *instances], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", \
        result.stdout + result.stderr


def test_proxy_unit_command_lines_are_accepted(tmp_path: Path) -> None:
    env = {"PYPROXY_ARGS": "--metrics 127.0.0.1:22123 --workers 2"}
    for line in (*_unit_lines("pyproxy@.service", "ExecStartPre"),
                 *_unit_lines("pyproxy@.service", "ExecStart")):
        words = shlex.split(line.replace("$PYPROXY_ARGS", env["PYPROXY_ARGS"])
                            .replace("/etc/pyproxy/%i.yml", str(REPO_ROOT / "conf" / "icd.yml"))
                            .replace("/var/log/pyproxy/%i.log", str(tmp_path / "icd.log")))
        assert words[0] == "/opt/pyproxy/bin/pyproxy", words
        if "-t" not in words:
            words.append("-t")  # check it, do not run it
        result = subprocess.run([sys.executable, "-m", "pyproxy", *words[1:]],
                                capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
        assert result.returncode == 0, (words, result.stderr)


def test_watchdog_unit_command_line_is_accepted() -> None:
    (line,) = _unit_lines("pyproxy-watchdog@.service", "ExecStart")
    values = {"${REDIS}": "172.17.32.105:6379", "${SHARD}": "/redis/cluster/icd/redis-0000",
              "$WATCHDOG_ARGS": "--metrics 172.17.32.105:9379"}
    for name, value in values.items():
        line = line.replace(name, value)
    words = shlex.split(line)
    assert words[0] == "/opt/pyproxy/bin/pyproxy-watchdog", words
    args = watchdog_cli.parser().parse_args(words[1:])  # raises on an unknown option
    assert (args.redis, args.shard, args.metrics, args.daemon) == \
        ("172.17.32.105:6379", "/redis/cluster/icd/redis-0000", "172.17.32.105:9379", False)


# --------------------------------------------------------------------------- logrotate


def test_logrotate_rotates_running_proxy_and_watchdog_logs(
        tmp_path: Path, redis_factory: Any, proxy_factory: Any, zk: Any, zk_hosts: str) -> None:
    """The snippet as shipped, with its paths, its user and its postrotate command (systemctl
    kill of the units) pointed at this test's processes."""
    logrotate = require_binary("logrotate", "logrotate", fallback="/usr/sbin/logrotate")
    logs = tmp_path / "log"
    logs.mkdir()
    a, b = redis_factory(), redis_factory()
    port = free_port()
    proxy = proxy_factory(pool_config(port, two_shards(a, b)),
                          extra_args=("-o", str(logs / "icd.log")))
    dog = Watchdog(zk_hosts, redis_factory(), logFile=logs / "watchdog-redis-6379.log")
    try:
        dog.start(timeout=DEADLINE)
        wait_until(lambda: len(members(zk)) == 1, DEADLINE, "the watchdog registered", dog)
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        text = LOGROTATE.read_text()
        systemctl = next(line.strip() for line in text.splitlines() if "systemctl kill" in line)
        assert "--signal=HUP" in systemctl and "'pyproxy@*.service'" in systemctl
        conf = (text.replace("/var/log/pyproxy/", f"{logs}/")
                .replace("pyproxy pyproxy", f"{user} {group}")
                .replace(systemctl, f"kill -HUP {proxy.pid} {dog.pid}"))
        (tmp_path / "logrotate.conf").write_text(conf)
        rotated = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"),
                                  str(tmp_path / "logrotate.conf")],
                                 capture_output=True, text=True, timeout=60)
        assert rotated.returncode == 0, rotated.stderr
        for name in ("icd.log", "watchdog-redis-6379.log"):
            assert (logs / f"{name}.1").exists(), sorted(p.name for p in logs.iterdir())
            assert (logs / name).exists()
        assert proxy.is_running() and dog.is_running()
        assert proxy.pid is not None and dog.pid is not None
        for pid in (proxy.pid, dog.pid):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not proxy.is_running() and not dog.is_running(), DEADLINE,
                   "both stopped")
    finally:
        dog.close()
    # their last lines went to the new files
    for name, last in (("icd.log", "stopped"), ("watchdog-redis-6379.log", "deleted node")):
        assert last in (logs / name).read_text(), name
        assert last not in (logs / f"{name}.1").read_text(), name


@pytest.mark.parametrize("path", sorted(p for p in DEPLOY.rglob("*") if p.is_file()))
def test_deploy_files_name_no_missing_path(path: Path) -> None:
    """Paths into this repository that the deploy files mention exist."""
    text = path.read_text()
    for mentioned in re.findall(r"(?<![/\w])(?:deploy|conf|pyproxy|tests)/[\w./@-]*\w", text):
        assert (REPO_ROOT / mentioned).exists(), (path.name, mentioned)
