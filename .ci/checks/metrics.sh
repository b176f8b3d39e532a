#!/usr/bin/env bash
# GET /metrics parses with prometheus_client and its counters move as emails are sent.
set -euo pipefail
cd "$(dirname "$0")/../ops"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
PIGEON_BIN="${PIGEON_BIN:-$(cd ../.. && swift build --show-bin-path)/pigeon}"
export PIGEON_BIN
[ -x "$PIGEON_BIN" ] || (cd ../.. && swift build --product pigeon)
exec ./in-loopback-netns.sh python3 metrics_check.py
