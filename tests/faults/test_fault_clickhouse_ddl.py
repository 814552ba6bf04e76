"""Column types given to the ClickHouse loader's ``create_table`` go into DDL, so each is parsed as
ClickHouse type syntax and refused, naming its column, before any SQL is sent: a type cannot end
the statement, open a comment, or append clauses after its closing parenthesis."""

from __future__ import annotations

import pytest
from faultserver import FaultServer

from ductwork import ClickHouseLoaderConfig, ConfigError, create_clickhouse_loader
from ductwork.connectors.clickhouse.codec import type_error, valid_type

INJECTED = "UInt8) ENGINE=Memory; DROP TABLE x --"


@pytest.mark.parametrize(
    "spec",
    [
        INJECTED,
        "Nullable(UInt8, x) ENGINE = (Log)",  # balanced, but a clause after the type
        "UInt8) ENGINE = Memory AS SELECT (1",
        "String /* comment */",
        "String -- comment",
        "Nullable(String)\nENGINE = Log",
        "Enum8('a' = 1); DROP TABLE t",
        "Decimal(9, 2), injected Nullable(String)",  # a second column smuggled into the DDL
        "String, injected String",
    ],
)
def test_an_injected_type_is_refused_and_nothing_is_sent(api: FaultServer, spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_clickhouse_loader(
            "events",
            connection_config={"url": api.url},
            create_table={"id": "UInt64", "payload": spec},
        )
    assert [field for field, _ in info.value.errors] == ["create_table"]
    assert "column 'payload'" in str(info.value)
    assert "'id'" not in str(info.value)
    assert api.seen() == []


def test_the_options_model_refuses_an_injected_type_too() -> None:
    with pytest.raises(ConfigError, match="column 'id'"):
        ClickHouseLoaderConfig(table="t", create_table={"id": INJECTED})


def test_valid_types_still_create_a_loader(api: FaultServer) -> None:
    loader = create_clickhouse_loader(
        "events",
        connection_config={"url": api.url},
        create_table={"id": "UInt64", "tags": "Array(LowCardinality(String))"},
    )
    assert loader.config.create_table == {"id": "UInt64", "tags": "Array(LowCardinality(String))"}
    assert api.seen() == []  # nothing is sent before the run


@pytest.mark.parametrize(
    "spec",
    [
        "UInt64",
        "Nullable(String)",
        "FixedString(16)",
        "Decimal(38, 10)",
        "Array(Nullable(Decimal(9, 2)))",
        "Enum8('red' = 1, 'green' = 2)",
        "Enum16('low' = -1000, 'high' = 1000)",
        "Enum8('it''s' = 1)",
        "Enum8('a, b' = 1, '(' = 2)",
        "DateTime('Europe/Berlin')",
        "DateTime64(3, 'America/Argentina/Buenos_Aires')",
        "Tuple(id UInt64, name String)",
        "Map(String, Array(UInt8))",
        "LowCardinality(Nullable(String))",
        "AggregateFunction(uniq, UInt64)",
        "Nested(a UInt8, b String)",
        "Tuple()",
        "Array( UInt8 )",
    ],
)
def test_valid_types_pass(spec: str) -> None:
    assert type_error(spec) is None
    assert valid_type(spec)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "does not start with a type name"),
        ("   ", "does not start with a type name"),
        ("1Int", "does not start with a type name"),
        ("_Hidden", "does not start with a type name"),
        ("'UInt8'", "does not start with a type name"),
        ("String;", "unexpected ';' at 6"),
        ("UInt8 -- x", "unexpected '-' at 6"),
        ("UInt8 /* x */", "unexpected '/' at 6"),
        ("`UInt8`", "unexpected '`' at 0"),
        ('Tuple("a" UInt8)', "unexpected '\"' at 6"),
        ("Enum8('a\\' = 1)", 'unexpected "\'" at 6'),
        ("Enum8('a = 1)", 'unexpected "\'" at 6'),
        ("UInt8\r", "unexpected '\\r' at 5"),
        ("UInt8 DEFAULT 1", "unexpected 'DEFAULT' at 6 (arguments go in parentheses)"),
        ("UInt8) ENGINE = Log", "unexpected ')' at 5 (arguments go in parentheses)"),
        ("Array(UInt8", "unbalanced '('"),
        ("Enum8('a)' = 1", "unbalanced '('"),
        ("Array(UInt8))", "unbalanced ')' at 12"),
        ("Nullable(UInt8) CODEC(ZSTD)", "unexpected 'CODEC' at 16 after the closing parenthesis"),
        ("Array(UInt8)(", "unexpected '(' at 12 after the closing parenthesis"),
        ("Enum8('a' = - 1)", "unexpected '-' at 12"),
    ],
)
def test_invalid_types_are_refused_with_the_reason(spec: str, reason: str) -> None:
    assert type_error(spec) == reason
    assert not valid_type(spec)
