"""Pins the public API: every name in ``ductwork.__all__`` and nothing else."""

import ast
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import ductwork

#: The public names, one a line: a name added to or removed from ``__all__`` must be added to or
#: removed from this file too.
EXPECTED = set((Path(__file__).parent / "public_api.txt").read_text().split())


def test_all_is_pinned() -> None:
    assert set(ductwork.__all__) == EXPECTED


def test_all_is_sorted_tuple_without_duplicates() -> None:
    assert isinstance(ductwork.__all__, tuple)
    assert len(set(ductwork.__all__)) == len(ductwork.__all__)


def test_every_public_name_resolves() -> None:
    for name in ductwork.__all__:
        assert getattr(ductwork, name) is not None, name


def test_public_callables_have_docstrings() -> None:
    for name in ductwork.__all__:
        obj = getattr(ductwork, name)
        if callable(obj) and not name.startswith("_"):
            assert obj.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("module", ["ductwork", "ductwork.connectors.http"])
def test_retry_config_is_a_deprecated_alias_of_http_retry_config(module: str) -> None:
    package = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=r"RetryConfig is deprecated.*HttpRetryConfig"):
        alias = package.RetryConfig
    assert alias is ductwork.HttpRetryConfig
    assert "RetryConfig" not in package.__all__
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = package.NoSuchName


def test_star_import_does_not_warn() -> None:
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from ductwork import *", namespace)
        exec("from ductwork.connectors.http import *", namespace)
    assert namespace["HttpRetryConfig"] is ductwork.HttpRetryConfig
    assert "RetryConfig" not in namespace


# ----------------------------------------------------------------------------- lazy packages

#: The packages whose names are imported on first use (``ductwork.core.exports``).
LAZY_PACKAGES = [
    "ductwork",
    "ductwork.connectors.clickhouse",
    "ductwork.connectors.files",
    "ductwork.connectors.http",
    "ductwork.transforms",
]

#: Never imported by ``import ductwork``: each costs from tens to hundreds of milliseconds.
HEAVY = ["pyarrow", "chdb", "distributed", "uvicorn", "prometheus_client"]


def _fresh(code: str) -> dict[str, Any]:
    """What ``code`` leaves in ``result`` (a JSON value), run in a fresh interpreter."""
    src = str(Path(ductwork.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            f"import json, sys\n{code}\nprint(json.dumps(result))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
        check=True,
    )
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def test_import_ductwork_loads_no_connector_and_no_heavy_dependency() -> None:
    loaded = _fresh("import ductwork\nresult = {'modules': sorted(sys.modules)}")["modules"]
    assert [name for name in HEAVY if name in loaded] == []
    assert [name for name in ("pydantic", "httpx", "numpy", "anyio") if name in loaded] == []
    assert [name for name in loaded if name.startswith("ductwork")] == [
        "ductwork",
        "ductwork._exceptions",
        "ductwork._version",
        "ductwork.core",
        "ductwork.core.exports",
    ]


@pytest.mark.parametrize("package", LAZY_PACKAGES[1:])
def test_a_subpackage_imports_its_modules_on_first_use(package: str) -> None:
    code = f"""
import {package} as package
before = [m for m in sys.modules if m.startswith("{package}.")]
name = package.__all__[0]
getattr(package, name)
result = {{"before": before, "name": name, "after": sorted(sys.modules)}}
"""
    found = _fresh(code)
    assert found["before"] == []
    module = next(
        m
        for m, names in importlib.import_module(package)._EXPORTS.items()
        if found["name"] in names.split()
    )
    assert f"{package}{module}" in found["after"]


def _type_checking_imports(package: str) -> dict[str, set[str]]:
    """The names the ``if TYPE_CHECKING:`` block of ``package`` imports, by relative module."""
    tree = ast.parse(Path(importlib.import_module(package).__file__ or "").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    imports: dict[str, set[str]] = {}
    for node in block.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.asname == alias.name, f"{package}: {alias.name} as {alias.asname}"
                imports.setdefault("." * node.level + (node.module or ""), set()).add(alias.name)
    return imports


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_the_lazy_names_are_the_names_type_checkers_see(package: str) -> None:
    module = importlib.import_module(package)
    lazy = {source: set(names.split()) for source, names in module._EXPORTS.items()}
    seen = _type_checking_imports(package)
    if package == "ductwork":  # the deprecated old name, answered with a warning
        seen[".connectors.http"].remove("RetryConfig")
    assert seen == lazy
    assert not set(module.__all__) - set(vars(module)) - set().union(*lazy.values())


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_lazy_name_is_the_object_of_its_module_and_is_kept(package: str) -> None:
    module = importlib.import_module(package)
    for source, names in module._EXPORTS.items():
        if source == ".core.dask_executor" and importlib.util.find_spec("distributed") is None:
            continue
        defining = importlib.import_module(source, package)
        for name in names.split():
            assert getattr(module, name) is getattr(defining, name), name
            assert vars(module)[name] is getattr(defining, name), name  # no second lookup
        assert set(names.split()) <= set(dir(module))
