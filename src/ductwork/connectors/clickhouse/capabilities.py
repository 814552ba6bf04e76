"""What a ClickHouse server can do, detected once and cached per server and user.

The connector asks instead of assuming: :meth:`Connection.capabilities
<ductwork.connectors.clickhouse.client.Connection.capabilities>` runs one query (``version()``,
``timezone()``, the rows of ``system.settings``, ``system.formats`` and
``system.merge_tree_settings`` the connector cares about) the first time a URL and user are seen,
and keeps the answer for :data:`CACHE_SECONDS`. What each server version brings:

=======  ==============================================================================
18.16    placeholders bound as escaped literals; no deduplication tokens; an error in
         mid-result is a ``Code: ...`` line appended to the body
19.x     server-side query parameters (``{name:Type}`` with ``param_name=...``)
21.11    ``async_insert`` (with ``wait_for_async_insert``)
22.2     ``insert_deduplication_token``: exactly-once inserts into deduplicating tables
23.7     deduplication of async inserts (``async_insert_deduplicate``)
25.11    an error in mid-result is a block tagged by ``X-ClickHouse-Exception-Tag``
=======  ==============================================================================
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CACHE_SECONDS",
    "FORMATS",
    "MERGE_TREE_SETTINGS",
    "SETTINGS",
    "Capabilities",
    "cached",
    "clear_cache",
    "detection_query",
    "from_row",
    "needs_parameter_probe",
    "parse_version",
    "store",
]

# How long a detection is trusted (a server may be upgraded under a long-running process).
CACHE_SECONDS = 3600.0

# The settings whose presence (and profile value) the connector looks at.
SETTINGS = (
    "insert_deduplicate",
    "insert_deduplication_token",
    "async_insert",
    "wait_for_async_insert",
    "async_insert_deduplicate",
)
# The formats the columnar paths need, read and written.
FORMATS = ("ArrowStream", "Parquet")
# Server-wide defaults of the MergeTree settings that decide whether a table deduplicates.
MERGE_TREE_SETTINGS = ("non_replicated_deduplication_window", "replicated_deduplication_window")

# Versions of what cannot be read from the system tables.
_QUERY_PARAMETERS = (20, 1)  # certainly there; 19.x servers are asked (see detection)
_ASYNC_INSERT_DEDUP = (23, 7)
_TAGGED_EXCEPTIONS = (25, 11)
_MODERN_TYPES = (21, 12)  # Bool (21.12), Date32 (21.9), DateTime64 (20.1)
# For servers without system.formats.
_FORMATS_BY_VERSION = {"Parquet": (19, 4), "ArrowStream": (20, 4)}


def parse_version(text: str) -> tuple[int, int, int]:
    """``"26.9.2.1"`` -> ``(26, 9, 2)``; missing or odd parts count as 0."""
    parts = [int("".join(ch for ch in piece if ch.isdigit()) or 0) for piece in text.split(".")]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major, minor, patch


@dataclass(frozen=True)
class Capabilities:
    """What one server offers (for one user: ``settings`` holds its profile's values).

    Attributes:
        version: ``(major, minor, patch)``.
        version_text: the server's ``version()``.
        timezone: the server's time zone.
        settings: value by name of those of :data:`SETTINGS` the server knows.
        formats: those of :data:`FORMATS` the server can both read and write.
        merge_tree: server-wide defaults of :data:`MERGE_TREE_SETTINGS` it knows.
        query_parameters: whether ``{name:Type}`` placeholders with ``param_name`` values work.
    """

    version: tuple[int, int, int]
    version_text: str
    timezone: str
    settings: Mapping[str, str] = field(default_factory=dict)
    formats: frozenset[str] = frozenset()
    merge_tree: Mapping[str, str] = field(default_factory=dict)
    query_parameters: bool = False

    @property
    def dedup_tokens(self) -> bool:
        """``insert_deduplication_token`` (22.2 and later)."""
        return "insert_deduplication_token" in self.settings

    @property
    def async_insert(self) -> bool:
        """``async_insert`` with ``wait_for_async_insert`` (21.11 and later)."""
        return "async_insert" in self.settings and "wait_for_async_insert" in self.settings

    @property
    def async_insert_dedup(self) -> bool:
        """Async inserts honour deduplication tokens (``async_insert_deduplicate``, 23.7+)."""
        return "async_insert_deduplicate" in self.settings and self.version >= _ASYNC_INSERT_DEDUP

    @property
    def tagged_exceptions(self) -> bool:
        """An error in mid-result is a block tagged by ``X-ClickHouse-Exception-Tag`` (25.11+)."""
        return self.version >= _TAGGED_EXCEPTIONS

    @property
    def arrow_stream(self) -> bool:
        """``ArrowStream`` in and out."""
        return "ArrowStream" in self.formats

    @property
    def parquet(self) -> bool:
        """``Parquet`` in and out."""
        return "Parquet" in self.formats

    @property
    def modern_types(self) -> bool:
        """``Bool``, ``Date32`` and ``DateTime64`` exist (21.12 and later)."""
        return self.version >= _MODERN_TYPES

    def deduplicates_by_default(self) -> bool:
        """Whether a plain ``MergeTree`` deduplicates without settings of its own (the server's
        ``non_replicated_deduplication_window`` is above 0)."""
        return _positive(self.merge_tree.get("non_replicated_deduplication_window"))

    def describe(self) -> str:
        """One line for logs and errors."""
        features = [
            name
            for name, present in (
                ("query parameters", self.query_parameters),
                ("deduplication tokens", self.dedup_tokens),
                ("async_insert", self.async_insert),
                ("async insert deduplication", self.async_insert_dedup),
                ("ArrowStream", self.arrow_stream),
                ("Parquet", self.parquet),
            )
            if present
        ]
        return f"ClickHouse {self.version_text} ({', '.join(features) or 'no optional features'})"


def _positive(value: str | None) -> bool:
    try:
        return value is not None and int(value) > 0
    except ValueError:
        return False


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def detection_query(with_formats: bool = True) -> str:
    """The one query that detects a server's capabilities (``FORMAT JSONEachRow``); without
    ``system.formats`` (servers before 18.4) the formats go by version."""
    formats = (
        f", (SELECT groupArray(name) FROM system.formats WHERE is_input AND is_output "
        f"AND name IN ({_names(FORMATS)})) AS formats"
        if with_formats
        else ""
    )
    return (
        "SELECT version() AS version, timezone() AS timezone, "
        f"(SELECT groupArray(concat(name, '=', value)) FROM system.settings "
        f"WHERE name IN ({_names(SETTINGS)})) AS settings, "
        f"(SELECT groupArray(concat(name, '=', value)) FROM system.merge_tree_settings "
        f"WHERE name IN ({_names(MERGE_TREE_SETTINGS)})) AS merge_tree{formats} "
        "FORMAT JSONEachRow"
    )


def from_row(row: Mapping[str, Any], query_parameters: bool | None) -> Capabilities:
    """Capabilities from the row of :func:`detection_query`; ``query_parameters`` as probed, or
    ``None`` to go by version."""
    version = parse_version(str(row["version"]))
    if "formats" in row:
        formats = frozenset(row["formats"])
    else:
        formats = frozenset(name for name, since in _FORMATS_BY_VERSION.items() if version >= since)
    return Capabilities(
        version=version,
        version_text=str(row["version"]),
        timezone=str(row["timezone"]),
        settings=_pairs(row["settings"]),
        formats=formats,
        merge_tree=_pairs(row["merge_tree"]),
        query_parameters=version >= _QUERY_PARAMETERS
        if query_parameters is None
        else query_parameters,
    )


def _pairs(items: list[str]) -> dict[str, str]:
    """``["name=value", ...]`` as a dict (names never hold ``=``)."""
    return dict(item.partition("=")[::2] for item in items)


def needs_parameter_probe(version_text: str) -> bool:
    """Whether query parameters must be tried out: 19.x servers (some have them); older ones do
    not, newer ones do."""
    return parse_version(version_text)[0] == 19


_cache: dict[tuple[str, str], tuple[float, Capabilities]] = {}


def cached(url: str, user: str) -> Capabilities | None:
    """The capabilities detected for ``url`` and ``user`` less than :data:`CACHE_SECONDS` ago."""
    entry = _cache.get((url, user))
    if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
        return None
    return entry[1]


def store(url: str, user: str, capabilities: Capabilities) -> None:
    """Remember what was detected for ``url`` and ``user``."""
    _cache[(url, user)] = (time.monotonic(), capabilities)


def clear_cache() -> None:
    """Forget every detection (the next connection asks its server again)."""
    _cache.clear()
