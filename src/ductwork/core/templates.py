"""Filling ``{placeholder}`` templates (paths, URLs) with values from a run, confined.

Run parameters come from outside the code (``ductwork run --param``, the scheduler, an API), and
an HTTP extractor's ``{last_value}`` comes from the server: a value must fill its placeholder and
nothing more. :func:`fill_confined` formats a template field by field and hands each field's
text, with the name of its value, to a check that rejects or escapes it: a path placeholder
takes no separators, no ``..`` and (for a glob) no glob characters; a URL placeholder is
percent-encoded for the part of the URL it is in.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["check_path_value", "fill_confined", "url_value_encoder"]

_FORMATTER = string.Formatter()
_GLOB = frozenset("*?[]")


def fill_confined(
    template: str, values: Mapping[str, Any], check: Callable[[str, str, str], str]
) -> str:
    """Fill ``template`` from ``values``; ``check(name, text, before)`` vets each field.

    ``name`` is the field's root name (``window`` for ``{window.start:%Y}``), ``text`` its
    formatted value and ``before`` the template text that precedes it; the check returns the
    text to insert (the same, or escaped) or raises ``ValueError``, which names the field.

    Raises:
        KeyError, AttributeError, IndexError, ValueError: a placeholder cannot be filled, or a
            value is refused (a ``ValueError`` whose first argument names the field).
    """
    out: list[str] = []
    for literal, field, spec, conversion in _FORMATTER.parse(template):
        out.append(literal)
        if field is None:
            continue
        if field == "" or field[0].isdigit():
            raise ValueError(f"positional placeholder {{{field}}}: name a run value instead")
        value, root = _FORMATTER.get_field(field, (), values)
        value = _FORMATTER.convert_field(value, conversion)
        if spec and "{" in spec:
            spec = _FORMATTER.vformat(spec, (), values)
        text = _FORMATTER.format_field(value, spec or "")
        out.append(check(str(root), text, "".join(out)))
    return "".join(out)


def check_path_value(name: str, text: str, *, glob: bool, subpaths: bool) -> str:
    """Refuse a value that would reach outside its path placeholder.

    A value may not hold ``/`` or ``\\`` (unless ``subpaths``: then relative sub-paths without a
    ``..`` component), a NUL byte, ``..``, a leading ``~`` or, in a glob, ``*?[]``.
    """
    problem = None
    if "\0" in text:
        problem = "holds a NUL byte"
    elif "\\" in text or ("/" in text and not subpaths):
        problem = "holds a path separator (pass allow_subpaths=True to allow sub-paths)"
    elif text.startswith(("/", "~")):
        problem = "is an absolute path"
    elif ".." in text:
        problem = "holds '..'"
    elif glob and not _GLOB.isdisjoint(text):
        problem = "holds glob characters (*, ?, [ or ])"
    if problem is not None:
        raise ValueError(name, f"the value of {{{name}}} ({text!r}) {problem}")
    return text


def url_value_encoder(name: str, text: str, before: str) -> str:
    """Percent-encode a value for the part of a URL it fills (host, path, query or fragment).

    A path value is one segment: ``/``, ``?``, ``#`` and ``%`` are encoded, and a value of only
    dots is refused. A host value must be letters, digits, ``-`` and ``.``.
    """
    rest = before.split("://", 1)[1] if "://" in before else None
    if rest is not None and not any(mark in rest for mark in "/?#"):
        if not text or not all(c.isalnum() or c in "-." for c in text) or ".." in text:
            raise ValueError(name, f"the value of {{{name}}} ({text!r}) is not a host name part")
        return text
    if "?" in before or "#" in before:
        return quote(text, safe="")
    if text.strip(".") == "":
        raise ValueError(name, f"the value of {{{name}}} ({text!r}) is a relative path segment")
    return quote(text, safe="")
