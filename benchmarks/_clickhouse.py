"""A throwaway clickhouse-server for the benchmarks (or the server at ``CLICKHOUSE_URL``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{dir}/server.log</log><console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <mark_cache_size>268435456</mark_cache_size>
    <timezone>UTC</timezone>
    <users_config>{dir}/users.xml</users_config>
</yandex>
"""
USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"""


@dataclass
class Server:
    url: str
    tcp_port: int | None  # for clickhouse-client, when the server is local


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary() -> list[str]:
    for candidate in (shutil.which("clickhouse-server"), "/usr/sbin/clickhouse-server"):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    single = shutil.which("clickhouse")
    if single:
        return [single, "server"]
    raise SystemExit(
        "clickhouse-server is not installed (run `make clickhouse`) and no CLICKHOUSE_URL"
    )


@contextlib.contextmanager
def server() -> Iterator[Server]:
    """Yield the server at CLICKHOUSE_URL, or start one in a temporary directory."""
    external = os.environ.get("CLICKHOUSE_URL")
    if external:
        yield Server(external.rstrip("/"), None)
        return
    with tempfile.TemporaryDirectory(prefix="bench-clickhouse-") as tmp:
        http_port, tcp_port = _free_port(), _free_port()
        Path(tmp, "config.xml").write_text(
            CONFIG.format(dir=tmp, http_port=http_port, tcp_port=tcp_port)
        )
        Path(tmp, "users.xml").write_text(USERS)
        process = subprocess.Popen(
            [*_binary(), f"--config-file={tmp}/config.xml"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.post(url, content=b"SELECT 1", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("clickhouse-server did not start")
                time.sleep(0.05)
            yield Server(url, tcp_port)
        finally:
            process.terminate()
            process.wait(30)


def run_sql(url: str, sql: str) -> str:
    """Run one statement over HTTP and return the response body."""
    response = httpx.post(url, content=sql.encode(), timeout=600)
    if response.status_code != 200:
        raise RuntimeError(response.text)
    return response.text
