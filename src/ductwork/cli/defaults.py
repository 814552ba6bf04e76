"""Where the command looks when not told: its environment variables and default paths."""

from __future__ import annotations

from pathlib import Path

PATH_ENV = "DUCTWORK_PATH"
"""The pipeline directories, separated by ``os.pathsep``, when no ``--path`` is given."""
STATE_ENV = "DUCTWORK_STATE"
"""The state file when no ``--state`` is given."""
TOKEN_ENV = "DUCTWORK_TOKEN"
"""The bearer token of ``serve --http``'s POST endpoints when no ``--token`` is given."""
DEFAULT_PATH = "pipelines"
PIPELINE_PATTERN = "*_pipeline.py"
"""The names of the modules discovery imports."""
DEFAULT_STATE = str(Path(".ductwork") / "state.db")
