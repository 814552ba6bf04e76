"""Run every example pipeline (``examples/*_pipeline.py``) end to end, then tour the command line.

python -m examples            # all of them, then `ductwork` on examples/pipelines
python -m examples orders     # only those whose file name contains "orders" (no tour)

The tour runs the ``ductwork`` command on the discoverable modules of ``examples/pipelines``:
``validate``, ``list``, ``run`` (with a live progress display when stderr is a terminal),
``backfill``, ``history``, and ``serve`` for two seconds, stopped as Ctrl+C would. Its state file
and outputs go to ``examples/output/``; every start of the tour begins with a fresh state.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import anyio

HERE = Path(__file__).parent
PIPELINES = HERE / "pipelines"
TOUR_OUTPUT = HERE / "output" / "tour"


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
        try:
            result = anyio.run(module.main)
        except Exception as exc:
            failures += 1
            print(f"FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
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


def show(*args: str, expect: int = 0) -> bool:
    """Print and run one ``ductwork`` command; return whether it exited with ``expect``."""
    print(f"\n$ ductwork {' '.join(args)}", flush=True)
    done = subprocess.run(ductwork_command(*args), check=False)
    if done.returncode != expect:
        print(f"FAILED: exit code {done.returncode}, expected {expect}", flush=True)
    return done.returncode == expect


def show_serve(seconds: float) -> bool:
    """Run ``ductwork serve`` for ``seconds``, then stop it with SIGINT (as Ctrl+C would)."""
    print(f"\n$ ductwork serve      # stopped with Ctrl+C after {seconds:g} s", flush=True)
    proc = subprocess.Popen(ductwork_command("serve", "--grace", "5"))
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(30)
    if code != 0:
        print(f"FAILED: exit code {code}", flush=True)
    return code == 0


def tour() -> int:
    """Run the ``ductwork`` commands on ``examples/pipelines``; return how many failed."""
    shutil.rmtree(TOUR_OUTPUT, ignore_errors=True)
    TOUR_OUTPUT.mkdir(parents=True)
    out = f"output_dir={TOUR_OUTPUT}"
    print("\n=== the ductwork command, on examples/pipelines ===", flush=True)
    steps = [
        show("validate"),
        show("list"),
        show("run", "daily_orders", "--window", "2026-11-10", "--param", out),
        show("backfill", "daily_orders", "--start", "2026-11-01", "--end", "2026-11-08",
             "--workers", "4", "--param", out),
        show("history", "daily_orders", "--limit", "4"),
        show("list"),
        show_serve(2.0),
    ]  # fmt: skip
    written = sorted(p.name for p in (TOUR_OUTPUT / "daily_orders").glob("*.jsonl"))
    print(f"\nwritten to {TOUR_OUTPUT / 'daily_orders'}: {', '.join(written)}", flush=True)
    return steps.count(False)


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is too many
    selector = argv[0] if argv else ""
    failures = run_examples(selector)
    if not selector:
        failures += tour()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
