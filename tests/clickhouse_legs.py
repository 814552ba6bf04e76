"""The ClickHouse fixtures of the suite (a plugin that ``tests/conftest.py`` loads for every test
directory: the connector tests and the fault suite use them).

ClickHouse runs on two legs, and every test that uses the ``clickhouse`` or ``clickhouse_url``
fixture runs on both (ids ``[server-18.16]`` and ``[chdb-26.9]``):

- **server**: one real ``clickhouse-server`` (Debian's 18.16) per session, started the first time a
  test asks for it, from a config file in a temporary directory with free loopback ports, and
  stopped at the end. Set ``CLICKHOUSE_URL`` (``http://user:password@host:8123``) to run this leg
  against an existing server instead.
- **chdb**: the modern engine (chdb-core, ClickHouse 26.x) behind ``tests/chdb_front.py``, which
  speaks ClickHouse's HTTP interface: one subprocess per session on a temporary data directory.

A missing server or chdb-core is a test failure, never a skip. ``@pytest.mark.clickhouse_legs(
"chdb")`` runs a test on the named legs only (for what only one of the engines has).

Tests that need a server process of their own, to kill and restart it (``local_clickhouse``), run
on the server leg only: the front cannot be restarted on the same port. Their faults have an
equivalent on the chdb leg that needs no restart: the front's drop hooks (``x_front_drop=body``
resets the connection while an insert's body is sent, ``x_front_drop=response`` commits the insert
and closes the connection without answering), which the exactly-once tests use.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ductwork import ClickHouseConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chdb_front import start_front, stop_front

# The legs every ClickHouse test runs on (see the module docstring).
LEGS = ("server", "chdb")

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "clickhouse_legs(*legs): run a ClickHouse test on these legs only ('server', 'chdb')",
    )


@functools.cache
def leg_label(leg: str) -> str:
    """The id of a leg in test names: the engine and its major.minor version."""
    if leg == "chdb":
        try:
            version = importlib.metadata.version("chdb-core")
        except importlib.metadata.PackageNotFoundError:
            return "chdb"
        return "chdb-" + ".".join(version.split(".")[:2])
    text = ""
    if os.environ.get("CLICKHOUSE_URL"):
        config = ClickHouseConfig(url=os.environ["CLICKHOUSE_URL"])
        try:
            text = httpx.post(
                config.url, content=b"SELECT version()", headers=_auth(config), timeout=5.0
            ).text
        except httpx.HTTPError:
            pass
    else:
        client = shutil.which("clickhouse-client")
        single = shutil.which("clickhouse")
        args = [client] if client else [single, "client"] if single else []
        try:
            if args:
                text = subprocess.run(
                    [*args, "--version"], capture_output=True, text=True, timeout=10
                ).stdout
        except (OSError, subprocess.TimeoutExpired):
            pass
    match = re.search(r"(\d+)\.(\d+)", text)
    return f"server-{match.group(1)}.{match.group(2)}" if match else "server"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses ``clickhouse_leg`` (through ``clickhouse`` or ``clickhouse_url``)
    on each leg, or on those its ``clickhouse_legs`` marker names."""
    if "clickhouse_leg" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("clickhouse_legs")
    legs = marker.args if marker else LEGS
    unknown = set(legs) - set(LEGS)
    if unknown:
        raise pytest.UsageError(f"unknown ClickHouse leg(s) {sorted(unknown)}: use {LEGS}")
    metafunc.parametrize(
        "clickhouse_leg", legs, indirect=True, scope="session", ids=[leg_label(leg) for leg in legs]
    )


@pytest.fixture(scope="session")
def clickhouse_leg(request: pytest.FixtureRequest) -> str:
    """The leg a ClickHouse test runs on: ``"server"`` or ``"chdb"``."""
    leg: str = request.param
    return leg


@pytest.fixture(scope="session")
def clickhouse_url(clickhouse_leg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the session's ClickHouse on this leg: the server (started here unless
    CLICKHOUSE_URL is set), or the chdb front (always started here)."""
    if clickhouse_leg == "chdb":
        try:
            process, url = start_front(str(tmp_path_factory.mktemp("chdb")))
        except RuntimeError as exc:
            pytest.fail(f"the chdb leg cannot start: {exc} (run `make test`, which installs it)")
        try:
            yield url
        finally:
            stop_front(process)
        return
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


# --------------------------------------------------------------------------- helpers


async def sql(config: ClickHouseConfig, query: str) -> str:
    """Run a statement over plain HTTP (independently of the connector) and return the body."""
    headers = {"X-ClickHouse-User": config.user}
    if config.password.get_secret_value():
        headers["X-ClickHouse-Key"] = config.password.get_secret_value()
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            config.url,
            params={"database": config.database, "output_format_json_quote_64bit_integers": 0},
            content=query.encode(),
            headers=headers,
        )
    assert response.status_code == 200, response.text
    return response.text


async def count(config: ClickHouseConfig, table: str) -> int:
    return int(await sql(config, f"SELECT count() FROM {table}"))
