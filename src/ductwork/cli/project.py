"""The project a command works on: the pipelines of ``--path``, the state store of ``--state``."""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
from pathlib import Path

from .._exceptions import ConfigError, RegistryError
from ..discovery import DiscoveryReport, discover_pipelines
from ..registry import PipelineRegistry, RegisteredPipeline
from ..state import JsonFileStateStore, StateStore
from ..state_sqlite import SqliteStateStore, migrate_json_state
from .defaults import DEFAULT_PATH, DEFAULT_STATE, PATH_ENV, PIPELINE_PATTERN, STATE_ENV
from .errors import EXIT_USAGE, CommandError
from .output import warn

logger = logging.getLogger("ductwork.cli")


def open_state(path: Path) -> StateStore:
    """The state store for ``path``: JSON for a ``*.json`` name, else SQLite.

    A new SQLite file takes over the JSON file of the same name beside it (``state.json`` for
    ``state.db``), which is renamed to ``state.json.migrated``.
    """
    if path.suffix.lower() == ".json":
        return JsonFileStateStore(path)
    fresh = not path.exists()
    store = SqliteStateStore(path)
    legacy = path.with_suffix(".json")
    try:
        if fresh and migrate_json_state(legacy, store):
            logger.warning("copied the state in %s into %s", legacy, path)
    except ConfigError:
        store.close()  # a corrupt JSON file: leave no half-made database to hide it next time
        for made in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            made.unlink(missing_ok=True)
        raise
    return store


class Project:
    """The registry built from ``--path`` and ``--state``, and the discovery reports."""

    def __init__(self, args: argparse.Namespace) -> None:
        paths = getattr(args, "path", None)
        if not paths:
            from_env = os.environ.get(PATH_ENV, "")
            paths = [p for p in from_env.split(os.pathsep) if p] or [DEFAULT_PATH]
        state = getattr(args, "state", None) or os.environ.get(STATE_ENV) or DEFAULT_STATE
        self.paths: list[str] = paths
        self.state_path = Path(state)
        self.registry = PipelineRegistry(state=open_state(self.state_path))
        self.reports: list[DiscoveryReport] = []
        for path in paths:
            if not Path(path).is_dir():
                raise CommandError(
                    f"pipeline directory {path} does not exist (give one with --path or "
                    f"${PATH_ENV})",
                    EXIT_USAGE,
                )
            self.reports.append(discover_pipelines(path, registry=self.registry))

    @property
    def where(self) -> str:
        """The pipeline directories, as one text."""
        return ", ".join(self.paths)

    def unmatched_modules(self, name: str) -> list[str]:
        """Python files of the pipeline directories that discovery skipped (their names do not
        match the pattern) but that look like pipeline modules: named like one, or naming
        ``name``."""
        found = []
        for path in self.paths:
            for file in sorted(Path(path).glob("*.py")):
                if file.name == "__init__.py" or fnmatch.fnmatchcase(file.name, PIPELINE_PATTERN):
                    continue
                try:
                    text = file.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                if "pipeline" in file.stem.lower() or repr(name) in text or f'"{name}"' in text:
                    found.append(file.name)
        return found

    def errors(self) -> list[str]:
        """What went wrong while discovering the pipelines, one text per error."""
        return [str(error) for report in self.reports for error in report.errors]

    def warn_about_errors(self) -> None:
        """Print a warning for each discovery error."""
        errors = self.errors()
        for error in errors:
            warn(error)
        if errors:
            warn("run `ductwork validate` for the details")

    def pipeline(self, name: str) -> RegisteredPipeline:
        """The pipeline ``name``; a usage error that says where else it might be if unknown."""
        try:
            return self.registry.get_pipeline_entry(name)
        except RegistryError:
            known = ", ".join(e.name for e in self.registry.list_pipelines()) or "none"
            hint = ""
            if self.errors():
                hint = f"; {len(self.errors())} module(s) failed to load: run `ductwork validate`"
            unmatched = self.unmatched_modules(name)
            if unmatched:
                files = ", ".join(unmatched)
                hint += (
                    f"; {files} {'is' if len(unmatched) == 1 else 'are'} not imported: "
                    f"pipeline modules are named {PIPELINE_PATTERN}"
                )
            raise CommandError(
                f"no pipeline named {name!r} in {self.where} (pipelines: {known}){hint}",
                EXIT_USAGE,
            ) from None

    def schedules(self, name: str) -> list[str]:
        """The cron schedules of the pipeline ``name``, each with its time zone unless UTC."""
        texts = []
        for job in self.registry.list_cron_jobs(name):
            text = job.schedule if job.timezone == "UTC" else f"{job.schedule} ({job.timezone})"
            if not job.enabled:
                text += " (disabled)"
            texts.append(text)
        return texts


def load_project(args: argparse.Namespace) -> Project:
    """The project of ``args``, having warned about the modules that failed to load."""
    project = Project(args)
    project.warn_about_errors()
    return project
