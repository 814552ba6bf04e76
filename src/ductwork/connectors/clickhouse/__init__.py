"""ClickHouse connector: connection settings, a streaming extractor and a batched loader.

Every request goes through one httpx client per run (:class:`.client.Connection`); DDL and the
loader's metadata queries use aiochclient on top of it. The bulk data paths are
ClickHouse's ``JSONEachRow`` format over httpx, encoded and decoded with orjson a batch at a time
(see :mod:`.codec`): a result is read as it streams, so memory stays constant however many
rows a query returns.

**Query parameters.** A query is a template: ``{name}`` placeholders become typed server-side
query parameters (``{name:Type}``, the value sent apart as ``param_name``) on servers that have
them (19.x and later), and SQL literals that aiochclient's encoder escapes on older ones (strings
quoted with ``\\`` and ``'`` escaped; lists, tuples, dates, ``Decimal``, ``UUID`` and ``None``
work too), never user values formatted into the SQL text (see :mod:`.query`). Write literal braces
as ``{{`` and ``}}``. Values come from, last one winning:

1. the run's time window, when it has one: ``{window_start}`` and ``{window_end}`` (aware datetimes
   are bound as the same instant in any server time zone);
2. the run's parameters (``pipeline.run(params={...})``);
3. the extractor's ``params`` (a mapping, or a function ``(ctx) -> mapping``).

What the server can do is detected once per server and user and cached (:mod:`.capabilities`).

**Upsert.** ClickHouse has no in-place update. ``mode="upsert"`` therefore requires a
``ReplacingMergeTree`` table: rows with equal sorting key (``ORDER BY``) replace each other, keeping
the highest version column value (or the last inserted row when the table has no version column).
The loader checks the engine, that ``upsert_key`` (if given) is the sorting key and that
``version_column`` (if given) is the engine's version column, and fails before inserting anything
otherwise. Within one flush it keeps only the winning record per key itself; across flushes and runs
ClickHouse replaces rows when it merges parts, in the background: read with ``SELECT ... FINAL`` to
see one row per key at once, or pass ``optimize_final=True`` to run ``OPTIMIZE TABLE ... FINAL``
when the run ends.

**Retries and duplicates.** An insert is retried (``retries`` times, exponential back-off) when the
connection could not be opened (nothing was sent) or the server refused it as overloaded (too many
parts, queries or memory: nothing was written). A failure after the data was sent (the connection
dropped mid-request, a read timeout) is ambiguous: the server may have written the rows. It is
retried only when the insert carries a deduplication token that the table honours: on servers with
``insert_deduplication_token`` (22.2 and later), into tables that deduplicate (``Replicated*``, or
``non_replicated_deduplication_window`` above 0, which ``create_table`` sets), every insert
carries a token made of the pipeline, the run's window and parameters, the insert's number and a
digest of its rows, so that a retry, or a rerun of the same window, re-sending what the server
already committed is discarded; such inserts are cut by rows alone, so that a rerun cuts them
alike. Otherwise an ambiguous failure is not retried and raises
:class:`~ductwork.ClickHouseLoadError`, not retryable, saying why and how many rows were committed
before it. Each insert of at most ``max_insert_block_size`` rows (about one million by default) is
written as one block, atomically. With ``async_insert=True`` (21.11 and later) the server gathers
small concurrent inserts, each still answered once written; they are deduplicated from 23.7.
"""

from typing import TYPE_CHECKING

from ...core.exports import lazy_names as _lazy_names

__all__ = (
    "ClickHouseConfig",
    "ClickHouseExtractor",
    "ClickHouseExtractorConfig",
    "ClickHouseLoader",
    "ClickHouseLoaderConfig",
    "create_clickhouse_extractor",
    "create_clickhouse_loader",
)

#: For each module, the public names it defines (separated by spaces), imported on first use.
_EXPORTS: dict[str, str] = {
    ".client": "ClickHouseConfig",
    ".extractor": "ClickHouseExtractor ClickHouseExtractorConfig create_clickhouse_extractor",
    ".loader": "ClickHouseLoader create_clickhouse_loader",
    ".loader_config": "ClickHouseLoaderConfig",
}

if TYPE_CHECKING:
    from .client import ClickHouseConfig as ClickHouseConfig
    from .extractor import ClickHouseExtractor as ClickHouseExtractor
    from .extractor import ClickHouseExtractorConfig as ClickHouseExtractorConfig
    from .extractor import create_clickhouse_extractor as create_clickhouse_extractor
    from .loader import ClickHouseLoader as ClickHouseLoader
    from .loader import create_clickhouse_loader as create_clickhouse_loader
    from .loader_config import ClickHouseLoaderConfig as ClickHouseLoaderConfig
else:
    __getattr__, __dir__ = _lazy_names(globals(), _EXPORTS)
