#!/usr/bin/env bash
# GET /metrics parses with prometheus_client and its counters move as emails are sent.
set -euo pipefail
exec "$(dirname "$0")/../ops/run-check.sh" metrics_check.py
