"""Auto-discovery of pipeline modules, and the example pipelines discovered and run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from ductwork import (
    DiscoveryError,
    PipelineRegistry,
    RegistryError,
    RunStatus,
    discover_pipelines,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "discovery"
EXAMPLES = ROOT / "examples" / "pipelines"


def test_fixture_directory_report_is_exact() -> None:
    registry = PipelineRegistry()
    report = discover_pipelines(FIXTURES, registry=registry)

    assert report.source == str(FIXTURES)
    assert [(m.path.name if m.path else None, m.style, m.pipelines) for m in report.modules] == [
        ("alpha_pipeline.py", "register_pipelines", ("alpha_daily", "alpha_manual")),
        ("beta_pipeline.py", "PIPELINE_REGISTRY", ("beta", "beta_hourly")),
        ("gamma_pipeline.py", "get_pipeline_registry", ("gamma",)),
    ]
    assert report.pipelines == ["alpha_daily", "alpha_manual", "beta", "beta_hourly", "gamma"]
    assert [m.already_registered for m in report.modules] == [(), (), ()]

    errors = [(e.path.name if e.path else None, e.phase, type(e.exception)) for e in report.errors]
    assert errors == [
        ("broken_syntax_pipeline.py", "import", SyntaxError),
        ("duplicate_pipeline.py", "register", RegistryError),
        ("exploding_pipeline.py", "import", ConnectionError),
    ]
    syntax, duplicate, exploding = report.errors
    assert "broken_syntax_pipeline.py" in syntax.traceback
    assert "def build(:" in syntax.traceback
    assert "SyntaxError" in syntax.traceback
    assert "duplicate pipeline name 'alpha_daily'" in str(duplicate.exception)
    assert "alpha_pipeline" in str(duplicate.exception)
    assert "exploding_pipeline.py" in exploding.traceback
    assert "CONNECTION = connect()" in exploding.traceback
    assert "ConnectionError: cannot reach the warehouse" in exploding.traceback
    assert exploding.traceback.count("File ") <= 3  # a short traceback
    assert not report.ok

    # what the registry holds: every good pipeline, nothing of the failed modules
    assert [e.name for e in registry.list_pipelines()] == [
        "alpha_daily",
        "alpha_manual",
        "beta",
        "beta_hourly",
        "gamma",
    ]
    assert "duplicate_fresh" not in registry  # the duplicate module is all or nothing
    alpha = registry.get_pipeline_entry("alpha_daily")
    assert alpha.module == report.modules[0].name
    assert alpha.tags == frozenset({"alpha"})
    assert alpha.timescope is not None
    assert alpha.timescope.name == "daily"
    beta_hourly = registry.get_pipeline_entry("beta_hourly")
    assert (beta_hourly.schedule, beta_hourly.description) == ("5 * * * *", "beta, every hour")
    assert registry.get_pipeline_entry("alpha_manual").description == "alpha, run by hand"
    jobs = {j.name: (j.pipeline, j.schedule, dict(j.params)) for j in registry.list_cron_jobs()}
    assert jobs == {
        "alpha_daily": ("alpha_daily", "0 0 * * *", {}),
        "alpha_daily_noon": ("alpha_daily", "0 12 * * *", {"at": 12}),
        "beta_hourly": ("beta_hourly", "5 * * * *", {}),
    }


def test_report_summary_and_raise_for_errors() -> None:
    report = discover_pipelines(FIXTURES, registry=PipelineRegistry())
    text = report.summary()
    assert text.splitlines()[0].startswith("discovered 5 pipeline(s) in 3 module(s)")
    assert "ok    gamma_pipeline.py [get_pipeline_registry]: gamma" in text
    assert "error exploding_pipeline.py: import failed: ConnectionError" in text
    with pytest.raises(DiscoveryError, match="3 pipeline module") as info:
        report.raise_for_errors()
    assert isinstance(info.value.__cause__, SyntaxError)


def test_discovering_twice_registers_once_and_imports_once() -> None:
    registry = PipelineRegistry()
    first = discover_pipelines(FIXTURES, registry=registry)
    module = sys.modules[first.modules[0].name]
    revision = registry.revision

    again = discover_pipelines(FIXTURES, registry=registry)
    assert again.pipelines == []
    assert [m.already_registered for m in again.modules] == [
        ("alpha_daily", "alpha_manual"),
        ("beta", "beta_hourly"),
        ("gamma",),
    ]
    assert [type(e.exception) for e in again.errors] == [
        SyntaxError,
        RegistryError,
        ConnectionError,
    ]
    assert registry.revision == revision  # nothing changed
    assert len(registry) == 5
    assert sys.modules[first.modules[0].name] is module  # not imported again

    other = PipelineRegistry()
    third = discover_pipelines(FIXTURES, registry=other)
    assert third.pipelines == first.pipelines
    assert sys.modules[first.modules[0].name] is module


async def test_discovered_pipelines_run() -> None:
    registry = PipelineRegistry()
    discover_pipelines(FIXTURES, registry=registry)
    for entry in registry.list_pipelines():
        window = "2024-01-01" if entry.timescope is not None else None
        result = await registry.run(entry.name, window=window)
        assert result.status is RunStatus.SUCCEEDED, entry.name
        assert result.records_out >= 1, entry.name


def test_init_and_non_matching_files_are_ignored() -> None:
    # tests/fixtures/discovery/__init__.py and pipeline_helpers.py raise when imported
    report = discover_pipelines(FIXTURES, registry=PipelineRegistry())
    names = [str(m.path) for m in report.modules] + [str(e.path) for e in report.errors]
    assert not any(n.endswith(("__init__.py", "pipeline_helpers.py")) for n in names)
    only = discover_pipelines(FIXTURES, pattern="g*_pipeline.py", registry=PipelineRegistry())
    assert only.pipelines == ["gamma"]
    assert only.ok


def write(folder: Path, name: str, code: str) -> None:
    (folder / name).write_text(textwrap.dedent(code))


def test_module_exposing_nothing_or_the_wrong_thing_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "empty_pipeline.py", "X = 1\n")
    write(tmp_path, "number_pipeline.py", "PIPELINE_REGISTRY = 5\n")
    write(tmp_path, "value_pipeline.py", "PIPELINE_REGISTRY = {'v': 5}\n")
    write(tmp_path, "nokey_pipeline.py", "PIPELINE_REGISTRY = {'v': {'schedule': '* * * * *'}}\n")
    write(tmp_path, "exit_pipeline.py", "raise SystemExit(3)\n")
    write(
        tmp_path,
        "badschedule_pipeline.py",
        """
        from ductwork import create_el_pipeline
        PIPELINE_REGISTRY = {"b": {"pipeline": lambda: None, "schedule": "99 * * * *"}}
        """,
    )
    report = discover_pipelines(tmp_path, registry=PipelineRegistry())
    messages = {e.path.name if e.path else "": str(e.exception) for e in report.errors}
    assert "exposes no pipelines" in messages["empty_pipeline.py"]
    assert "must be a mapping" in messages["number_pipeline.py"]
    assert "must be a Runnable, a factory or a dict" in messages["value_pipeline.py"]
    assert "has no 'pipeline' key" in messages["nokey_pipeline.py"]
    assert "Bad minute" in messages["badschedule_pipeline.py"]
    assert messages["exit_pipeline.py"] == "3"
    assert report.modules == []


def test_modules_can_import_their_neighbours_only_during_discovery(tmp_path: Path) -> None:
    write(tmp_path, "neighbour_helper_xyz.py", "ROWS = [{'a': 1}]\n")
    write(
        tmp_path,
        "uses_pipeline.py",
        """
        from neighbour_helper_xyz import ROWS
        from ductwork import create_el_pipeline
        async def extract(ctx):
            yield ROWS
        PIPELINE_REGISTRY = {"uses": lambda: create_el_pipeline(extract, print)}
        """,
    )
    report = discover_pipelines(tmp_path, registry=PipelineRegistry())
    assert report.pipelines == ["uses"]
    assert str(tmp_path) not in sys.path


def test_package_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "acme_pipelines_pkg"
    package.mkdir()
    write(package, "__init__.py", "")
    write(
        package,
        "sales_pipeline.py",
        """
        from ductwork import create_el_pipeline
        async def extract(ctx):
            yield [{"sale": 1}]
        def register_pipelines(registry):
            registry.register_pipeline("sales", lambda: create_el_pipeline(extract, print))
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = PipelineRegistry()
    report = discover_pipelines("acme_pipelines_pkg", registry=registry)
    assert report.source == "acme_pipelines_pkg"
    assert [m.name for m in report.modules] == ["acme_pipelines_pkg.sales_pipeline"]
    assert registry.get_pipeline_entry("sales").module == "acme_pipelines_pkg.sales_pipeline"

    import acme_pipelines_pkg  # type: ignore[import-not-found]

    assert discover_pipelines(acme_pipelines_pkg, registry=PipelineRegistry()).pipelines == [
        "sales"
    ]
    for name in [m for m in sys.modules if m.startswith("acme_pipelines_pkg")]:
        del sys.modules[name]


