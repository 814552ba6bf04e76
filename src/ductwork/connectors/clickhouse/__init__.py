"""ClickHouse connector: connection settings, a streaming extractor and a batched loader.

Connections, metadata queries and DDL go through aiochclient over httpx. The bulk data paths are
ClickHouse's ``JSONEachRow`` format over httpx, encoded and decoded with orjson a batch at a time
(see :mod:`.codec`): a result is read as it streams, so memory stays constant however many
rows a query returns.

**Query parameters.** A query is a template: ``{name}`` placeholders are replaced by SQL literals
that aiochclient's encoder escapes (strings are quoted with ``\\`` and ``'`` escaped; lists, tuples,
dates, ``Decimal``, ``UUID`` and ``None`` work too), never by formatting user values into the SQL
text. Write literal braces as ``{{`` and ``}}``. Values come from, last one winning:

1. the run's time window, when it has one: ``{window_start}`` and ``{window_end}`` (aware datetimes
   are bound as ``toDateTime(<unix seconds>)``, the same instant in any server time zone);
2. the run's parameters (``pipeline.run(params={...})``);
3. the extractor's ``params`` (a mapping, or a function ``(ctx) -> mapping``).

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
retried only on servers that support ``insert_deduplication_token`` (22.2 and later); every insert
carries a token made of the run id and the batch number, so the retry is discarded when the first
attempt did land (for tables with deduplication on: ``Replicated*MergeTree``, or
``non_replicated_deduplication_window`` set). On older servers (such as 18.16) an ambiguous failure
is not retried and raises :class:`~ductwork.ClickHouseLoadError`. Each insert of at most
``max_insert_block_size`` rows (about one million by default) is written as one block, atomically.
"""

from .client import ClickHouseConfig as ClickHouseConfig
from .extractor import ClickHouseExtractor as ClickHouseExtractor
from .extractor import ClickHouseExtractorConfig as ClickHouseExtractorConfig
from .extractor import create_clickhouse_extractor as create_clickhouse_extractor
from .loader import ClickHouseLoader as ClickHouseLoader
from .loader import ClickHouseLoaderConfig as ClickHouseLoaderConfig
from .loader import create_clickhouse_loader as create_clickhouse_loader

__all__ = (
    "ClickHouseConfig",
    "ClickHouseExtractor",
    "ClickHouseExtractorConfig",
    "ClickHouseLoader",
    "ClickHouseLoaderConfig",
    "create_clickhouse_extractor",
    "create_clickhouse_loader",
)
