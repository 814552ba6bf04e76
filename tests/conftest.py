"""Plugins of the whole suite: the ClickHouse legs (``clickhouse_legs``), so that any test
directory may ask for the ``clickhouse`` fixture."""

pytest_plugins = ["clickhouse_legs"]
