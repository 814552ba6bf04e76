"""The exception tree of ductwork.

Every error the library raises on purpose derives from :class:`DuctworkError`::

    DuctworkError
    ├── ConfigError              bad configuration; names the field (wraps ValidationError)
    ├── DiscoveryError           a pipeline module failed to import or register
    ├── RegistryError            an unknown or duplicate pipeline or cron job name
    ├── ScheduleError            an invalid cron expression or timescope
    └── PipelineError            a run failed: .pipeline, .stage, .result; __cause__ is the original
        ├── ExtractError         the extract stage failed
        │   ├── FileFormatError  malformed input; .file, .line, .offset, .snippet
        │   ├── HttpError        an HTTP request failed; .status_code, .url
        │   └── ClickHouseExtractError   a ClickHouse query failed (also a ClickHouseError)
        ├── TransformError       a transform stage failed
        │   ├── TypeConversionError   a value did not convert; .column, .value, .position
        │   └── RecordValidationError a record does not match its model; .errors, .position
        ├── LoadError            the load stage failed
        │   └── ClickHouseLoadError      a ClickHouse insert failed (also a ClickHouseError)
        ├── ClickHouseError      any ClickHouse failure; .code, .query, .table, .batch, .record
        ├── CompositionError     child runs of a composition failed; .errors, __cause__ = the first
        └── RunTimeoutError      a run exceeded its ``timeout`` (also a ``TimeoutError``)

The ClickHouse connector raises :class:`ClickHouseExtractError` and :class:`ClickHouseLoadError`,
so ``except LoadError`` and ``except ClickHouseError`` both catch a failed insert.

A failed run raises a :class:`PipelineError` carrying its :class:`~ductwork.RunResult` in
``.result``. Errors marked ``retryable = False`` (bad configuration, a stage with the wrong shape,
malformed input) are not retried by retry compositions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .core.result import RunResult

__all__ = [
    "ClickHouseError",
    "ClickHouseExtractError",
    "ClickHouseLoadError",
    "CompositionError",
    "ConfigError",
    "DiscoveryError",
    "DuctworkError",
    "ExtractError",
    "FileFormatError",
    "HttpError",
    "LoadError",
    "PipelineError",
    "RecordValidationError",
    "RegistryError",
    "RunTimeoutError",
    "ScheduleError",
    "TransformError",
    "TypeConversionError",
]


class DuctworkError(Exception):
    """Root of every error raised by ductwork."""


class ConfigError(DuctworkError, ValueError):
    """A configuration value is invalid.

    Attributes:
        errors: one ``(field, message)`` pair per invalid field; ``field`` is a dotted path.
    """

    retryable = False

    def __init__(self, message: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.errors: list[tuple[str, str]] = list(errors)

    @classmethod
    def from_validation_error(cls, exc: ValidationError, prefix: str = "") -> ConfigError:
        """Build a ConfigError naming every invalid field of a pydantic ``ValidationError``."""
        errors: list[tuple[str, str]] = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(part) for part in err["loc"]) or "<root>"
            errors.append((loc, err["msg"]))
        title = f"invalid {prefix or exc.title} configuration"
        lines = "; ".join(f"{field}: {msg}" for field, msg in errors)
        error = cls(f"{title}: {lines}", errors)
        error.__cause__ = exc
        return error

    @classmethod
    def for_field(cls, field: str, message: str) -> ConfigError:
        """Build a ConfigError for a single field."""
        return cls(f"invalid configuration: {field}: {message}", [(field, message)])


class DiscoveryError(DuctworkError):
    """A pipeline module could not be imported or did not register correctly."""


class RegistryError(DuctworkError):
    """A pipeline or cron job name is unknown, or already taken (and ``replace`` was not given)."""


class ScheduleError(DuctworkError, ValueError):
    """A cron expression or timescope is invalid."""


class _RunFields(TypedDict, total=False):
    """The keyword arguments of :class:`PipelineError` that a subclass passes on to it."""

    pipeline: str | None
    stage: str | None
    result: RunResult | None
    retryable: bool | None


class PipelineError(DuctworkError):
    """A run failed.

    Attributes:
        pipeline: name of the pipeline (or composition) whose run failed.
        stage: name of the stage that raised, when the failure came from a stage.
        result: the :class:`~ductwork.RunResult` of the failed run (status ``failed``).
        retryable: whether a retry composition may run the pipeline again after this error.
    """

    retryable: bool = True

    def __init__(self, message: str, **run: Unpack[_RunFields]) -> None:
        unknown = sorted(run.keys() - _RunFields.__optional_keys__)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments: {unknown}")
        super().__init__(message)
        self.message = message
        self.pipeline: str | None = run.get("pipeline")
        self.stage: str | None = run.get("stage")
        self.result: RunResult | None = run.get("result")
        retryable = run.get("retryable")
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        where = []
        if self.pipeline is not None:
            where.append(f"pipeline {self.pipeline!r}")
        if self.stage is not None:
            where.append(f"stage {self.stage!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        return f"{prefix}{self.message}"


class ExtractError(PipelineError):
    """The extract stage of a run failed."""


class TransformError(PipelineError):
    """A transform stage of a run failed."""


class LoadError(PipelineError):
    """The load stage of a run failed."""


class CompositionError(PipelineError):
    """A composition (parallel, sequential, conditional, retry) failed because child runs failed.

    ``__cause__`` is the first failed child's error and ``.result`` the composition's
    :class:`~ductwork.RunResult`, whose ``children`` hold every child's result. The error is
    retryable only when every child error it reports is.

    Attributes:
        errors: the errors of the failed children, in the order the children are declared (for
            a retry composition: the error of the last attempt).
        brief: a one-line description without the children's messages, used by summaries.
    """

    def __init__(
        self,
        message: str,
        *,
        pipeline: str,
        errors: Sequence[BaseException],
        brief: str | None = None,
    ) -> None:
        retryable = all(is_retryable(error) for error in errors)
        super().__init__(message, pipeline=pipeline, retryable=retryable)
        self.errors: list[BaseException] = list(errors)
        self.brief = brief if brief is not None else message


class RunTimeoutError(PipelineError, TimeoutError):
    """A run did not finish within its ``timeout`` and was cancelled."""


class FileFormatError(ExtractError):
    """A file holds malformed input.

    Attributes:
        file: the path of the file.
        line: 1-based line number of the bad record, when known.
        offset: byte offset in the (decompressed) stream, when known.
        snippet: a short excerpt of the bad input.
        reason: what is wrong, without the location.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        offset: int | None = None,
        snippet: str | None = None,
    ) -> None:
        location = file
        if line is not None:
            location += f", line {line}"
        if offset is not None:
            location += f", byte offset {offset}"
        text = f"{location}: {message}"
        if snippet:
            text += f": {snippet!r}"
        super().__init__(text)
        self.file = file
        self.line = line
        self.offset = offset
        self.snippet = snippet
        self.reason = message


