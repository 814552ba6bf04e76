"""The ``ductwork`` command: list, run, validate, serve, backfill and history.

Pipelines come from the ``*_pipeline.py`` modules of a directory (``--path``, default
``./pipelines`` or ``$DUCTWORK_PATH``); run history lives in a state file (``--state``, default
``./.ductwork/state.db`` or ``$DUCTWORK_STATE``): an SQLite database, safe for ``ductwork run``
beside ``ductwork serve``, or a JSON file when the name ends in ``.json``. A
``./.ductwork/state.json`` left by an older version is copied into the database on first
use::

    ductwork list                          # name, schedule, timescope, last run, description
    ductwork run daily_orders --window 2026-11-10 --param output_dir=/tmp/out
    ductwork validate                      # discovery report; exit 1 on any error
    ductwork serve                         # the scheduler, until SIGINT or SIGTERM
    ductwork backfill daily_orders --start 2026-11-01 --end 2026-11-08 --workers 4
    ductwork backfill daily_orders --start 2026-01-01 --end 2026-11-01 --workers 16 \\
        --cluster tcp://scheduler:8786        # the windows run on a Dask cluster's workers
    ductwork history daily_orders

Exit codes: 0 success; 1 a run, backfill or validation failed; 2 bad usage or configuration (an
unknown pipeline, an invalid window, a missing directory...); 128 + the signal number when SIGINT
or SIGTERM interrupted a run (which is recorded as cancelled). Errors are printed as one line;
``--verbose`` adds the traceback.

The package has one module per concept: :mod:`.parser` builds the arguments, :mod:`.app` runs a
command and turns its outcome into an exit code, :mod:`.project` finds the pipelines and opens the
state store; each command lives in its own module (:mod:`.run`, :mod:`.catalog`, :mod:`.serve`,
:mod:`.backfill`), imported only when that command runs, and so is :mod:`.project`: ``--help``
and ``--version`` load neither the pipelines' machinery nor pyarrow.
"""

from typing import TYPE_CHECKING, Any

from .app import main
from .parser import build_parser

__all__ = ["build_parser", "main", "open_state"]

if TYPE_CHECKING:
    from .project import open_state as open_state
else:

    def __getattr__(name: str) -> Any:
        # the project module loads the pipeline machinery: only the commands need it
        if name == "open_state":
            from .project import open_state

            return open_state
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
