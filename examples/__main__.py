"""Run every example pipeline (``examples/*_pipeline.py``) end to end and print its summary.

python -m examples            # all of them
python -m examples orders     # those whose file name contains "orders"
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import anyio

HERE = Path(__file__).parent


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


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    selector = argv[0] if argv else ""
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
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
