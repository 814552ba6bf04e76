"""Fixtures for the connector tests.

ClickHouse: the ``clickhouse`` fixture starts one real ``clickhouse-server`` per session, the first
time a test asks for it (so tests that do not need it never start it), from a config file in a
temporary directory with free loopback ports, and stops it at the end. Set ``CLICKHOUSE_URL``
(``http://user:password@host:8123``) to run the tests against an existing server instead. A missing
server is a test failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ductwork import ClickHouseConfig

SERVER_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/server.log</log>
        <errorlog>{dir}/server.err.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <timezone>UTC</timezone>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <users_config>{dir}/users.xml</users_config>
</yandex>
"""

USERS_CONFIG = """<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <etl>
            <password>{password}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </etl>
    </users>
    <quotas><default></default></quotas>
</yandex>
"""

# The password of the "etl" user of the servers the tests start (a test checks it never leaks).
ETL_PASSWORD = "s3cr3t-pa55word"


def _server_command() -> list[str]:
    for candidate in (shutil.which("clickhouse-server"), "/usr/sbin/clickhouse-server"):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    single = shutil.which("clickhouse")
    if single:
        return [single, "server"]
    pytest.fail(
        "clickhouse-server is not installed: run `make test` (it installs it) or set "
        "CLICKHOUSE_URL to an existing server"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalServer:
    """A clickhouse-server process with its own data directory and free loopback ports."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.http_port = _free_port()
        self.tcp_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.etl_password = ETL_PASSWORD
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.xml").write_text(
            SERVER_CONFIG.format(dir=directory, http_port=self.http_port, tcp_port=self.tcp_port)
        )
        (directory / "users.xml").write_text(USERS_CONFIG.format(password=ETL_PASSWORD))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again, on the same data) and wait until it answers ``SELECT 1``."""
        log = open(self.directory / "stdout.log", "ab")  # noqa: SIM115 - the process owns it
        self.process = subprocess.Popen(
            [*_server_command(), f"--config-file={self.directory / 'config.xml'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"clickhouse-server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                response = httpx.post(self.url, content=b"SELECT 1", timeout=1.0)
                if response.status_code == 200 and response.text.strip() == "1":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"clickhouse-server did not answer within {timeout:g}s:\n{self.log()}")

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM), or kill it if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "server.err.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


def _auth(config: ClickHouseConfig) -> dict[str, str]:
    headers = {"X-ClickHouse-User": config.user}
    if config.password.get_secret_value():
        headers["X-ClickHouse-Key"] = config.password.get_secret_value()
    return headers


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the session's ClickHouse server (started here unless CLICKHOUSE_URL is set)."""
    external = os.environ.get("CLICKHOUSE_URL")
    if external:
        config = ClickHouseConfig(url=external)
        try:
            httpx.post(
                config.url, content=b"SELECT 1", headers=_auth(config), timeout=5.0
            ).raise_for_status()
        except httpx.HTTPError as exc:
            pytest.fail(f"CLICKHOUSE_URL does not answer SELECT 1: {exc}")
        yield external
        return
    server = LocalServer(tmp_path_factory.mktemp("clickhouse"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clickhouse(clickhouse_url: str) -> Iterator[ClickHouseConfig]:
    """Connection settings for a fresh database on the session's server, dropped at the end."""
    base = ClickHouseConfig(url=clickhouse_url)
    database = f"ductwork_test_{uuid.uuid4().hex[:12]}"
    auth = _auth(base)

    def run(sql: str) -> None:
        httpx.post(base.url, content=sql.encode(), headers=auth, timeout=30).raise_for_status()

    run(f"CREATE DATABASE {database}")
    try:
        yield base.model_copy(update={"database": database})
    finally:
        run(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def local_clickhouse(tmp_path: Path) -> Iterator[Callable[[], LocalServer]]:
    """Start private servers that a test may stop (always local, even with CLICKHOUSE_URL)."""
    servers: list[LocalServer] = []

    def start() -> LocalServer:
        server = LocalServer(tmp_path / f"clickhouse-{len(servers)}")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
