"""Package attributes resolved on first use: names whose module needs an optional extra.

A package lists such names in a mapping to the module that defines them; its ``__getattr__``
imports that module only when the name is first asked for, so importing the package (and
``from package import *``) works without the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, modules: Mapping[str, str], fallback: Callable[[str], Any]
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name in ``modules`` is imported on first use.

    Args:
        package: the package's ``__name__`` (relative module names are resolved against it).
        modules: for each lazily imported name, the module that defines it (``".core.x"``).
        fallback: what answers every other name (it raises ``AttributeError`` for unknown ones).

    Example:
        >>> getattr_ = lazy_names("json", {"JSONDecoder": ".decoder"}, fallback=repr)
        >>> getattr_("JSONDecoder").__name__, getattr_("other")
        ('JSONDecoder', "'other'")
    """

    def __getattr__(name: str) -> Any:
        source = modules.get(name)
        if source is None:
            return fallback(name)
        return getattr(importlib.import_module(source, package), name)

    return __getattr__
