#!/usr/bin/env bash
# openapi.yaml is what the server does: schemathesis (PyPI) against a live `pigeon serve`.
# The server and schemathesis run in a network namespace with only loopback: the
# fuzzer makes webhook endpoints with any host name, and their DNS lookups must not
# leave the machine.
set -euo pipefail
exec "$(dirname "$0")/../ops/run-check.sh" schemathesis_run.py
