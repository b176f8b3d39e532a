#!/usr/bin/env bash
# Issue 5's crash test: SIGKILL and SIGTERM while 1,000 emails are accepted and delivered.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build --product pigeon >/dev/null
python3 .ci/crash/crash_test.py "$(swift build --show-bin-path)/pigeon" --emails 1000 --signal both
