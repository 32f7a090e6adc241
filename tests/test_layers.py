"""The package's shape: no import circle, and imports that go one way between the layers.

Read from the source (every import, those under ``if TYPE_CHECKING`` too), so a circle
cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pyproxy"

# layer -> the layers it may import (besides itself and the package's top-level modules
# that import no layer: address, config, detach, web, __init__)
ALLOWED = {
    "protocol": set(),
    "routing": set(),
    "observe": {"protocol", "routing"},
    "cluster": {"observe", "routing"},
    "proxy": {"protocol", "routing", "observe"},
    "watchdog": {"cluster"},
}
BASE = {"pyproxy", "pyproxy.address", "pyproxy.config", "pyproxy.detach", "pyproxy.web"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the pyproxy modules ``path`` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pyproxy")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pyproxy"):
                continue
            for alias in node.names:  # "from . import resp" names a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return found - {name}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) & MODULES for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_no_import_circle() -> None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(GRAPH.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert done == set(GRAPH)


def test_layers_import_only_the_layers_below() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        own = layer(module)
        if own is None:
            continue
        for target in targets:
            other = layer(target)
            if target in BASE or other == own:
                continue
            if other not in ALLOWED[own]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_graph_is_read_from_every_module() -> None:
    assert {"pyproxy.proxy.execute", "pyproxy.routing.routes", "pyproxy.cluster.zk",
            "pyproxy.observe.snapshot", "pyproxy.server"} <= MODULES
    assert "pyproxy.proxy.session" in GRAPH["pyproxy.proxy.execute"]
    assert "pyproxy.protocol.resp" in GRAPH["pyproxy.proxy.backend"]
