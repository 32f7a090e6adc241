#!/usr/bin/env python3
"""twemproxy's own tests/test_redis suite against pyproxy (or nutcracker): a compatibility
benchmark, not part of ``make test``.

    python benchmarks/twemproxy_suite.py PATH/TO/twemproxy          # against pyproxy
    python benchmarks/twemproxy_suite.py PATH/TO/twemproxy --proxy nutcracker
    python benchmarks/twemproxy_suite.py PATH/TO/twemproxy -k test_basic

PATH is a twemproxy checkout the operator fetched (``git clone
https://github.com/twitter/twemproxy``; the suite is Apache-2.0 and not vendored here); this
script fetches nothing. It copies PATH/tests to a temporary directory, puts the binaries the
harness expects in its ``_binaries/`` (redis-server and redis-cli from PATH; as
``nutcracker``, either a launcher of this checkout's pyproxy or the installed nutcracker),
installs twemproxy_suite_conftest.py as its conftest.py (nose fixtures under pytest,
redis-py spoken as 3.5, loopback only, pid-file stops: see that file), and runs pytest on
test_redis there. The harness generates its own config (``hash: fnv1a_64``, ``distribution:
modula``, ``client_connections: 0``, ...) and starts the proxy as ``bin/nutcracker -d -c ...
-s PORT -v 5 -m 512 -i 1``, exactly as for nutcracker.

It uses fixed ports (redis 2100-2101, proxy 4100-4102, stats 5100-5102) and /tmp/r/, as
the suite does. Prints each test's outcome, then the totals; exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFTEST = Path(__file__).resolve().parent / "twemproxy_suite_conftest.py"
NOSE_SHIM = {
    "nose/__init__.py": "",
    "nose/tools.py": "def nottest(function):\n    function.__test__ = False\n"
                     "    return function\n",
}
# The control script's stop, by pid file instead of pkill -f (string.Template: $$ is $).
PKILL_STOP = "pkill -9 -f '${runcmd}'"
PIDFILE_STOP = ("[ -f '${pidfile}' ] && kill -9 \"$$(cat '${pidfile}')\" 2>/dev/null; "
                "rm -f '${pidfile}'; sleep 0.2")


def launcher() -> str:
    """A ``nutcracker`` executable that runs this checkout's pyproxy with this interpreter."""
    return (f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            "from pyproxy.cli import main\nsys.exit(main())\n")


def prepare(checkout: Path, work: Path, proxy: str) -> Path:
    tests = work / "tests"
    shutil.copytree(checkout / "tests", tests)
    control = tests / "conf" / "control.sh"
    text = control.read_text()
    if PKILL_STOP not in text:
        raise SystemExit(f"{control}: no {PKILL_STOP!r} to replace; is this twemproxy's suite?")
    control.write_text(text.replace(PKILL_STOP, PIDFILE_STOP))
    binaries = tests / "_binaries"
    binaries.mkdir(exist_ok=True)
    for name in ("redis-server", "redis-cli"):
        found = shutil.which(name)
        if found is None:
            raise SystemExit(f"{name} not found on PATH")
        shutil.copy(found, binaries / name)
    nutcracker = binaries / "nutcracker"
    if proxy == "nutcracker":
        found = shutil.which("nutcracker")
        if found is None:
            raise SystemExit("nutcracker not found on PATH")
        shutil.copy(found, nutcracker)
    else:
        nutcracker.write_text(launcher())
        nutcracker.chmod(0o755)
    shutil.copy(CONFTEST, tests / "conftest.py")
    shim = work / "shim"
    for relative, content in NOSE_SHIM.items():
        (shim / relative).parent.mkdir(parents=True, exist_ok=True)
        (shim / relative).write_text(content)
    (tests / "log").mkdir(exist_ok=True)
    return tests


def results(report: Path) -> list[tuple[str, str, str]]:
    """(test id, outcome, first line of the reason) from pytest's JUnit XML; a test that
    failed and then erred in teardown too is one test, with its first problem."""
    out: dict[str, tuple[str, str, str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        outcome, reason = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                reason = next(iter((element.get("message") or "").splitlines()), "")[:150]
                break
        if name not in out or out[name][1] == "passed":
            out[name] = (name, outcome, reason)
    return list(out.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a twemproxy checkout (with tests/)")
    parser.add_argument("--proxy", choices=("pyproxy", "nutcracker"), default="pyproxy")
    parser.add_argument("-k", metavar="EXPR", help="pytest -k: run only matching tests")
    parser.add_argument("--timeout", type=int, default=120, help="per test, seconds")
    parser.add_argument("--pytest-output", action="store_true",
                        help="show pytest's own output (tracebacks) too")
    args = parser.parse_args()
    if not (args.checkout / "tests" / "test_redis").is_dir():
        parser.error(f"{args.checkout} has no tests/test_redis")
    with tempfile.TemporaryDirectory(prefix="twemproxy-suite-") as tmp:
        work = Path(tmp)
        tests = prepare(args.checkout, work, args.proxy)
        report = work / "report.xml"
        command = [sys.executable, "-m", "pytest", "test_redis", "-p", "no:cacheprovider",
                   "-q", f"--junitxml={report}", f"--timeout={args.timeout}",
                   "--rootdir", str(tests), "-c", os.devnull]
        if args.k:
            command += ["-k", args.k]
        env = {**os.environ, "PYTHONPATH": str(work / "shim"), "T_LOGFILE": "log/t.log"}
        subprocess.run(command, cwd=tests, env=env, stdin=subprocess.DEVNULL,
                       stdout=None if args.pytest_output else subprocess.DEVNULL, timeout=3600)
        if not report.exists():
            print("pytest wrote no report", file=sys.stderr)
            return 1
        outcomes = results(report)
    width = max(len(name) for name, _, _ in outcomes)
    for name, outcome, reason in outcomes:
        print(f"{name:<{width}}  {outcome:<7} {reason}")
    passed = sum(outcome == "passed" for _, outcome, _ in outcomes)
    print(f"\n{args.proxy}: {passed} of {len(outcomes)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
