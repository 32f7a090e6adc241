"""The wheel, as a user gets it: built without a warning, installed in a clean venv, its three
commands working, its example configs inside it and valid; and the editable install that
``make test`` and ``make demo`` do, without a warning either.

The source is copied first (what the Dockerfile copies: pyproject.toml, README.md, LICENSE,
pyproxy/, conf/), so the build leaves nothing in the repository and proves that set is
enough. Dependencies come from the package index, as ``pip install`` does for a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.servers import REPO_ROOT

SOURCE = ("pyproject.toml", "README.md", "LICENSE", "pyproxy", "conf")
INSTALL_TIMEOUT = 300


def run(argv: list[str | Path], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


# pip's own remarks on the machine's index configuration (a local mirror that lacks a
# package): about this machine, not about the package
_INDEX_REMARK = "WARNING: Location 'file://"


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if ("warning" in line.lower() or "deprecat" in line.lower())
            and not line.startswith(_INDEX_REMARK)]


def test_wheel_builds_quietly_and_installs_working_commands(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCE:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist",
                 source], tmp_path, INSTALL_TIMEOUT)
    assert built.returncode == 0, built.stdout + built.stderr
    assert _warnings(built.stdout + built.stderr) == [], built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("pyproxy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for example in ("example.yml", "icd.yml", "zoo-watchdog.conf"):
            assert archive.read(f"pyproxy/examples/{example}") == \
                (REPO_ROOT / "conf" / example).read_bytes()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names

    venv = tmp_path / "venv"
    created = run([sys.executable, "-m", "venv", venv], tmp_path)
    assert created.returncode == 0, created.stderr
    bin_dir = venv / "bin"
    upgraded = run([bin_dir / "python", "-m", "pip", "install", "-q", "--upgrade", "pip"],
                   tmp_path, INSTALL_TIMEOUT)  # as the Makefile does: today's pip says more
    assert upgraded.returncode == 0, upgraded.stderr
    installed = run([bin_dir / "python", "-m", "pip", "install", "-q", wheel], tmp_path,
                    INSTALL_TIMEOUT)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert _warnings(installed.stdout + installed.stderr) == [], installed.stderr

    where = run([bin_dir / "python", "-c", "import pyproxy; print(pyproxy.__file__)"], tmp_path)
    assert where.stdout.startswith(str(venv)), where  # the wheel's, not the repository's
    for command in ("pyproxy", "pyproxy-watchdog", "pyproxy-admin"):
        helped = run([bin_dir / command, "--help"], tmp_path)
        assert helped.returncode == 0 and "usage:" in helped.stdout, (command, helped.stderr)
    assert "--example-config" in run([bin_dir / "pyproxy", "--help"], tmp_path).stdout

    # the shipped examples, printed and checked by the installed commands
    example = run([bin_dir / "pyproxy", "--example-config"], tmp_path)
    assert example.returncode == 0, example.stderr
    (tmp_path / "example.yml").write_text(example.stdout)
    checked = run([bin_dir / "pyproxy", "-t", "-c", "example.yml"], tmp_path)
    assert checked.returncode == 0 and "syntax is ok" in checked.stdout, checked.stderr
    admin = run([bin_dir / "pyproxy-admin", "slot", "k", "-c", "example.yml"], tmp_path)
    assert admin.returncode == 0 and admin.stdout.startswith("key 'k' slot "), admin.stderr
    seed = run([bin_dir / "pyproxy", "--example-config", "icd.yml"], tmp_path)
    (tmp_path / "icd.yml").write_text(seed.stdout)
    assert run([bin_dir / "pyproxy", "-t", "-c", "icd.yml"], tmp_path).returncode == 0
    watchdog_conf = run([bin_dir / "pyproxy-watchdog", "--example-config"], tmp_path)
    assert watchdog_conf.returncode == 0 and "zkServersList" in watchdog_conf.stdout
    assert run([bin_dir / "pyproxy-watchdog", "-V"], tmp_path).stdout.startswith(
        "pyproxy-watchdog ")

    # what make test and make demo run: an editable install, as quiet
    editable = run([bin_dir / "python", "-m", "pip", "install", "-q", "-e", source], tmp_path,
                   INSTALL_TIMEOUT)
    assert editable.returncode == 0, editable.stdout + editable.stderr
    assert _warnings(editable.stdout + editable.stderr) == [], editable.stderr
    where = run([bin_dir / "python", "-c", "import pyproxy; print(pyproxy.__file__)"], tmp_path)
    assert where.stdout.startswith(str(source)), where
