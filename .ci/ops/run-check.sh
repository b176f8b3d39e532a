#!/usr/bin/env bash
# Runs one of the Python checks in this folder against a `pigeon` binary (PIGEON_BIN,
# else the debug build, built if missing), with its PyPI requirements installed, in a
# network namespace that has only loopback (in-loopback-netns.sh).
#
#   run-check.sh metrics_check.py
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
PIGEON_BIN="${PIGEON_BIN:-$(cd ../.. && swift build --show-bin-path)/pigeon}"
export PIGEON_BIN
[ -x "$PIGEON_BIN" ] || (cd ../.. && swift build --product pigeon)
exec ./in-loopback-netns.sh python3 "$@"
