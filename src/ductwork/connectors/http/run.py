"""One run of the HTTP extractor: its URL and parameters, and its incremental cursor.

The cursor is at-least-once: it is stored only after the whole run succeeded, and an inclusive
filter (``updated_at_gte``) sends the records holding the stored value again. With
``IncrementalConfig(key=...)`` the keys of those boundary records are stored beside the cursor
(at most :data:`MAX_BOUNDARY_KEYS`) and dropped when they come back with the same value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..._exceptions import ConfigError, ExtractError
from ...core.context import RunContext
from ...core.store import StateStore
from ...core.templates import fill_confined, url_value_encoder
from ...core.types import Batch
from .config import HttpExtractorConfig, origin

MAX_BOUNDARY_KEYS = 10_000
"""The most keys of boundary records (those holding the highest cursor value) a run stores."""

_default_state: StateStore | None = None


def default_state_store() -> StateStore:
    """The process's :class:`~ductwork.MemoryStateStore`, for incremental runs of pipelines
    given no state store (a registry gives its own): cursors last as long as the process."""
    global _default_state
    if _default_state is None:
        from ...state import MemoryStateStore

        _default_state = MemoryStateStore()
    return _default_state


@dataclass(slots=True)
class Run:
    """The state of one run.

    Attributes:
        ctx: the run's context.
        url: the configured URL, its placeholders filled.
        params: the query parameters, their placeholders filled, the cursor's added.
        origin: the URL's origin, the one credentials are sent to.
        state_key: where the incremental cursor is stored, or ``None`` without one.
        cursor_field: the field holding the incremental cursor, or ``None``.
        last_value: the cursor stored by the last successful run.
        max_value: the highest cursor value seen in this run.
        pages: pages passed on so far.
        state: the store the cursor is kept in (the pipeline's, or the process's default).
        key_field: the field identifying a record, for de-duplicating the boundary, or ``None``.
        delivered: keys of the records at ``last_value`` that earlier runs passed on.
        top_keys: keys of this run's records at ``max_value`` (at most
            :data:`MAX_BOUNDARY_KEYS`).
    """

    ctx: RunContext
    url: str
    params: dict[str, Any]
    origin: tuple[str, str, int | None] = ("", "", None)
    state_key: str | None = None
    cursor_field: str | None = None
    last_value: Any = None
    max_value: Any = None
    pages: int = 0
    state: StateStore | None = None
    key_field: str | None = None
    delivered: frozenset[Any] = frozenset()
    top_keys: set[Any] = field(default_factory=set)

    def observe(self, batch: Batch) -> Batch | None:
        """Track the highest incremental cursor value seen; return the batch without the
        boundary records delivered before, or ``None`` when none is left."""
        cursor = self.cursor_field
        if cursor is None:
            return batch
        try:
            if isinstance(batch, list):
                return self._observe_records(batch, cursor)
            return self._observe_table(batch, cursor)
        except (TypeError, AttributeError, ValueError) as exc:
            raise ExtractError(
                f"incremental cursor field {cursor!r} holds values that cannot be compared: {exc}",
                retryable=False,
            ) from None

    def _observe_records(self, batch: list[dict[str, Any]], cursor: str) -> Batch | None:
        key = self.key_field
        if key is not None and self.delivered:
            last, delivered, size = self.last_value, self.delivered, len(batch)
            batch = [r for r in batch if not (r.get(cursor) == last and r.get(key) in delivered)]
            if size and not batch:
                return None
        values = [value for record in batch if (value := record.get(cursor)) is not None]
        if values:
            self._raise_to(max(values))
            if key is not None:
                top = self.max_value
                self._keep_keys(r.get(key) for r in batch if r.get(cursor) == top)
        return batch

    def _observe_table(self, batch: Any, cursor: str) -> Batch | None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if cursor not in batch.column_names:
            return batch
        key = self.key_field
        if key is not None and key not in batch.column_names:
            key = None
        if key is not None and self.delivered and self.last_value is not None:
            keys = batch.column(key)
            again = pc.and_(
                pc.equal(batch.column(cursor), pa.scalar(self.last_value)),
                pc.is_in(keys, value_set=pa.array(list(self.delivered), type=keys.type)),
            )
            size = batch.num_rows
            batch = batch.filter(pc.invert(pc.fill_null(again, False)))
            if size and not batch.num_rows:
                return None
        top = pc.max(batch.column(cursor)).as_py()
        if top is not None:
            self._raise_to(top)
            if key is not None:
                at_top = pc.equal(batch.column(cursor), pa.scalar(self.max_value))
                self._keep_keys(batch.filter(pc.fill_null(at_top, False)).column(key).to_pylist())
        return batch

    def _raise_to(self, top: Any) -> None:
        if self.max_value is None or top > self.max_value:
            self.max_value = top
            self.top_keys = set()

    def _keep_keys(self, keys: Any) -> None:
        for value in keys:
            if len(self.top_keys) >= MAX_BOUNDARY_KEYS:
                return
            if value is not None:
                self.top_keys.add(value)

    def committer(self) -> Callable[[], Awaitable[None]] | None:
        """A callable storing the cursor the run reached (and the keys at it), or ``None``
        when there is nothing new to store."""
        state = self.state
        if self.state_key is None or state is None or self.max_value is None:
            return None
        keys: list[Any] | None = None
        if self.key_field is not None:
            keys = sorted(self.top_keys, key=repr)
        if self.last_value is not None:
            try:
                if self.max_value == self.last_value and keys is not None:
                    merged = self.delivered | set(keys)
                    if merged == self.delivered:
                        return None
                    keys = sorted(merged, key=repr)[:MAX_BOUNDARY_KEYS]
                elif not self.max_value > self.last_value:
                    return None
            except TypeError:
                pass  # a different type than stored before: store the new one
        name, value, ctx = self.state_key, self.max_value, self.ctx

        async def commit() -> None:
            if keys is not None:
                await state.set(boundary_key(name), {"value": value, "keys": keys})
            await state.set(name, value)
            ctx.logger.info("%s: incremental cursor %s = %r", ctx.pipeline, name, value)

        return commit


def boundary_key(state_key: str) -> str:
    """Where the keys of the records at the stored cursor value are kept."""
    return f"{state_key}.boundary_keys"


async def start_run(config: HttpExtractorConfig, name: str, ctx: RunContext) -> Run:
    """Set up a run of the extractor ``name``: read the stored cursor, fill the templates."""
    values = ctx.template_values()
    run = Run(ctx, config.url, {})
    inc = config.incremental
    if inc is not None:
        state = ctx.state if ctx.state is not None else default_state_store()
        run.state = state
        run.state_key = inc.state_key or f"{ctx.pipeline}:{name}:{inc.cursor_field}"
        run.cursor_field = inc.cursor_field
        run.last_value = await state.get(run.state_key, inc.initial_value)
        if inc.key is not None:
            run.key_field = inc.key
            stored = await state.get(boundary_key(run.state_key))
            if isinstance(stored, dict) and stored.get("value") == run.last_value:
                run.delivered = frozenset(stored.get("keys") or ())
    values["last_value"] = "" if run.last_value is None else run.last_value
    run.url = _fill(config.url, values, "url")
    run.origin = origin(run.url)
    for key, value in config.params.items():
        if isinstance(value, str):
            value = _fill(value, values, f"params.{key}")
        run.params[key] = value
    if inc is not None and inc.param is not None and run.last_value is not None:
        run.params[inc.param] = run.last_value
    return run


def _fill(template: str, values: Mapping[str, Any], field: str) -> str:
    """Fill ``{name}`` placeholders from the run's template values.

    In the URL every value is percent-encoded for the part it fills, so a value is one path
    segment or one query value (``../admin?x=1#`` stays inside its segment); query parameters
    given in ``params`` are encoded by httpx.
    """
    if "{" not in template:
        return template
    try:
        if field == "url":
            return fill_confined(template, values, url_value_encoder)
        return template.format_map(values)
    except KeyError as exc:
        known = ", ".join(sorted(k for k in values if isinstance(k, str)))
        raise ExtractError(
            f"{field} template names {{{exc.args[0]}}}, which is not a run value (known: {known})",
            retryable=False,
        ) from None
    except ValueError as exc:
        if len(exc.args) == 2:
            name, problem = exc.args
            raise ExtractError(
                f"run value {name!r} cannot fill the {field} template: {problem}",
                retryable=False,
            ) from ConfigError.for_field(f"params.{name}", problem)
        raise ExtractError(
            f"{field} template is malformed: {exc} (write literal braces as {{{{ and }}}})",
            retryable=False,
        ) from None
    except (IndexError, AttributeError) as exc:
        raise ExtractError(
            f"{field} template is malformed: {exc} (write literal braces as {{{{ and }}}})",
            retryable=False,
        ) from None
