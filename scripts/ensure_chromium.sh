#!/usr/bin/env bash
# Make sure a headless-capable Chromium is on PATH for the browser test of the case reports
# (tests/serving/test_report_browser.py): installs Debian's `chromium` package if missing.
# Idempotent: does nothing (and touches no network) when `chromium` is already installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "ensure_chromium: $*" >&2
    echo "ensure_chromium: install Debian's 'chromium' package (apt-get install chromium)" \
        "so that a 'chromium' binary is on PATH; the report browser test needs it." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "no 'chromium' on PATH and no apt-get to install it"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "no 'chromium' on PATH; installing it needs root (or sudo)"
    SUDO=(sudo -n)
fi

echo "ensure_chromium: installing Debian's chromium package (one-off)..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get update failed"
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "apt-get install chromium failed"
fi
command -v chromium >/dev/null 2>&1 || fail "the chromium package installed no 'chromium' on PATH"
echo "ensure_chromium: $(chromium --version 2>/dev/null || echo chromium installed)" >&2
