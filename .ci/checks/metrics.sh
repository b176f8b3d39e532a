#!/usr/bin/env bash
# GET /metrics parses with prometheus_client and its counters move as emails are sent.
set -euo pipefail
cd "$(dirname "$0")/../ops"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
exec python3 metrics_check.py
