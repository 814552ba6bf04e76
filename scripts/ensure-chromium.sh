#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the dashboard's browser test (tests/ops), which
# drives /usr/bin/chromium with Playwright. Playwright's own browser downloads are not used.
# Installs the distribution package when it is missing.
set -euo pipefail

CHROMIUM="${DUCTWORK_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
if command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: installing chromium with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
else
    echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available;" >&2
    echo "install Chromium, or point DUCTWORK_CHROMIUM at a Chromium binary" >&2
    exit 1
fi
test -x "$CHROMIUM"
