"""The README shows one example of each transformer (tests/test_docs.py runs every README block)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Transformers", text.index("## Features"))
    end = min(i for i in (text.find("\n### ", start + 1), text.find("\n## ", start + 1)) if i > 0)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_readme_has_one_example_per_transformer() -> None:
    examples = readme_examples()
    assert len(examples) == 4
    for name in (
        "create_lambda_transformer",
        "convert_types",
        "transform_columns",
        "validate_records",
    ):
        assert sum(name in example for example in examples) == 1, name
