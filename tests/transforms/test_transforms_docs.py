"""The README shows one example of each transformer, and their use on Arrow tables with polars and
DuckDB (tests/test_docs.py runs every README block)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Transformers", text.index("## Features"))
    ends = (text.find(f"\n{level} ", start + 1) for level in ("####", "###", "##"))
    end = min(i for i in ends if i > 0)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def arrow_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("#### On Arrow tables", text.index("### Transformers"))
    end = text.index("\n### ", start)
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


def test_the_readme_shows_transformers_on_arrow_tables_with_polars_and_duckdb() -> None:
    examples = arrow_examples()
    assert len(examples) == 2
    assert "pa.table(" in examples[0]
    for call in ("pl.from_arrow", ".to_arrow()", "duckdb.arrow(", "duckdb.sql(", "to_arrow_table"):
        assert call in examples[1], call
