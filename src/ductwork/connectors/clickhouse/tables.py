"""What the loader reads from a table's definition in ``system.tables``: the sorting key, the
version column of a ``ReplacingMergeTree``, the table's settings and how many recent inserts it
remembers to deduplicate against."""

from __future__ import annotations

import re

from .capabilities import Capabilities
from .codec import split_args

__all__ = ["deduplication_window", "engine_version", "sorting_key_columns", "table_settings"]


def sorting_key_columns(sorting_key: str) -> list[str]:
    """The expressions of a sorting key as ``system.tables`` gives it, unquoted: ``"a, b"``,
    ``"(a, b)"`` and ``"(a)"`` (26.x writes a one-column key in parentheses) are ``["a", "b"]``
    and ``["a"]``; ``"tuple()"`` is ``[]``.

    Example:
        >>> sorting_key_columns("(user_id)"), sorting_key_columns("`k`, toDate(ts)")
        (['user_id'], ['k', 'toDate(ts)'])
    """
    text = sorting_key.strip()
    while text.startswith("(") and text.endswith(")") and _encloses(text):
        text = text[1:-1].strip()
    if text in ("", "tuple()"):
        return []
    out = []
    for part in split_args(text):
        if len(part) >= 2 and part[0] == part[-1] == "`":
            part = part[1:-1].replace("\\`", "`").replace("\\\\", "\\")
        out.append(part)
    return out


def _encloses(text: str) -> bool:
    """Whether the first ``(`` of ``text`` closes at its last character."""
    depth = 0
    quoted = ""
    for i, char in enumerate(text):
        if quoted:
            if char == quoted and text[i - 1] != "\\":
                quoted = ""
        elif char in "'`":
            quoted = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def engine_version(engine_full: str) -> str | None:
    """The version column of a ``ReplacingMergeTree(...)`` engine definition, if it has one.

    Understands ``ReplacingMergeTree(ver)``, ``ReplacingMergeTree(ver, is_deleted)``, the
    replicated form with its two quoted arguments first, and the old
    ``ReplacingMergeTree(date, key, granularity[, ver])`` syntax.
    """
    head, paren, rest = engine_full.partition("(")
    if not paren or " " in head.strip():
        return None  # "ReplacingMergeTree ORDER BY ...": the engine has no arguments
    depth = 1
    end = 0
    while end < len(rest) and depth:
        depth += {"(": 1, ")": -1}.get(rest[end], 0)
        end += 1
    args = [arg for arg in split_args(rest[: end - 1]) if not arg.startswith("'")]
    if len(args) >= 3:  # the old syntax: the version, if any, comes after the granularity
        last = args[-1].strip("`")
        return None if last.isdigit() else last
    return args[0].strip("`") if args else None


_SETTING = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^,\s]+)")


def table_settings(engine_full: str) -> dict[str, str]:
    """The ``SETTINGS`` of an ``engine_full`` (``... SETTINGS a = 1, b = 'x'``)."""
    _, found, settings = engine_full.rpartition(" SETTINGS ")
    if not found:
        return {}
    return {name: value.strip("'") for name, value in _SETTING.findall(settings)}


def deduplication_window(engine: str, engine_full: str, caps: Capabilities) -> int | None:
    """How many recent inserts the table remembers to deduplicate against (``None``: none)."""
    settings = table_settings(engine_full)
    if engine.startswith(("Replicated", "Shared")):
        name, default = "replicated_deduplication_window", "100"
    elif engine.endswith("MergeTree"):
        name, default = "non_replicated_deduplication_window", "0"
    else:
        return None
    value = settings.get(name, caps.merge_tree.get(name, default))
    try:
        window = int(value)
    except ValueError:
        return None
    return window if window > 0 else None
