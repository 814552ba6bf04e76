"""Pins the public API: every name in ``ductwork.__all__`` and nothing else."""

import importlib
import warnings
from pathlib import Path

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