class HttpError(ExtractError):
    """An HTTP request failed (after any retries).

    Attributes:
        status_code: the response status, or ``None`` when no response arrived.
        url: the requested URL (credentials and secret query parameters redacted).
        method: the request method, when known.
        body: the start of the response body, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        url: str,
        method: str | None = None,
        body: str | None = None,
        **run: Unpack[_RunFields],
    ) -> None:
        super().__init__(message, **run)
        self.url, self.status_code, self.method, self.body = url, status_code, method, body


class ClickHouseError(PipelineError):
    """A ClickHouse query or insert failed.

    The connector raises one of its two subclasses, :class:`ClickHouseExtractError` or
    :class:`ClickHouseLoadError`, so the error is also an ``ExtractError`` or a ``LoadError``.

    Attributes:
        code: the server's error code, when the server reported the error.
        query: the statement that failed (without data), when known.
        table: the target table of a failed insert (``database.table``).
        batch: 1-based number of the insert (of this run) that failed, for loaders.
        record: the first record the server rejected, when it said which one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        query: str | None = None,
        table: str | None = None,
        batch: int | None = None,
        record: Any = None,
        **run: Unpack[_RunFields],
    ) -> None:
        super().__init__(message, **run)
        self.code, self.query, self.table, self.batch = code, query, table, batch
        self.record = record


class ClickHouseExtractError(ClickHouseError, ExtractError):
    """A ClickHouse query of an extractor failed (a :class:`ClickHouseError` and an
    :class:`ExtractError`)."""


class ClickHouseLoadError(ClickHouseError, LoadError):
    """A ClickHouse insert of a loader failed (a :class:`ClickHouseError` and a
    :class:`LoadError`).

    Attributes:
        rows_committed: rows of the run the server had committed before the failure, when the
            failure came after the loader started inserting.
    """

    def __init__(self, message: str, *, rows_committed: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.rows_committed = rows_committed


class RecordValidationError(TransformError):
    """A record does not match the model of a :func:`validate_records` stage.

    Attributes:
        position: 0-based position of the record among those that reached the stage in the run.
        errors: one ``(field, message)`` pair per problem; ``field`` is a dotted path
            (``"address.zip"``, ``"tags.2"``), or ``"<record>"`` for the record as a whole.
    """

    retryable = False

    def __init__(self, errors: Sequence[tuple[str, str]], *, position: int) -> None:
        text = "; ".join(
            message if field == "<record>" else f"field {field!r}: {message}"
            for field, message in errors
        )
        super().__init__(f"record {position}: {text}")
        self.position = position
        self.errors: list[tuple[str, str]] = list(errors)


class TypeConversionError(TransformError):
    """A value could not be converted to its column's type.

    Attributes:
        column: the column name.
        value: the value that did not convert.
        position: 0-based position of the record in the run.
    """

    retryable = False

    def __init__(self, message: str, *, column: str, value: Any, position: int | None) -> None:
        where = f"column {column!r}"
        if position is not None:
            where += f", record {position}"
        super().__init__(f"{where}: cannot convert {value!r}: {message}")
        self.column = column
        self.value = value
        self.position = position


def is_retryable(error: BaseException) -> bool:
    """Whether running again might help: no exception in ``error``'s cause chain is marked
    ``retryable = False``, and for a :class:`CompositionError`, every child error is retryable.

    The cause chain matters because a stage's own exception (say a ConfigError raised when a
    connector starts) reaches a composition wrapped in an ExtractError, TransformError or
    LoadError.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "retryable", True) is False:
            return False
        if isinstance(current, CompositionError):
            return all(is_retryable(child) for child in current.errors)
        current = current.__cause__
    return True
