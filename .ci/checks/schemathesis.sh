#!/usr/bin/env bash
# openapi.yaml is what the server does: schemathesis (PyPI) against a live `pigeon serve`.
set -euo pipefail
cd "$(dirname "$0")/../ops"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
exec python3 schemathesis_run.py
