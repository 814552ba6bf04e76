#!/usr/bin/env bash
# Make sure a clickhouse-server binary is available for the test suite (which starts its own
# server on a free loopback port). Installs the distribution package when it is missing.
set -euo pipefail

if [ -n "${CLICKHOUSE_URL:-}" ]; then
    echo "ensure-clickhouse: using the server at CLICKHOUSE_URL"
    exit 0
fi
if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/bin/clickhouse ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
if command -v apt-get >/dev/null 2>&1; then
    echo "ensure-clickhouse: installing clickhouse-server with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server >/dev/null
else
    echo "ensure-clickhouse: clickhouse-server is missing and apt-get is not available;" >&2
    echo "install ClickHouse or set CLICKHOUSE_URL to an existing server" >&2
    exit 1
fi
command -v clickhouse-server >/dev/null 2>&1
