"""Console loader: each format's exact output, bounded tables, progress only on terminals."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest

from ductwork import Batch, ConfigError, create_el_pipeline
from ductwork.connectors.console import create_console_loader, progress_shown_elsewhere


async def two_batches() -> AsyncIterator[Batch]:
    yield [{"id": 1, "name": "ada", "day": date(2026, 1, 2)}]
    yield [{"id": 2, "name": "grace, hopper", "day": None}]


async def run(fmt: str, **kwargs: object) -> str:
    out = io.StringIO()
    loader = create_console_loader(fmt, stream=out, **kwargs)  # type: ignore[arg-type]
    await create_el_pipeline(two_batches, loader, logging=False).run()
    return out.getvalue()


async def test_jsonl() -> None:
    assert await run("jsonl") == (
        '{"id":1,"name":"ada","day":"2026-01-02"}\n{"id":2,"name":"grace, hopper","day":null}\n'
    )


async def test_json_is_one_valid_array() -> None:
    text = await run("json")
    assert text == (
        '[\n  {"id":1,"name":"ada","day":"2026-01-02"},\n'
        '  {"id":2,"name":"grace, hopper","day":null}\n]\n'
    )


async def test_json_with_no_records_is_an_empty_array() -> None:
    async def nothing() -> AsyncIterator[Batch]:
        if False:  # pragma: no cover
            yield []

    out = io.StringIO()
    await create_el_pipeline(nothing, create_console_loader("json", stream=out)).run()
    assert out.getvalue() == "[]\n"


async def test_csv_quotes_and_keeps_the_header_once() -> None:
    assert await run("csv") == 'id,name,day\n1,ada,2026-01-02\n2,"grace, hopper",\n'


async def test_csv_with_selected_columns() -> None:
    assert await run("csv", columns=["name", "id"]) == 'name,id\nada,1\n"grace, hopper",2\n'


async def test_table_shows_rows_and_counts_the_rest() -> None:
    text = await run("table", max_rows=1)
    lines = text.splitlines()
    assert any("id" in line and "name" in line and "day" in line for line in lines)
    assert any("ada" in line and "2026-01-02" in line for line in lines)
    assert not any("grace" in line for line in lines)
    assert lines[-1] == "… 1 more records (2 in all)"


async def test_decimal_is_written_as_text() -> None:
    async def money() -> AsyncIterator[Batch]:
        yield [{"amount": Decimal("1.10")}]

    out = io.StringIO()
    await create_el_pipeline(money, create_console_loader("jsonl", stream=out)).run()
    assert out.getvalue() == '{"amount":"1.10"}\n'


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_goes_to_stderr_only_when_it_is_a_terminal() -> None:
    out = io.StringIO()
    quiet = io.StringIO()
    await create_el_pipeline(
        two_batches, create_console_loader("jsonl", stream=out, progress_stream=quiet)
    ).run()
    assert quiet.getvalue() == ""

    tty = FakeTerminal()
    await create_el_pipeline(
        two_batches,
        create_console_loader("jsonl", stream=io.StringIO(), progress_stream=tty),
        name="shown",
    ).run()
    assert "shown" in tty.getvalue()
    assert "records" in tty.getvalue()


async def test_no_progress_line_while_another_display_owns_the_terminal() -> None:
    tty = FakeTerminal()
    out = io.StringIO()
    token = progress_shown_elsewhere.set(True)
    try:
        await create_el_pipeline(
            two_batches,
            create_console_loader("jsonl", stream=out, progress_stream=tty),
            name="hidden",
        ).run()
    finally:
        progress_shown_elsewhere.reset(token)
    assert tty.getvalue() == ""
    assert out.getvalue().count("\n") == 2


def test_bad_format_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        create_console_loader("xml")  # type: ignore[arg-type]
    assert info.value.errors[0][0] == "format"
