"""Registry entries: a pipeline as registered, the checks of its name and source, and the table
of entries and cron jobs every :class:`~ductwork.PipelineRegistry` keeps."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from .._exceptions import ConfigError, RegistryError
from ..core.runnable import Runnable
from ..cron import CronJob
from ..state import MemoryStateStore, StateStore
from ..timescope import Timescope

__all__ = [
    "PipelineFactory",
    "RegisteredPipeline",
    "RegistryBase",
    "RegistryListener",
    "check_name",
    "check_source",
    "describe_source",
]

#: A zero-argument callable that builds a fresh Runnable (called for every run).
PipelineFactory = Callable[[], Runnable]

#: Called with ``(event, name)`` after every change to a registry; events are
#: ``pipeline_registered``, ``pipeline_unregistered``, ``cron_job_added`` and
#: ``cron_job_removed``.
RegistryListener = Callable[[str, str], None]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def check_name(name: Any, field_name: str = "name") -> str:
    """``name``, checked to be a valid pipeline or cron job name (a ConfigError otherwise)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError.for_field(
            field_name,
            f"{name!r} is not a valid name (1-200 letters, digits, '_', '.', ':' or '-', "
            f"not starting with a punctuation mark)",
        )
    return name


@dataclass(frozen=True, slots=True)
class RegisteredPipeline:
    """A pipeline as registered: how to get it and how it is meant to run.

    Attributes:
        name: the registered name.
        source: the Runnable itself, or a zero-argument factory building one per run.
        schedule: the cron expression of its own cron job, if it has one.
        timescope: the timescope that gives its runs their time window, if any.
        timezone: the time zone of ``schedule``.
        description: free text (defaults to the first line of the pipeline's docstring).
        tags: labels to filter :meth:`PipelineRegistry.list_pipelines` by.
        metadata: free-form data (owner, links, ...).
        module: the module that registered it, when it was discovered.
    """

    name: str
    source: Runnable | PipelineFactory
    schedule: str | None = None
    timescope: Timescope | None = None
    timezone: str = "UTC"
    description: str = ""
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    module: str | None = None

    @property
    def is_factory(self) -> bool:
        """Whether ``source`` is a factory (a new Runnable is built for every run)."""
        return not isinstance(self.source, Runnable)

    def build(self) -> Runnable:
        """The Runnable for one run: ``source`` itself, or what the factory returns.

        Raises:
            ConfigError: the factory raised, or returned something that is not a Runnable.
        """
        if isinstance(self.source, Runnable):
            return self.source
        try:
            built = self.source()
        except Exception as exc:
            raise ConfigError(
                f"pipeline {self.name!r}: its factory raised {type(exc).__name__}: {exc}",
                [("pipeline", str(exc))],
            ) from exc
        if not isinstance(built, Runnable):
            raise ConfigError.for_field(
                "pipeline",
                f"the factory of {self.name!r} returned {type(built).__name__}, not a Runnable",
            )
        return built


def check_source(pipeline: object) -> Runnable | PipelineFactory:
    """``pipeline``, checked to be a Runnable or a factory callable without arguments."""
    if isinstance(pipeline, Runnable):
        return pipeline
    if not callable(pipeline):
        raise ConfigError.for_field(
            "pipeline",
            f"expected a Runnable or a zero-argument function returning one, "
            f"got {type(pipeline).__name__}",
        )
    try:
        signature = inspect.signature(pipeline)
    except (TypeError, ValueError):
        return cast(PipelineFactory, pipeline)  # a builtin or C callable: the call will tell
    try:
        signature.bind()
    except TypeError:
        raise ConfigError.for_field(
            "pipeline",
            f"a factory must be callable without arguments; {pipeline!r} takes {signature}",
        ) from None
    return cast(PipelineFactory, pipeline)


def describe_source(source: Runnable | PipelineFactory) -> str:
    """The default description of a registered pipeline: a factory's first docstring line."""
    if isinstance(source, Runnable):
        return ""
    doc = inspect.getdoc(source)
    return doc.strip().splitlines()[0] if doc else ""


class RegistryBase:
    """The entries and cron jobs of a registry, and the listeners told of every change to them.

    Args:
        state: the state store that keeps the run history of registered pipelines (a fresh
            :class:`~ductwork.MemoryStateStore` by default).
    """

    def __init__(self, state: StateStore | None = None) -> None:
        self.state: StateStore = state if state is not None else MemoryStateStore()
        self._pipelines: dict[str, RegisteredPipeline] = {}
        self._jobs: dict[str, CronJob] = {}
        self._listeners: list[RegistryListener] = []
        self._revision = 0

    def __repr__(self) -> str:
        return f"PipelineRegistry(pipelines={sorted(self._pipelines)!r})"

    def __len__(self) -> int:
        return len(self._pipelines)

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    @property
    def revision(self) -> int:
        """A counter raised by every change (a cheap way to notice changes)."""
        return self._revision

    def add_listener(self, listener: RegistryListener) -> Callable[[], None]:
        """Call ``listener(event, name)`` after every change; returns a function removing it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _changed(self, event: str, name: str) -> None:
        self._revision += 1
        for listener in list(self._listeners):
            listener(event, name)

    def get_pipeline_entry(self, name: str) -> RegisteredPipeline:
        """The entry registered under ``name``.

        Raises:
            RegistryError: no pipeline is registered under ``name`` (the message lists the
                registered names).
        """
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise RegistryError(
                f"no pipeline named {name!r} is registered (registered: {known})"
            ) from None

    def list_pipelines(self, tag: str | None = None) -> list[RegisteredPipeline]:
        """Every registered pipeline (with ``tag``, if given), sorted by name."""
        entries = sorted(self._pipelines.values(), key=lambda e: e.name)
        return [e for e in entries if tag is None or tag in e.tags]

    def build(self, name: str) -> Runnable:
        """The Runnable for one run of the pipeline registered under ``name``."""
        return self.get_pipeline_entry(name).build()
