"""Auto-discovery: import ``*_pipeline.py`` modules and register the pipelines they expose.

A pipeline module exposes its pipelines in one of three ways (checked in this order):

1. a function ``register_pipelines(registry)`` that calls ``registry.register_pipeline(...)``
   (or ``register_pipeline_with_timescope``, ``register_cron_job``); or ``register_pipelines()``
   with no argument, which calls the module-level ``ductwork.register_pipeline(...)`` (the
   registry being discovered into is the default one while it runs) or returns a mapping like
   ``PIPELINE_REGISTRY``;
2. a function ``get_pipeline_registry()`` returning a mapping like ``PIPELINE_REGISTRY`` (or a
   :class:`~ductwork.PipelineRegistry`);
3. a module-level mapping ``PIPELINE_REGISTRY`` of name → pipeline, where a pipeline is a
   Runnable, a zero-argument factory, or a dict of :meth:`PipelineRegistry.register_pipeline`
   options with a ``"pipeline"`` key (``{"pipeline": build, "timescope": "daily"}``).

A module that fails to import or to register (a syntax error, an exception, a name another module
already took) registers none of its pipelines: the error goes into the report and discovery goes
on with the next module. The entries of a mapping (``PIPELINE_REGISTRY``, or what
``get_pipeline_registry()`` returns) are checked one by one: every bad entry is reported, each with
its name, and the good ones are registered. ``__init__.py`` and files that do
not match the pattern are ignored. A module is imported once per process; discovering the same
directory again registers only what the registry is missing.

While a directory's modules are imported, the directory is first on ``sys.path``, so a module can
import a helper next to it (``from _common import read_orders``); such helpers are ordinary
top-level modules, so give them names that do not clash with other packages.

Example:
    >>> import pathlib, tempfile, textwrap
    >>> from ductwork import PipelineRegistry
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "hello_pipeline.py").write_text(textwrap.dedent('''
    ...     from ductwork import create_el_pipeline
    ...     async def extract(ctx):
    ...         yield [{"hello": "world"}]
    ...     PIPELINE_REGISTRY = {"hello": lambda: create_el_pipeline(extract, print)}
    ... '''))
    >>> report = discover_pipelines(folder, registry=PipelineRegistry())
    >>> report.pipelines, report.errors
    (['hello'], [])
    >>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from ._exceptions import DiscoveryError, RegistryError
from .core.config import checked_keywords
from .core.runnable import Runnable
from .core.stages import accepts_positional
from .registry import PipelineRegistry, default_registry_bound, get_default_registry

__all__ = [
    "DiscoveredModule",
    "DiscoveryFailure",
    "DiscoveryReport",
    "discover_pipelines",
]

_TRACEBACK_FRAMES = 3


@dataclass(frozen=True, slots=True)
class DiscoveredModule:
    """A module that was imported and registered its pipelines.

    Attributes:
        name: the module's import name.
        path: its file.
        style: how it exposed its pipelines: ``register_pipelines``,
            ``get_pipeline_registry`` or ``PIPELINE_REGISTRY``.
        pipelines: the names it registered in this discovery.
        already_registered: names it exposes that the registry already had from it (a repeated
            discovery).
    """

    name: str
    path: Path | None
    style: str
    pipelines: tuple[str, ...] = ()
    already_registered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DiscoveryFailure:
    """A module that failed to import or to register.

    Attributes:
        module: the module's import name.
        path: its file.
        phase: ``import`` or ``register``.
        exception: the exception raised.
        traceback: the last frames of the traceback (for a syntax error: the offending line).
    """

    module: str
    path: Path | None
    phase: str
    exception: BaseException
    traceback: str
    pipeline: str | None = None
    """The entry of the module's mapping that failed, when one entry did."""

    def __str__(self) -> str:
        where = self.path.name if self.path is not None else self.module
        if self.pipeline is not None:
            where += f" [{self.pipeline!r}]"
        return f"{where}: {self.phase} failed: {type(self.exception).__name__}: {self.exception}"