def test_missing_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="neither a directory nor an importable package"):
        discover_pipelines("no_such_package_for_sure", registry=PipelineRegistry())
    with pytest.raises(DiscoveryError, match="does not exist"):
        discover_pipelines(tmp_path / "missing", registry=PipelineRegistry())
    with pytest.raises(DiscoveryError, match="is a module, not a package"):
        discover_pipelines("textwrap", registry=PipelineRegistry())


def test_duplicate_cron_job_name_fails_the_module(tmp_path: Path) -> None:
    registry = PipelineRegistry()
    registry.register_pipeline("existing", lambda: None)  # type: ignore[arg-type, return-value]
    registry.register_cron_job("nightly", "0 0 * * *", "existing")
    write(
        tmp_path,
        "jobs_pipeline.py",
        """
        from ductwork import create_el_pipeline
        async def extract(ctx):
            yield [{"a": 1}]
        def register_pipelines(registry):
            registry.register_pipeline("fresh", lambda: create_el_pipeline(extract, print))
            registry.register_cron_job("nightly", "0 1 * * *", "fresh")
        """,
    )
    report = discover_pipelines(tmp_path, registry=registry)
    assert "duplicate cron job name 'nightly'" in str(report.errors[0].exception)
    assert "fresh" not in registry
    assert registry.get_cron_job("nightly").pipeline == "existing"


