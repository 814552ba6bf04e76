"""The import graph of ductwork: no cycles, arrows pointing down, every module importable alone.

Every import between two modules of ``src/ductwork`` is an edge, wherever it is written: at module
level, inside a function, or under ``if TYPE_CHECKING:``. The graph must have no cycle, and every
edge must point down the layer table below or stay within one layer. Each module must also import
in a fresh interpreter with nothing imported before it (not even the package root, which imports
everything), so no module works only because another one happened to be imported first.

Layers, top to bottom (a module belongs to the most specific entry naming it or a package above it;
a module that no entry names fails the test, so a new module gets a place here):

- the package root ``ductwork``: the public API, it may import anything and nothing imports it;
- the command line;
- operations: the scheduler, backfills, discovery, ``ops/``;
- the registry;
- parts: connectors, transforms, factories, state stores, timescopes, cron, the backfill engine;
- the core;
- errors and plain data: the exception tree, the version, and the two core modules the
  exceptions refer to (the result a failed run carries and the run status), which import nothing
  else from ductwork.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "ductwork"

LAYERS: list[tuple[str, tuple[str, ...]]] = [  # top first
    ("package root", ("ductwork",)),
    ("command line", ("ductwork.cli", "ductwork.__main__")),
    (
        "operations",
        ("ductwork.scheduler", "ductwork.backfill", "ductwork.discovery", "ductwork.ops"),
    ),
    ("registry", ("ductwork.registry",)),
    (
        "parts",
        (
            "ductwork.connectors",
            "ductwork.transforms",
            "ductwork.factories",
            "ductwork.state",
            "ductwork.state_sqlite",
            "ductwork.timescope",
            "ductwork.cron",
            "ductwork.backfill_engine",
        ),
    ),
    ("core", ("ductwork.core",)),
    (
        "errors and plain data",
        (
            "ductwork._exceptions",
            "ductwork._version",
            "ductwork.core.types",
            "ductwork.core.result",
        ),
    ),
]

# Modules that need an optional extra. When the extra's package is not installed, importing the
# module must fail with an ImportError naming that package; otherwise it is imported like any other.
OPTIONAL: dict[str, str] = {
    "ductwork.connectors.clickhouse.embedded": "chdb",
    "ductwork.ops.tracing": "opentelemetry",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, by name."""
    return {module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def layer(name: str) -> int:
    """The rank of ``name``'s layer: 0 for the bottom layer."""
    best: tuple[int, int] | None = None  # (length of the entry, rank)
    for index, (_, entries) in enumerate(LAYERS):
        rank = len(LAYERS) - 1 - index
        for entry in entries:
            matches = name == entry or (entry != PACKAGE and name.startswith(entry + "."))
            if matches and (best is None or len(entry) > best[0]):
                best = (len(entry), rank)
    if best is None:
        raise AssertionError(f"{name} is in no layer of LAYERS: give it one")
    return best[1]


def layer_name(name: str) -> str:
    return LAYERS[len(LAYERS) - 1 - layer(name)][0]


def _known(target: str, where: str) -> str:
    """The module ``target`` names: itself, or the closest package above it that exists."""
    known = modules()
    name = target
    while name not in known:
        if "." not in name:
            raise AssertionError(f"{where} imports {target}, which is not a ductwork module")
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """The ductwork modules ``name`` imports, with the line of each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield _known(alias.name, f"{name}:{node.lineno}"), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found = submodule if submodule in modules() else target
                yield _known(found, f"{name}:{node.lineno}"), node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith(PACKAGE + ".")
        ):
            yield _known(node.args[0].value, f"{name}:{node.lineno}"), node.lineno


@cache
def graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` for every import between two ductwork modules."""
    edges: dict[str, dict[str, int]] = {}
    for name, path in modules().items():
        targets = edges.setdefault(name, {})
        for target, line in imports_of(name, path):
            if target != name:
                targets.setdefault(target, line)
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (each strongly connected
    component of more than one module), as a path whose first module is repeated at its end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, {}):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while (member := stack.pop()) != node:
                group.add(member)
            if group:
                groups.append({node, *group})

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [_cycle_in(sorted(group)[0], group, edges) for group in groups]


def _cycle_in(start: str, group: set[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle from ``start`` back to itself within ``group`` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges.get(node, {})):
                if target not in group or target in came_from:
                    continue
                came_from[target] = node
                if target == start:
                    path = [start]
                    while (node := came_from[path[-1]]) != start:
                        path.append(node)
                    return [start, *reversed(path[1:]), start]
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


# ----------------------------------------------------------------------------- the graph


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    edges = graph()
    assert "ductwork.core.channel" in edges["ductwork.core.runner"]
    assert "ductwork.core.result" in edges["ductwork._exceptions"]  # under TYPE_CHECKING
    assert "ductwork.connectors.http.extractor" in edges["ductwork.connectors.http"]
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import ductwork.core.channel\n"
        "from . import runner\n"
        "from ..state import MemoryStateStore\n"
        "if TYPE_CHECKING:\n"
        "    from .result import RunResult\n"
        "def later():\n"
        "    from ..registry import get_default_registry\n"
        "    return importlib.import_module('ductwork.scheduler')\n"
    )
    found = dict(imports_of("ductwork.core.example", source))
    assert found == {
        "ductwork.core.channel": 2,
        "ductwork.core.runner": 3,
        "ductwork.state": 4,
        "ductwork.core.result": 6,
        "ductwork.registry": 8,
        "ductwork.scheduler": 9,
    }


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer(name)


def test_there_is_no_import_cycle() -> None:
    found = [" -> ".join(cycle) for cycle in cycles(graph())]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{name}:{line} imports {target} ({layer_name(name)} -> {layer_name(target)})"
        for name, targets in graph().items()
        for target, line in targets.items()
        if layer(target) > layer(name)
    ]
    assert not upward, "imports pointing up:\n" + "\n".join(sorted(upward))


def test_the_cycle_check_finds_every_cycle() -> None:
    edges = {"a": {"b": 1}, "b": {"c": 1, "a": 1}, "c": {"a": 1}, "d": {"a": 1, "e": 1}}
    edges |= {"e": {"d": 1}, "f": {"a": 1}}
    assert sorted(cycles(edges)) == [["a", "b", "a"], ["d", "e", "d"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


# ----------------------------------------------------------------------------- alone

# Runs in a fresh interpreter: imports one module with nothing imported before it. The package root
# is put in place without running its __init__ (which imports everything), so that only the module
# and what it imports itself are loaded.
IMPORT_ALONE = """
import importlib, importlib.util, sys
name = sys.argv[1]
if name != "ductwork":
    spec = importlib.util.find_spec("ductwork")
    sys.modules["ductwork"] = importlib.util.module_from_spec(spec)
importlib.import_module(name)
"""


def _import_alone(name: str) -> subprocess.CompletedProcess[str]:
    path = [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", IMPORT_ALONE, name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@cache
def imported_alone() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every module imported in its own fresh interpreter, several at once."""
    names = sorted(modules())
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 2))) as pool:
        return dict(zip(names, pool.map(_import_alone, names), strict=True))


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_imports_on_its_own(name: str) -> None:
    done = imported_alone()[name]
    requirement = OPTIONAL.get(name)
    if requirement is not None and importlib.util.find_spec(requirement) is None:
        assert done.returncode != 0, f"{name} imported although {requirement} is not installed"
        assert "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr, done.stderr
        assert requirement in done.stderr, done.stderr
        return
    assert done.returncode == 0, f"importing {name} on its own failed:\n{done.stderr}"
