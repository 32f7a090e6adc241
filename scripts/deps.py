#!/usr/bin/env python3
"""Install the Debian packages pyproxy's demo or tests need, or say exactly which.

    python3 scripts/deps.py demo    redis-server, redis-tools, ZooKeeper (and Java)
    python3 scripts/deps.py test    the same plus nutcracker (the tests compare against it),
                                    and the checkers of deploy/: promtool (prometheus),
                                    systemd-analyze (systemd), logrotate, and chromium
                                    (the status page is rendered headless)

Only what is missing is installed, with apt-get, when running as root; otherwise the one
``apt-get`` line to run is printed and the exit status is 1. ``python3-venv`` is added when
``.venv`` does not exist yet and this Python cannot create one. Standard library only: it
runs with the system Python before the virtualenv exists (``make demo``, ``make test`` and
``.ci/run`` all call it, so there is one list of packages).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
SLF4J_SIMPLE_JAR = "/usr/share/java/slf4j-simple.jar"

# (what must exist, the Debian package that provides it); a path is a file, else a command.
DEMO = (
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("java", "default-jre-headless"),
    (ZOOKEEPER_JAR, "zookeeper"),
    (SLF4J_SIMPLE_JAR, "libslf4j-java"),
)
TEST = (*DEMO, ("redis-benchmark", "redis-tools"), ("nutcracker", "nutcracker"),
        # deploy/: alert rules checked and unit-tested, systemd units verified, logrotate -d
        ("promtool", "prometheus"), ("systemd-analyze", "systemd"),
        ("/usr/sbin/logrotate", "logrotate"),
        # the status page, rendered and screenshotted by headless chromium (test_status_page)
        ("chromium", "chromium"))
NEEDS = {"demo": DEMO, "test": TEST}


def missing_packages(needs: tuple[tuple[str, str], ...], need_venv: bool = False) -> list[str]:
    """Debian packages to install for what is missing, in a stable order, no duplicates."""
    missing: list[str] = []
    for thing, package in needs:
        present = os.path.exists(thing) if thing.startswith("/") else shutil.which(thing)
        if not present and package not in missing:
            missing.append(package)
    if need_venv and importlib.util.find_spec("ensurepip") is None:
        missing.append("python3-venv")  # Debian ships `python3 -m venv` separately
    return missing


# Recommends are left out: of these packages only prometheus has one, a node exporter (and
# ~35 packages of hardware tools) that nothing here uses.
INSTALL = ("apt-get", "install", "-y", "-q", "--no-install-recommends")


def install_command(packages: list[str]) -> str:
    return ("apt-get update && DEBIAN_FRONTEND=noninteractive "
            + " ".join([*INSTALL, *packages]))


def install(purpose: str) -> int:
    needs = NEEDS[purpose]
    need_venv = not (REPO / ".venv" / "bin" / "python").exists()
    missing = missing_packages(needs, need_venv)
    if not missing:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"{purpose}: missing Debian packages: {' '.join(missing)}\n"
              f"{purpose}: install them, then run `make {purpose}` again:\n"
              f"    sudo sh -c '{install_command(missing)}'", file=sys.stderr)
        return 1
    print(f"{purpose}: installing {' '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], [*INSTALL, *missing]):
        if subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode != 0:
            print(f"{purpose}: `{shlex.join(cmd)}` failed", file=sys.stderr)
            return 1
    still = missing_packages(needs, need_venv)
    if still:
        print(f"{purpose}: still missing after apt-get: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in NEEDS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(NEEDS)}}}", file=sys.stderr)
        return 2
    return install(argv[0])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
