"""Package attributes resolved on first use (PEP 562): a package's ``__getattr__`` and ``__dir__``.

A package lists the names it exports in a mapping from the module that defines them to the names
(one string, separated by spaces); its ``__getattr__`` imports that module only when one of the
names is first asked for and keeps the value as an attribute of the package, so the next lookup
is an ordinary one. Importing the
package then costs only the package itself: no connector, no pydantic, no Arrow until they are
used, and names whose module needs an optional extra work without the extra until they are used.
``from package import *`` still imports everything in the package's ``__all__``.

The package keeps the same names as explicit imports in an ``if TYPE_CHECKING:`` block, so that
type checkers and editors see them as re-exports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["deferred_fallback", "lazy_names", "no_attribute"]


def no_attribute(package: str) -> Callable[[str], Any]:
    """A fallback that raises the ``AttributeError`` Python raises for a name a module lacks."""

    def fallback(name: str) -> Any:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return fallback


def lazy_names(
    namespace: dict[str, Any],
    exports: Mapping[str, str],
    fallback: Callable[[str], Any] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package: each name is imported on first use.

    The value found is stored in the package's namespace, so ``__getattr__`` is asked for each
    name once only; ``__dir__`` lists the package's attributes and the names not imported yet.

    Args:
        namespace: the package's ``globals()`` (its ``__name__`` resolves relative modules).
        exports: for each module (``".core.pipeline"``), the names of it that the package exports,
            separated by spaces (``"Pipeline PipelineConfig"``).
        fallback: what answers every other name; by default an ``AttributeError``.

    Example:
        >>> getattr_, dir_ = lazy_names({"__name__": "json"}, {".decoder": "JSONDecoder"}, repr)
        >>> getattr_("JSONDecoder").__name__, getattr_("other"), dir_()
        ('JSONDecoder', "'other'", ['JSONDecoder', '__name__'])
    """
    package = namespace["__name__"]
    modules = {name: module for module, names in exports.items() for name in names.split()}
    otherwise = fallback if fallback is not None else no_attribute(package)

    def __getattr__(name: str) -> Any:
        source = modules.get(name)
        if source is None:
            return otherwise(name)
        value = namespace[name] = getattr(importlib.import_module(source, package), name)
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *modules})

    return __getattr__, __dir__


def deferred_fallback(
    package: str, names: Collection[str], module: str, factory: str
) -> Callable[[str], Any]:
    """A fallback that answers ``names`` with the ``__getattr__`` that ``module.factory`` builds.

    ``module`` is imported, and ``factory(package)`` called, on the first lookup of one of
    ``names`` only; every other name raises ``AttributeError``. It serves old names kept with a
    deprecation warning, whose table lives beside the classes they name.

    Args:
        package: the package's ``__name__`` (a relative ``module`` is resolved against it).
        names: the names the fallback answers.
        module: the module that defines ``factory``.
        factory: the name of a function of ``module`` that takes the package's name and returns
            the ``__getattr__`` answering ``names``.

    """
    missing = no_attribute(package)

    def fallback(name: str) -> Any:
        if name not in names:
            return missing(name)
        build = getattr(importlib.import_module(module, package), factory)
        return build(package)(name)

    return fallback
