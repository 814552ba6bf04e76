"""The ``ductwork`` command, run as a subprocess: every command, exit codes, output, signals."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "pipelines"

MODULE = textwrap.dedent(
    '''
    """Pipelines for the command-line tests."""
    import anyio
    from ductwork import create_el_pipeline, create_etl_pipeline


    async def numbers(ctx):
        count = int(ctx.params.get("count", "30"))
        delay = float(ctx.params.get("delay", "0"))
        for start in range(0, count, 10):
            if delay:
                await anyio.sleep(delay)
            yield [{"n": n} for n in range(start, min(start + 10, count))]


    def double(batch):
        return [{"n": r["n"] * 2} for r in batch]


    async def discard(batch):
        pass


    def explode(batch):
        raise ValueError("record 7 is bad")


    async def one_day(ctx):
        if ctx.window.start.day == int(ctx.params.get("fail_day", "0")):
            raise RuntimeError(f"no data for {ctx.window.start:%Y-%m-%d}")
        yield [{"day": f"{ctx.window.start:%Y-%m-%d}"}]


    def register_pipelines(registry):
        registry.register_pipeline(
            "numbers",
            lambda: create_etl_pipeline(numbers, double, discard, name="numbers"),
            description="counts to a number",
            tags=["demo"],
        )
        registry.register_pipeline(
            "exploding", lambda: create_etl_pipeline(numbers, explode, discard, name="exploding")
        )
        registry.register_pipeline(
            "days", lambda: create_el_pipeline(one_day, discard, name="days"), timescope="daily"
        )
        registry.register_pipeline("ticking", lambda: create_etl_pipeline(numbers, double, discard,
                                                                          name="ticking"))
        registry.register_cron_job(
            "ticking", "* * * * * *", params={"count": "30", "delay": "0.5"}
        )
    '''
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "test_pipeline.py").write_text(MODULE)
    return tmp_path


_SCRATCH = Path(tempfile.mkdtemp(prefix="ductwork-cli-"))


def env_for(project: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    env["PYTHONUNBUFFERED"] = "1"
    if project is not None:
        env["DUCTWORK_PATH"] = str(project / "pipelines")
        env["DUCTWORK_STATE"] = str(project / "state.json")
    else:  # a command run in the checkout keeps its state out of it
        env["DUCTWORK_STATE"] = str(_SCRATCH / "state.db")
    return env


def ductwork(
    *args: str, project: Path | None = None, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ductwork", *args],
        capture_output=True,
        text=True,
        env=env_for(project),
        cwd=cwd or project or ROOT,
        timeout=timeout,
        check=False,
    )


class Running:
    """A ``ductwork`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args: str, project: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ductwork", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(project),
            cwd=project,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_line(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no line with {text!r} in:\n{''.join(self.lines)}")
            time.sleep(0.02)

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        with self.proc.stdout:
            out = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        self.proc.stderr.close()
        return code, out, "".join(self.lines)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in started:
        if item.proc.poll() is None:
            item.proc.kill()
            item.proc.wait()
        for stream in (item.proc.stdout, item.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def history(project: Path, name: str) -> list[dict[str, object]]:
    done = ductwork("history", name, "--json", project=project)
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, object]] = json.loads(done.stdout)
    return runs


# --- basics ---------------------------------------------------------------------------------------


def test_help_version_and_the_console_script() -> None:
    done = ductwork("--help")
    assert done.returncode == 0
    for command in ("list", "run", "validate", "serve", "backfill", "history"):
        assert command in done.stdout
    done = ductwork("--version")
    assert (done.returncode, done.stdout.strip()) == (0, "ductwork 0.1.0")
    (script,) = entry_points(group="console_scripts", name="ductwork")
    assert script.value == "ductwork.cli:main"


def test_help_and_version_import_no_command_module() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from ductwork.cli import main
        for argv in (["--version"], ["--help"], ["run", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        print(json.dumps(sorted(sys.modules)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env_for(None),
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    commands = {f"ductwork.cli.{name}" for name in ("run", "catalog", "serve", "backfill")}
    assert "ductwork.cli.parser" in loaded
    assert not loaded & commands


#: What neither ``import ductwork`` nor ``ductwork --version`` or ``--help`` may load.
HEAVY = ("pyarrow", "numpy", "chdb", "distributed", "uvicorn", "prometheus_client", "aiohttp")


@pytest.mark.parametrize(
    "argv",
    [["-c", "import ductwork"], ["-m", "ductwork", "--version"], ["-m", "ductwork", "--help"]],
    ids=["import", "version", "help"],
)
def test_start_up_loads_no_heavy_dependency(argv: list[str]) -> None:
    report = "print(json.dumps(sorted(sys.modules)))"  # the modules loaded once it is done
    done = subprocess.run(
        [sys.executable, "-c", f"import json, runpy, sys\n{_as_code(argv)}\n{report}"],
        capture_output=True,
        text=True,
        env=env_for(None),
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    loaded = set(json.loads(lines[-1]))
    assert "ductwork" in loaded
    if argv[-1] == "--version":
        assert lines[0] == "ductwork 0.1.0"
    assert sorted(name for name in HEAVY if name in loaded) == []
    # nor the pipeline machinery, which only the commands need
    assert [
        name for name in ("ductwork.cli.project", "ductwork.core.stages") if name in loaded
    ] == []


def _as_code(argv: list[str]) -> str:
    """The code that does what ``python *argv`` does (``-c code`` or ``-m module args...``)."""
    if argv[0] == "-c":
        return argv[1]
    module, *args = argv[1:]
    return (
        f"sys.argv = [{module!r}, *{args!r}]\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code"
    )


def test_usage_errors_exit_2() -> None:
    done = ductwork("run")
    assert done.returncode == 2
    assert "the following arguments are required: name" in done.stderr
    done = ductwork("run", "numbers", "--param", "novalue")
    assert done.returncode == 2
    assert "expected key=value, got 'novalue'" in done.stderr


def test_a_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    done = ductwork("list", "--path", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ductwork: error: pipeline directory {tmp_path / 'nowhere'} does not exist "
        "(give one with --path or $DUCTWORK_PATH)"
    ]


# --- list -----------------------------------------------------------------------------------------


def test_list_the_example_pipelines(tmp_path: Path) -> None:
    done = ductwork("list", "--path", str(EXAMPLES), "--state", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "TIMESCOPE", "LAST", "RUN", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert sorted(rows) == ["daily_orders", "large_orders", "product_mix"]
    assert "5 0 * * *" in rows["daily_orders"]
    assert "daily" in rows["daily_orders"]
    assert "One day of orders, priced." in rows["daily_orders"]
    assert "weekly" in rows["large_orders"]
    assert "one file per ISO week" in rows["large_orders"]


def test_list_json_shows_the_last_run_and_filters_by_tag(project: Path) -> None:
    assert ductwork("run", "numbers", project=project).returncode == 0
    done = ductwork("list", "--json", project=project)
    assert done.returncode == 0, done.stderr
    listed = {item["name"]: item for item in json.loads(done.stdout)}
    assert sorted(listed) == ["days", "exploding", "numbers", "ticking"]
    assert listed["numbers"]["last_run"]["status"] == "succeeded"
    assert listed["numbers"]["last_run"]["trigger"] == "manual"
    assert listed["numbers"]["description"] == "counts to a number"
    assert listed["ticking"]["schedules"] == ["* * * * * *"]
    assert listed["days"]["timescope"] == "daily"
    assert listed["exploding"]["last_run"] is None

    done = ductwork("list", "--tag", "demo", project=project)
    assert [line.split()[0] for line in done.stdout.splitlines()[2:]] == ["numbers"]
    assert "succeeded" in done.stdout


def test_list_warns_about_a_broken_module_but_lists_the_rest(project: Path) -> None:
    (project / "pipelines" / "broken_pipeline.py").write_text("import no_such_module\n")
    done = ductwork("list", project=project)
    assert done.returncode == 1  # the listing is there, and the exit status says it is not all
    assert "numbers" in done.stdout
    assert "warning: broken_pipeline.py: import failed: ModuleNotFoundError" in done.stderr
    assert ductwork("list", "--json", project=project).returncode == 1
    assert "ductwork validate" in done.stderr


def test_the_default_directory_is_pipelines_in_the_working_directory(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ductwork", "list"],
        capture_output=True,
        text=True,
        env=env_for(None),
        cwd=project,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "numbers" in done.stdout


# --- run ------------------------------------------------------------------------------------------


def test_run_prints_the_summary_and_records_the_run(project: Path) -> None:
    done = ductwork("run", "numbers", "--param", "count=250", project=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    head, *stages = done.stdout.strip().splitlines()
    assert head.startswith("numbers (pipeline) · succeeded · ")
    assert "250 in / 250 out" in head
    assert "rec/s" in head
    assert [line.split()[1:3] for line in stages] == [
        ["extract", "numbers:"],
        ["transform", "double:"],
        ["load", "discard:"],
    ]
    assert all("busy" in line and "blocked" in line for line in stages)
    assert sum("<- bottleneck" in line for line in stages) == 1

    (record,) = history(project, "numbers")
    assert record["status"] == "succeeded"
    assert record["trigger"] == "manual"
    assert record["params"] == {"count": "250"}
    assert record["records_out"] == 250


def test_run_with_a_window_writes_the_example_output(tmp_path: Path) -> None:
    done = ductwork(
        "run",
        "daily_orders",
        "--window",
        "2026-11-10",
        "--param",
        f"output_dir={tmp_path}",
        "--path",
        str(EXAMPLES),
        "--state",
        str(tmp_path / "state.json"),
    )
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "daily_orders" / "2026-11-10.jsonl").read_text().splitlines()
    assert f"{len(written)} in / {len(written)} out" in done.stdout
    assert len(written) > 0


def test_run_json(project: Path) -> None:
    done = ductwork("run", "days", "--window", "2024-02-29", "--json", project=project)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["window"] == {
        "start": "2024-02-29T00:00:00+00:00",
        "end": "2024-03-01T00:00:00+00:00",
    }
    assert [s["name"] for s in result["stages"]] == ["one_day", "discard"]


def test_a_failed_run_exits_1_with_one_line_and_the_summary(project: Path) -> None:
    done = ductwork("run", "exploding", project=project)
    assert done.returncode == 1
    assert "exploding (pipeline) · failed" in done.stdout
    assert "record 7 is bad" in done.stdout
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "ductwork: error: run failed: [pipeline 'exploding', stage 'explode'] transform stage "
        "failed at batch 1: ValueError: record 7 is bad (--verbose for details)"
    ]
    (record,) = history(project, "exploding")
    assert record["status"] == "failed"

    verbose = ductwork("run", "exploding", "--verbose", project=project)
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "ValueError: record 7 is bad" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("ductwork: error: run failed:")


def test_a_module_not_named_like_a_pipeline_module_gets_a_hint(project: Path) -> None:
    (project / "pipelines" / "flights_pipelines.py").write_text("PIPELINE_REGISTRY = {}\n")
    (project / "pipelines" / "loaders.py").write_text("NAME = 'flights'\n")
    (project / "pipelines" / "helpers.py").write_text("X = 1\n")
    done = ductwork("run", "flights", project=project)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "; flights_pipelines.py, loaders.py are not imported: pipeline modules are named "
        "*_pipeline.py"
    )


def test_run_errors_before_running_exit_2(project: Path) -> None:
    done = ductwork("run", "nope", project=project)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"ductwork: error: no pipeline named 'nope' in {project / 'pipelines'} "
        "(pipelines: days, exploding, numbers, ticking)"
    )
    done = ductwork("run", "days", "--window", "someday", project=project)
    assert done.returncode == 2
    assert done.stderr.startswith("ductwork: error: invalid window 'someday'")
    assert len(done.stderr.strip().splitlines()) == 1
    done = ductwork("run", "numbers", "--window", "2024-01-01", project=project)
    assert done.returncode == 2
    assert "has no timescope" in done.stderr
    assert history(project, "numbers") == []


PROGRESS_PARAMS = ("--param", "count=60", "--param", "delay=0.25")


def test_run_shows_progress_on_a_terminal_and_keeps_stdout_clean(project: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductwork", "run", "numbers", *PROGRESS_PARAMS],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**env_for(project), "COLUMNS": "120"},
        cwd=project,
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read().decode()
    assert proc.wait(10) == 0
    terminal = shown.decode()
    assert "numbers · " in terminal
    assert " in / " in terminal
    assert "transform" in terminal  # the per-stage table
    assert "\x1b[" in terminal  # redrawn in place
    assert out.startswith("numbers (pipeline) · succeeded")
    assert "\x1b" not in out


def test_sigint_during_run_cancels_it_and_records_it(project: Path, running: list[Running]) -> None:
    proc = Running(
        "run", "numbers", "-v", "--param", "count=1000", "--param", "delay=0.2", project=project
    )
    running.append(proc)
    proc.wait_for_line("run started: numbers")
    time.sleep(0.3)
    proc.proc.send_signal(signal.SIGINT)
    code, out, err = proc.finish()
    assert code == 130
    assert "numbers (pipeline) · cancelled" in out
    assert "ductwork: interrupted by SIGINT: the run was cancelled" in err
    assert "Traceback" not in err
    (record,) = history(project, "numbers")
    assert record["status"] == "cancelled"


def test_sigterm_during_run_cancels_it_too(project: Path, running: list[Running]) -> None:
    proc = Running(
        "run", "numbers", "-v", "--param", "count=1000", "--param", "delay=0.2", project=project
    )
    running.append(proc)
    proc.wait_for_line("run started: numbers")
    proc.proc.send_signal(signal.SIGTERM)
    code, _, err = proc.finish()
    assert code == 143
    assert "interrupted by SIGTERM" in err
    (record,) = history(project, "numbers")
    assert record["status"] == "cancelled"


# --- validate -------------------------------------------------------------------------------------


def test_validate_the_examples() -> None:
    done = ductwork("validate", "--path", str(EXAMPLES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "discovered 3 pipeline(s) in 3 module(s)" in done.stdout
    assert "validated 3 pipeline(s): 3 ok, 0 invalid" in done.stdout
    assert (
        "  ok    daily_orders: pipeline read_orders → price → tag_region → jsonl_file · "
        "timescope daily · schedule 5 0 * * *"
    ) in done.stdout.splitlines()


def test_validate_fails_on_a_broken_module_or_pipeline(project: Path) -> None:
    pipelines = project / "pipelines"
    (pipelines / "typo_pipeline.py").write_text("def build(:\n    pass\n")
    (pipelines / "bad_factory_pipeline.py").write_text(
        "PIPELINE_REGISTRY = {'bad_factory': lambda: 42}\n"
    )
    done = ductwork("validate", project=project)
    assert done.returncode == 1
    assert "error typo_pipeline.py: import failed: SyntaxError" in done.stdout
    assert "def build(:" in done.stdout  # the offending line
    assert "validated 5 pipeline(s): 4 ok, 1 invalid" in done.stdout
    assert "error bad_factory: " in done.stdout
    assert "returned int, not a Runnable" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("ductwork: error: 2 error(s) in")


def test_validate_an_empty_directory_fails(tmp_path: Path) -> None:
    done = ductwork("validate", "--path", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert "no pipelines found" in done.stderr


# --- serve ----------------------------------------------------------------------------------------


def test_serve_runs_jobs_and_stops_gracefully_on_sigint(
    project: Path, running: list[Running]
) -> None:
    proc = Running("serve", "--grace", "10", project=project)
    running.append(proc)
    proc.wait_for_line("job ticking: run")
    proc.proc.send_signal(signal.SIGINT)  # the run (1.5 s) is in flight: it may finish
    code, out, err = proc.finish()
    assert code == 0, err
    assert "ticking" in out.splitlines()[2]
    assert "* * * * * *" in out
    assert "press Ctrl+C to stop" in out
    assert "received SIGINT: shutting down" in err
    assert "waiting up to 10s for 1 run(s) in flight" in err
    assert "stopped: 1 run(s): 1 succeeded, 0 failed, 0 cancelled" in out
    (record,) = history(project, "ticking")
    assert record["status"] == "succeeded"
    assert record["trigger"] == "schedule"
    assert record["params"] == {"count": "30", "delay": "0.5"}


def test_serve_cancels_runs_after_the_grace_period_on_sigterm(
    project: Path, running: list[Running]
) -> None:
    (project / "pipelines" / "test_pipeline.py").write_text(
        MODULE.replace('"delay": "0.5"', '"delay": "20"')
    )
    proc = Running("serve", "--grace", "0.3", project=project)
    running.append(proc)
    proc.wait_for_line("job ticking: run")
    proc.proc.send_signal(signal.SIGTERM)
    code, out, err = proc.finish()
    assert code == 0, err
    assert "received SIGTERM: shutting down" in err
    assert "cancelling 1 run(s) still going after the 0.3s grace period" in err
    assert "stopped: 1 run(s): 0 succeeded, 0 failed, 1 cancelled" in out
    (record,) = history(project, "ticking")
    assert record["status"] == "cancelled"


def test_serve_without_schedules_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "only_pipeline.py").write_text(
        "from ductwork import create_el_pipeline\n"
        "async def extract(ctx):\n    yield [{'a': 1}]\n"
        "PIPELINE_REGISTRY = {'only': lambda: create_el_pipeline(extract, print)}\n"
    )
    done = ductwork("serve", "--path", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "no scheduled pipelines in" in done.stderr


# --- backfill and history -------------------------------------------------------------------------


def test_backfill_runs_every_window_and_resumes(project: Path) -> None:
    done = ductwork(
        "backfill",
        "days",
        "--start",
        "2024-02-27",
        "--end",
        "2024-03-02",
        "--workers",
        "2",
        project=project,
    )
    assert done.returncode == 0, done.stderr
    assert "4 daily windows: 4 succeeded, 0 failed, 0 skipped" in done.stdout
    assert done.stdout.count(": succeeded") == 4
    assert "backfill days:" not in done.stderr  # no status line by default without a terminal

    again = ductwork(
        "backfill", "days", "--start", "2024-02-26", "--end", "2024-03-02", project=project
    )
    assert again.returncode == 0
    assert "5 daily windows: 1 succeeded, 0 failed, 4 skipped" in again.stdout

    runs = history(project, "days")
    assert [r["trigger"] for r in runs] == ["backfill"] * 5


def test_a_failed_backfill_exits_1(project: Path) -> None:
    done = ductwork(
        "backfill",
        "days",
        "--start",
        "2024-03-01",
        "--end",
        "2024-03-04",
        "--param",
        "fail_day=2",
        "--progress",
        project=project,
    )
    assert done.returncode == 1
    assert "3 daily windows: 2 succeeded, 1 failed, 0 skipped" in done.stdout
    # --progress without a terminal: a plain line per finished window, in order
    assert [line for line in done.stderr.splitlines() if line.startswith("backfill days:")] == [
        "backfill days: 1/3 done, 0 running, 0 failed",
        "backfill days: 1/3 done, 0 running, 1 failed",
        "backfill days: 2/3 done, 0 running, 1 failed",
    ]
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("ductwork: error")]
    assert "backfill failed for 1 of 3 windows" in error
    assert "no data for 2024-03-02" in error
    done = ductwork(
        "backfill", "numbers", "--start", "2024-03-01", "--end", "2024-03-04", project=project
    )
    assert done.returncode == 2
    assert "has no timescope" in done.stderr


def test_backfill_shows_a_status_line_on_a_terminal(project: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ductwork",
            "backfill",
            "days",
            "--start",
            "2024-03-01",
            "--end",
            "2024-03-04",
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env_for(project),
        cwd=project,
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read().decode()
    assert proc.wait(10) == 0
    terminal = shown.decode()
    # rewritten in place, the final state always shown, and the line ended
    assert terminal.startswith("\r\x1b[Kbackfill days: ")
    assert terminal.endswith("\r\x1b[Kbackfill days: 3/3 done, 0 running, 0 failed\r\n")
    assert out.startswith("backfill days (daily) · succeeded")
    assert "backfill days:" not in out


def test_history_table(project: Path) -> None:
    empty = ductwork("history", "numbers", project=project)
    assert empty.returncode == 0
    assert empty.stdout.startswith("no runs of numbers recorded in ")

    assert ductwork("run", "numbers", project=project).returncode == 0
    assert ductwork("run", "exploding", project=project).returncode == 1
    assert ductwork("run", "days", "--window", "2024-02-29", project=project).returncode == 0

    done = ductwork("history", "exploding", project=project)
    assert done.returncode == 0
    header, _, row = done.stdout.splitlines()[:3]
    assert header.split()[:4] == ["STARTED", "(UTC)", "STATUS", "TRIGGER"]
    assert "failed" in row
    assert "manual" in row
    assert "record 7 is bad" in row

    done = ductwork("history", "days", project=project)
    assert "2024-02-29 → 2024-03-01" in done.stdout

    done = ductwork("history", "nope", project=project)
    assert done.returncode == 2
    assert "no pipeline named 'nope'" in done.stderr


# --- the demo -------------------------------------------------------------------------------------


def test_the_demo_tour_of_the_command_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from examples.__main__ import tour; sys.exit(tour())"],
        capture_output=True,
        text=True,
        env=env_for(None),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout
    for command in ("validate", "list", "run daily_orders", "backfill", "history", "serve"):
        assert f"$ ductwork {command}" in done.stdout
    assert "validated 3 pipeline(s): 3 ok, 0 invalid" in done.stdout
    assert "7 daily windows: 7 succeeded, 0 failed, 0 skipped" in done.stdout
    assert "stopped: 0 run(s)" in done.stdout
    assert "2026-11-10.jsonl" in done.stdout.splitlines()[-1]
