#!/usr/bin/env bash
# Issue 5's benchmark: Pigeon's durable ingest and end-to-end rate next to Postfix's,
# in one run, both into smtp-sink. Needs postfix and nghttp2-client (h2load) from
# Debian's packages; run as root (Postfix's private instance). Then the outbox
# scaling check (claim and GET with 1,000,000 finished emails vs an empty database).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product pigeon --product outbox-bench >/dev/null
bin="$(swift build -c release --show-bin-path)"
python3 bench/outbox_bench.py "$bin/pigeon" --emails "${EMAILS:-10000}"
"$bin/outbox-bench"
