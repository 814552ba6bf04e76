"""The documentation is executed: docstring examples in the package and the README's Python blocks.

A README block is run unless its first line is a comment starting with ``# not run:`` followed by
the reason (for examples that need a server outside the test suite's control).
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
from pathlib import Path

import pytest

import ductwork

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

MODULES = sorted(info.name for info in pkgutil.walk_packages(ductwork.__path__, prefix="ductwork."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} docstring example(s) failed in {name}"


def readme_blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        code = match.group(1)
        if code.lstrip().startswith("# not run:"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, code))
    return blocks


BLOCKS = readme_blocks()


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs(line: int, code: str, tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)  # blocks that write files write them here
    try:
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
