"""Fixtures of the fault suite: fault HTTP servers on 127.0.0.1 (see ``faultserver``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faultserver import FaultServer, fault_server


@pytest.fixture
def api() -> Iterator[FaultServer]:
    """A fault server for one test."""
    with fault_server() as server:
        yield server


@pytest.fixture
def other() -> Iterator[FaultServer]:
    """A second server: another origin (its port differs)."""
    with fault_server() as server:
        yield server


@pytest.fixture
def tls_api() -> Iterator[FaultServer]:
    """A server whose one port speaks HTTP and HTTPS: two origins differing in scheme alone."""
    with fault_server(tls=True) as server:
        yield server
