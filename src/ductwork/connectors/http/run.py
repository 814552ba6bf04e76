"""One run of the HTTP extractor: its URL and parameters, and its incremental cursor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import ConfigError, ExtractError
from ...core.context import RunContext
from ...core.templates import fill_confined, url_value_encoder
from ...core.types import Batch
from .config import HttpExtractorConfig, origin


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

    def observe(self, batch: Batch) -> None:
        """Track the highest incremental cursor value seen."""
        field = self.cursor_field
        if field is None:
            return
        try:
            values = [value for record in batch if (value := record.get(field)) is not None]
            if values:
                top = max(values)
                if self.max_value is None or top > self.max_value:
                    self.max_value = top
        except (TypeError, AttributeError) as exc:
            raise ExtractError(
                f"incremental cursor field {field!r} holds values that cannot be compared: {exc}",
                retryable=False,
            ) from None

    def committer(self) -> Callable[[], Awaitable[None]] | None:
        """A callable storing the cursor the run reached, or ``None`` when there is nothing
        new to store."""
        state = self.ctx.state
        if self.state_key is None or state is None or self.max_value is None:
            return None
        if self.last_value is not None:
            try:
                if not self.max_value > self.last_value:
                    return None
            except TypeError:
                pass  # a different type than stored before: store the new one
        key, value, ctx = self.state_key, self.max_value, self.ctx

        async def commit() -> None:
            await state.set(key, value)
            ctx.logger.info("%s: incremental cursor %s = %r", ctx.pipeline, key, value)

        return commit


async def start_run(config: HttpExtractorConfig, name: str, ctx: RunContext) -> Run:
    """Set up a run of the extractor ``name``: read the stored cursor, fill the templates."""
    values = ctx.template_values()
    run = Run(ctx, config.url, {})
    inc = config.incremental
    if inc is not None:
        if ctx.state is None:
            raise ExtractError(
                f"incremental extraction on {inc.cursor_field!r} needs a state store: pass "
                f"state=... to the pipeline (e.g. ductwork.JsonFileStateStore(path))",
                retryable=False,
            )
        run.state_key = inc.state_key or f"{ctx.pipeline}:{name}:{inc.cursor_field}"
        run.cursor_field = inc.cursor_field
        run.last_value = await ctx.state.get(run.state_key, inc.initial_value)
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
