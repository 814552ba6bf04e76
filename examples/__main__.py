"""Run every example pipeline (``examples/*_pipeline.py``) end to end, then tour the command line.

python -m examples            # all of them, then `ductwork` on examples/pipelines
python -m examples orders     # only those whose file name contains "orders" (no tour)

Each example is announced with the first line of its docstring (what it shows) and, when it
fails something on purpose, with its ``EXPECTED`` note, so a deliberate failure in its run
summary reads as what it is. Log lines go to ``examples/output/demo.log``, not the terminal.

The tour runs the ``ductwork`` command on the discoverable modules of ``examples/pipelines``:
``validate``, ``list``, ``run`` (with a live progress display when stderr is a terminal),
``backfill``, ``history``, and ``serve`` for two seconds, stopped as
Ctrl+C would. Its state file and outputs go to ``examples/output/``; every start of the tour
begins with a fresh state.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import anyio

HERE = Path(__file__).parent
PIPELINES = HERE / "pipelines"
TOUR_OUTPUT = HERE / "output" / "tour"
LOG = HERE / "output" / "demo.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@contextmanager
def logging_to(path: Path, mode: str = "w") -> Iterator[None]:
    """Send the log lines of ductwork (and everything else at INFO) to ``path``, not the
    terminal, while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode=mode, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    level = root.level
    # ductwork's own logger may have been set up by the host (a level, no propagation): let its
    # lines reach the file while the block runs, and put it back afterwards
    own = logging.getLogger("ductwork")
    saved = (own.level, own.propagate, own.disabled)
    disabled_below = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    own.setLevel(logging.NOTSET)
    own.propagate, own.disabled = True, False
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        own.setLevel(saved[0])
        own.propagate, own.disabled = saved[1], saved[2]
        logging.disable(disabled_below)
        handler.close()


def describe(module: ModuleType) -> list[str]:
    """What an example shows (its docstring's first line) and what it fails on purpose."""
    lines = [f"what it shows: {(module.__doc__ or '').strip().splitlines()[0]}"]
    expected = getattr(module, "EXPECTED", None)
    if expected:
        lines.append(f"expected: {expected}")
    return lines


def load_example(path: Path) -> ModuleType:
    """Import an example module from its file."""
    spec = importlib.util.spec_from_file_location(f"examples.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def example_paths(selector: str = "") -> list[Path]:
    """Every example pipeline file, in name order."""
    return [p for p in sorted(HERE.glob("*_pipeline.py")) if selector in p.stem]


def run_examples(selector: str) -> int:
    """Run the example pipelines; return how many failed."""
    failures = 0
    for path in example_paths(selector):
        print(f"\n=== {path.name} ===", flush=True)
        module = load_example(path)
        print("\n".join(describe(module)), flush=True)
        try:
            result = anyio.run(module.main)
        except Exception as exc:
            failures += 1
            print(f"FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        print("run summary:", flush=True)
        print(result.summary(), flush=True)
    return failures


def ductwork_command(*args: str) -> list[str]:
    """The command line running ``ductwork`` on the example pipelines with the tour's state."""
    return [
        sys.executable,
        "-m",
        "ductwork",
        *args,
        "--path",
        str(PIPELINES),
        "--state",
        str(TOUR_OUTPUT / "state.json"),
    ]


def show(*args: str, why: str, expect: int = 0) -> bool:
    """Print and run one ``ductwork`` command; return whether it exited with ``expect``."""
    print(f"\n$ ductwork {' '.join(args)}      # {why}", flush=True)
    done = subprocess.run(ductwork_command(*args), check=False)
    if done.returncode != expect:
        print(f"FAILED: exit code {done.returncode}, expected {expect}", flush=True)
    return done.returncode == expect


def show_serve(seconds: float) -> bool:
    """Run ``ductwork serve`` until it is serving, ``seconds`` more, then stop it with SIGINT
    (as Ctrl+C would)."""
    print(
        f"\n$ ductwork serve      # runs the schedules; stopped with Ctrl+C after {seconds:g} s"
        f" (its log lines go to {LOG.relative_to(HERE.parent)})",
        flush=True,
    )
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            ductwork_command("serve", "--grace", "5"), stdout=subprocess.PIPE, stderr=log, text=True
        )
        code = _serve_for(proc, seconds)
    if code != 0:
        print(f"FAILED: exit code {code}", flush=True)
    return code == 0


def _serve_for(proc: subprocess.Popen[str], seconds: float) -> int:
    """Echo ``serve``'s output until it serves, wait ``seconds``, stop it; its exit code."""
    assert proc.stdout is not None
    for line in proc.stdout:  # up to the line saying it serves (imports can take a while)
        print(line, end="", flush=True)
        if line.startswith("serving "):
            break
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    print(rest, end="", flush=True)
    return proc.returncode


def tour() -> int:
    """Run the ``ductwork`` commands on ``examples/pipelines``; return how many failed."""
    shutil.rmtree(TOUR_OUTPUT, ignore_errors=True)
    TOUR_OUTPUT.mkdir(parents=True)
    out = f"output_dir={TOUR_OUTPUT}"
    print("\n=== the ductwork command, on examples/pipelines ===", flush=True)
    steps = [
        show("validate", why="import every module, check every pipeline"),
        show("list", why="the registered pipelines; none has run yet"),
        show("run", "daily_orders", "--window", "2026-11-10", "--param", out,
             why="one day's window"),
        show("backfill", "daily_orders", "--start", "2026-11-01", "--end", "2026-11-08",
             "--workers", "4", "--param", out, why="seven days, four at a time"),
        show("history", "daily_orders", "--limit", "4",
             why="the newest runs; --json prints them as JSON for scripts"),
        show("list", why="now with each pipeline's last run; --json for scripts"),
        show_serve(2.0),
    ]  # fmt: skip
    written = sorted(p.name for p in (TOUR_OUTPUT / "daily_orders").glob("*.jsonl"))
    print(f"\nwritten to {TOUR_OUTPUT / 'daily_orders'}: {', '.join(written)}", flush=True)
    return steps.count(False)


def main(argv: list[str]) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is too many
    selector = argv[0] if argv else ""
    print(f"log lines (runs started and finished, retries, skipped rows) go to {LOG}", flush=True)
    with logging_to(LOG):
        failures = run_examples(selector)
    if not selector:
        failures += tour()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
