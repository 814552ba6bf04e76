"""A new user's first commands: a second ``make demo`` installs nothing again, and the README says
where the ``ductwork`` command is and how to put it on the shell's ``PATH``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make(*args: str, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-C", str(ROOT), f"VENV={venv}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_make_demo_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    # a fresh .venv: the demo's install step has to run
    assert _make("-q", "install-demo", venv=venv).returncode == 1
    # after it (its stamp is left in the venv) nothing is installed again
    (venv / ".installed-demo").touch()
    assert _make("-q", "install-demo", venv=venv).returncode == 0
    dry = _make("-n", "demo", venv=venv)
    assert dry.returncode == 0, dry.stderr
    assert "pip install" not in dry.stdout
    assert "-m examples" in dry.stdout
    # ... until pyproject.toml is newer than the stamp
    stamp = (venv / ".installed-demo").stat().st_mtime
    os.utime(
        venv / ".installed-demo", (stamp - 10**6, (ROOT / "pyproject.toml").stat().st_mtime - 1)
    )
    assert "pip install" in _make("-n", "demo", venv=venv).stdout


def test_the_readme_says_where_the_command_is() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## The two commands")
    section = text[start : text.index("\n## ", start + 1)]
    assert "The `ductwork` command is installed in `.venv/bin`" in section
    assert "source .venv/bin/activate" in section
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in section
    assert "A second `make demo` does not install again" in section
