#!/usr/bin/env bash
# openapi.yaml is what the server does: schemathesis (PyPI) against a live `pigeon serve`.
# The server and schemathesis run in a network namespace with only loopback: the
# fuzzer makes webhook endpoints with any host name, and their DNS lookups must not
# leave the machine.
set -euo pipefail
cd "$(dirname "$0")/../ops"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
PIGEON_BIN="${PIGEON_BIN:-$(cd ../.. && swift build --show-bin-path)/pigeon}"
export PIGEON_BIN
[ -x "$PIGEON_BIN" ] || (cd ../.. && swift build --product pigeon)
exec ./in-loopback-netns.sh python3 schemathesis_run.py
