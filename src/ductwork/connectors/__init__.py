"""Connectors to external systems: files, HTTP, ClickHouse and the console."""