@dataclass(slots=True)
class DiscoveryReport:
    """What a discovery did.

    Attributes:
        source: the directory or package searched.
        modules: every module that registered its pipelines, in file name order.
        errors: every module that failed, in file name order.
    """

    source: str
    modules: list[DiscoveredModule] = field(default_factory=list)
    errors: list[DiscoveryFailure] = field(default_factory=list)

    @property
    def pipelines(self) -> list[str]:
        """Names registered by this discovery, in module order."""
        return [name for module in self.modules for name in module.pipelines]

    @property
    def ok(self) -> bool:
        """Whether every module imported and registered."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`~ductwork.DiscoveryError` listing the failures, if any.

        The first failure's exception is chained as ``__cause__``.
        """
        if self.errors:
            lines = "; ".join(str(error) for error in self.errors)
            raise DiscoveryError(
                f"{len(self.errors)} pipeline module(s) in {self.source} failed: {lines}"
            ) from self.errors[0].exception

    def summary(self) -> str:
        """A readable report: one line per module, then each error with its traceback."""
        lines = [
            f"discovered {len(self.pipelines)} pipeline(s) in {len(self.modules)} module(s) "
            f"from {self.source}, {len(self.errors)} error(s)"
        ]
        for module in self.modules:
            names = ", ".join(module.pipelines) or "-"
            again = (
                f" (already registered: {', '.join(module.already_registered)})"
                if module.already_registered
                else ""
            )
            label = module.path.name if module.path is not None else module.name
            lines.append(f"  ok    {label} [{module.style}]: {names}{again}")
        for error in self.errors:
            lines.append(f"  error {error}")
            lines.extend("        " + line for line in error.traceback.rstrip().splitlines())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _short_traceback(exc: BaseException) -> str:
    """The last frames of ``exc``'s traceback in the user's code (not the import machinery)."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    summary = traceback.TracebackException.from_exception(exc)
    frames = [
        frame
        for frame in summary.stack
        if not frame.filename.startswith("<frozen") and frame.filename != __file__
    ]
    summary.stack = traceback.StackSummary.from_list(frames[-_TRACEBACK_FRAMES:])
    return "".join(summary.format(chain=False))


@contextlib.contextmanager
def _on_sys_path(directory: Path | None) -> Iterator[None]:
    """Put ``directory`` first on ``sys.path`` while modules in it are imported."""
    if directory is None or str(directory) in sys.path:
        yield
        return
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(directory))


def _module_name(directory: Path, stem: str) -> str:
    digest = hashlib.sha1(str(directory).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"_ductwork_pipelines_{digest}.{stem}"


def _import_file(name: str, path: Path) -> ModuleType:
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_Candidate = tuple[str, Path, Callable[[], ModuleType]]


def _candidates(source: str | Path | ModuleType, pattern: str) -> tuple[str, list[_Candidate]]:
    """``(label, [(module name, path, importer)])`` for every matching module, by file name."""
    if isinstance(source, ModuleType) or (
        isinstance(source, str) and not Path(source).exists() and _is_module_name(source)
    ):
        if isinstance(source, ModuleType):
            package = source
        else:
            try:
                package = importlib.import_module(source)
            except ImportError as exc:
                raise DiscoveryError(
                    f"{source!r} is neither a directory nor an importable package: {exc}"
                ) from exc
        paths = getattr(package, "__path__", None)
        if paths is None:
            raise DiscoveryError(f"{package.__name__} is a module, not a package")
        found: list[_Candidate] = []
        for folder in paths:
            for path in sorted(Path(folder).glob(pattern)):
                if path.name == "__init__.py" or not path.is_file():
                    continue
                name = f"{package.__name__}.{path.stem}"
                found.append((name, path, partial(importlib.import_module, name)))
        return package.__name__, found
    directory = Path(source).resolve()
    if not directory.is_dir():
        raise DiscoveryError(f"pipeline directory {source} does not exist or is not a directory")
    in_directory: list[_Candidate] = []
    for path in sorted(directory.iterdir()):
        if path.name == "__init__.py" or not path.is_file() or path.suffix != ".py":
            continue
        if not fnmatch.fnmatchcase(path.name, pattern):
            continue
        name = _module_name(directory, path.stem)
        in_directory.append((name, path, partial(_import_file, name, path)))
    return str(directory), in_directory


def _is_module_name(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _exposed(module: ModuleType) -> tuple[str, Any]:
    """The registration hook a module exposes: ``(style, hook)``."""
    for style in ("register_pipelines", "get_pipeline_registry"):
        hook = getattr(module, style, None)
        if hook is not None:
            if not callable(hook):
                raise DiscoveryError(f"{style} must be a function, got {type(hook).__name__}")
            return style, hook
    mapping = getattr(module, "PIPELINE_REGISTRY", None)
    if mapping is not None:
        return "PIPELINE_REGISTRY", mapping
    raise DiscoveryError(
        "the module exposes no pipelines: define register_pipelines(registry), "
        "get_pipeline_registry() or a PIPELINE_REGISTRY mapping"
    )


def _stage(
    module: ModuleType, style: str, hook: Any
) -> tuple[PipelineRegistry, list[tuple[str, Exception]]]:
    """Register what the module exposes into a fresh registry (so a failure leaves no trace).

    Returns the registry and the entries of a mapping that failed, each with its error.
    """
    staging = PipelineRegistry()
    if style == "register_pipelines":
        if accepts_positional(hook, 1):
            hook(staging)
            return staging, []
        with default_registry_bound(staging):
            mapping = hook()
        if mapping is None:
            return staging, []
    else:
        mapping = hook() if style == "get_pipeline_registry" else hook
    if isinstance(mapping, PipelineRegistry):
        return mapping, []
    if not isinstance(mapping, Mapping):
        raise DiscoveryError(
            f"{style} must be a mapping of name to pipeline, got {type(mapping).__name__}"
        )
    failed: list[tuple[str, Exception]] = []
    for name, value in mapping.items():
        try:
            _stage_entry(staging, style, name, value)
        except Exception as exc:
            failed.append((str(name), exc))
    return staging, failed


def _stage_entry(staging: PipelineRegistry, style: str, name: Any, value: Any) -> None:
    """Register one entry of a module's mapping."""
    if isinstance(value, Mapping):
        options = dict(value)
        if "pipeline" not in options:
            raise DiscoveryError(f"{style}[{name!r}] has no 'pipeline' key")
        pipeline = options.pop("pipeline")
        schedule = options.pop("schedule", None)
        staging.register_pipeline(name, pipeline, schedule, **options)
    elif isinstance(value, Runnable) or callable(value):
        staging.register_pipeline(name, value)
    else:
        raise DiscoveryError(
            f"{style}[{name!r}] must be a Runnable, a factory or a dict of options, "
            f"got {type(value).__name__}"
        )