# --- the example pipelines ----------------------------------------------------------------------


def test_example_pipelines_are_discovered() -> None:
    registry = PipelineRegistry()
    report = discover_pipelines(EXAMPLES, registry=registry)
    assert report.ok, report.summary()
    assert sorted(report.pipelines) == ["daily_orders", "large_orders", "product_mix"]
    assert {m.style for m in report.modules} == {
        "register_pipelines",
        "PIPELINE_REGISTRY",
        "get_pipeline_registry",
    }
    for entry in registry.list_pipelines():
        registry.validate_pipeline(entry.name)
        assert entry.timescope is not None


async def test_every_example_pipeline_runs(tmp_path: Path) -> None:
    registry = PipelineRegistry()
    discover_pipelines(EXAMPLES, registry=registry)
    lines = (ROOT / "examples/data/orders.jsonl").read_bytes().splitlines()
    orders = [orjson.loads(line) for line in lines]

    for entry in registry.list_pipelines():
        result = await registry.run(
            entry.name, window="2026-11-10", params={"output_dir": str(tmp_path)}
        )
        assert result.succeeded, result.summary()
        assert result.records_out > 0, entry.name
        (record,) = await registry.history(entry.name)
        assert record["status"] == "succeeded"

    day = [o for o in orders if o["day"] == "2026-11-10"]
    written = (tmp_path / "daily_orders" / "2026-11-10.jsonl").read_bytes().splitlines()
    assert len(written) == len(day)
    assert orjson.loads(written[0])["region"].isupper()

    week = [o for o in orders if "2026-11-09" <= o["day"] <= "2026-11-15"]
    large = [o for o in week if round(o["quantity"] * o["unit_price"], 2) >= 100]
    assert len((tmp_path / "large_orders" / "2026-W46.jsonl").read_bytes().splitlines()) == len(
        large
    )

    mix = [orjson.loads(x) for x in (tmp_path / "product_mix/2026-11.jsonl").read_bytes().split()]
    assert sum(row["units"] for row in mix) == sum(o["quantity"] for o in orders)
    files = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(files) == [
        "daily_orders/2026-11-10.jsonl",
        "large_orders/2026-W46.jsonl",
        "product_mix/2026-11.jsonl",
    ]


def test_every_bad_entry_of_a_mapping_is_reported_and_the_good_ones_registered(
    tmp_path: Path,
) -> None:
    (tmp_path / "mistakes_pipeline.py").write_text(
        textwrap.dedent(
            """
            from ductwork import create_el_pipeline

            async def extract(ctx):
                yield [{"x": 1}]

            good = create_el_pipeline(extract, print, logging=False)
            PIPELINE_REGISTRY = {
                "mistakes_good": good,
                "mistakes_no_key": {"pipelin": good},
                "mistakes_not_a_pipeline": 42,
                "mistakes_bad_schedule": {"pipeline": good, "schedule": "every day"},
                "mistakes_misspelt": {"pipeline": good, "timescop": "daily"},
            }
            """
        )
    )
    registry = PipelineRegistry()
    report = discover_pipelines(tmp_path, registry=registry)
    assert [e.name for e in registry.list_pipelines()] == ["mistakes_good"]
    assert report.pipelines == ["mistakes_good"]
    assert [e.pipeline for e in report.errors] == [
        "mistakes_no_key",
        "mistakes_not_a_pipeline",
        "mistakes_bad_schedule",
        "mistakes_misspelt",
    ]
    text = report.summary()
    assert "mistakes_pipeline.py ['mistakes_no_key']: register failed: DiscoveryError" in text
    assert "has no 'pipeline' key" in text
    assert "must be a Runnable, a factory or a dict of options, got int" in text
    assert "ScheduleError" in text
    assert "did you mean 'timescope'?" in text
    assert not report.ok
