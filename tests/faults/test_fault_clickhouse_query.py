"""A ClickHouse query placeholder written inside quotes (``'{name}'``) would put the bound
literal's own quotes inside the template's, so that they cancel and the value becomes SQL. Such a
template is refused when the extractor is made, before anything is sent; placeholders outside
quotes, and quotes, braces and comments elsewhere in the query, still work."""

from __future__ import annotations

import pytest
from faultserver import FaultServer

from ductwork import ConfigError, create_clickhouse_extractor
from ductwork.connectors.clickhouse.query import bind_query, template_fields


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("SELECT * FROM t WHERE name = '{name}'", "string literal"),
        ("SELECT * FROM t WHERE name = 'x' OR name = 'a {name} b'", "string literal"),
        ("SELECT * FROM t WHERE name = 'it''s {name}'", "string literal"),
        ("SELECT * FROM t WHERE name = 'a\\' {name}'", "string literal"),
        ("SELECT `{name}` FROM t", "identifier"),
        ('SELECT "{name}" FROM t', "identifier"),
    ],
)
def test_a_placeholder_inside_quotes_is_refused_and_nothing_is_sent(
    api: FaultServer, query: str, where: str
) -> None:
    with pytest.raises(ConfigError) as info:
        create_clickhouse_extractor(query, {"url": api.url}, params={"name": "x' OR 1 --"})
    assert [field for field, _ in info.value.errors] == ["query"]
    assert f"placeholder {{name}} is inside a quoted {where}" in str(info.value)
    assert api.seen() == []


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM t WHERE name = {name}",
        "SELECT 'it''s', 'a\\\\', {name}",
        "SELECT '{{not a placeholder}}', {name}",
        "SELECT 1 -- don't\n, {name}",
        "SELECT /* it's */ {name}",
        'SELECT `a``b`, "c", {name}',
    ],
)
def test_placeholders_outside_quotes_are_bound(query: str) -> None:
    assert template_fields(query) == ["name"]
    sql, _ = bind_query(query, {"name": "x' OR 1 --"}, server_side=False)
    assert sql.endswith("'x\\' OR 1 --'")