def _fields(item: object, *names: str) -> dict[str, Any]:
    """The attributes ``names`` of ``item``, as keyword arguments."""
    return {name: getattr(item, name) for name in names}


def _merge(
    module_name: str, staging: PipelineRegistry, registry: PipelineRegistry
) -> tuple[list[str], list[str]]:
    """Copy a module's staged pipelines and jobs into ``registry``: ``(new, already)`` names.

    Everything is checked before anything is copied, so a conflict leaves ``registry`` as it was.
    """
    new: list[str] = []
    already: list[str] = []
    for entry in staging.list_pipelines():
        if entry.name in registry:
            owner = registry.get_pipeline_entry(entry.name).module
            if owner == module_name:
                already.append(entry.name)
                continue
            where = f"module {owner}" if owner else "an earlier registration"
            raise RegistryError(
                f"duplicate pipeline name {entry.name!r}: already registered by {where}"
            )
        new.append(entry.name)
    jobs = [job for job in staging.list_cron_jobs() if job.pipeline in new]
    for job in jobs:
        if job.name not in new and job.name in {j.name for j in registry.list_cron_jobs()}:
            existing = registry.get_cron_job(job.name)
            raise RegistryError(
                f"duplicate cron job name {job.name!r}: it already runs {existing.pipeline!r}"
            )
    for entry in staging.list_pipelines():
        if entry.name in new:
            options = _fields(entry, "timescope", "timezone", "description", "tags", "metadata")
            registry.register_pipeline(
                entry.name, entry.source, entry.schedule, module=module_name, **options
            )
    for job in jobs:
        options = _fields(job, "timezone", "params", "enabled", "description")
        registry.register_cron_job(
            job.name, job.schedule, job.pipeline, replace=job.name in new, **options
        )
    return new, already


@checked_keywords
def discover_pipelines(
    path_or_package: str | Path | ModuleType = "pipelines",
    pattern: str = "*_pipeline.py",
    registry: PipelineRegistry | None = None,
) -> DiscoveryReport:
    """Import every module matching ``pattern`` and register the pipelines it exposes.

    Args:
        path_or_package: a directory, or an importable package (its name or the module
            object). The modules of a directory are imported with the directory first on
            ``sys.path``, so they can import modules next to them.
        pattern: a file name pattern (``fnmatch``); ``__init__.py`` never matches.
        registry: where to register (default: the default registry).

    Returns:
        The report: modules loaded, pipelines registered, errors. Failures of single modules do
        not raise; call :meth:`DiscoveryReport.raise_for_errors` to turn them into an error.

    Raises:
        DiscoveryError: the directory or package does not exist.
    """
    target = registry if registry is not None else get_default_registry()
    label, candidates = _candidates(path_or_package, pattern)
    report = DiscoveryReport(source=label)
    directory = Path(label) if Path(label).is_dir() else None
    with _on_sys_path(directory):
        for name, path, importer in candidates:
            try:
                module = importer()
            except (Exception, SystemExit) as exc:
                report.errors.append(
                    DiscoveryFailure(name, path, "import", exc, _short_traceback(exc))
                )
                continue
            try:
                style, hook = _exposed(module)
                staging, failed = _stage(module, style, hook)
                new, already = _merge(name, staging, target)
            except (Exception, SystemExit) as exc:
                report.errors.append(
                    DiscoveryFailure(name, path, "register", exc, _short_traceback(exc))
                )
                continue
            report.errors.extend(
                DiscoveryFailure(name, path, "register", exc, _short_traceback(exc), entry)
                for entry, exc in failed
            )
            if failed and not new and not already:
                continue  # every entry failed: the module registered nothing
            report.modules.append(DiscoveredModule(name, path, style, tuple(new), tuple(already)))
    return report
