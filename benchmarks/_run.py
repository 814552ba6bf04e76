"""Run one benchmark module's ``main(argv)`` in this process and save what it returned.

    python -m benchmarks._run MODULE RESULT_JSON [ARGS...]

Used by ``python -m benchmarks`` so that every module runs in a fresh process with its own peak
RSS. The module prints its own header and table to stdout; this writes its rows, the wall time and
the peak RSS of the process to ``RESULT_JSON`` (what ``main`` returned goes in as ``rows``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from time import perf_counter
from typing import Any

from benchmarks._util import peak_rss_mb


def run(module_name: str, result_path: str, argv: list[str]) -> None:
    module = importlib.import_module(module_name)
    t0 = perf_counter()
    if inspect.signature(module.main).parameters:
        rows: Any = module.main(argv)
    else:  # a main() that parses sys.argv itself
        sys.argv = [module_name, *argv]
        rows = module.main()
    seconds = perf_counter() - t0
    with open(result_path, "w") as fh:
        json.dump(
            {
                "title": (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "",
                # A list of rows by convention; a module may return another JSON value.
                "rows": [] if rows is None else list(rows) if isinstance(rows, tuple) else rows,
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
            },
            fh,
            indent=2,
            default=str,
        )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    run(sys.argv[1], sys.argv[2], sys.argv[3:])
