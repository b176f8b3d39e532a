#!/usr/bin/env bash
# `pigeon check`, the real binary, against aiosmtpd (PyPI): STARTTLS and AUTH succeed and
# the capabilities are printed (exit 0); a wrong password, and tls=required against a
# relay without STARTTLS, exit 1 with one line naming the cause. No mail is sent.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck disable=SC1091
source .ci/interop/env
bin="${PIGEON_BIN:-$(swift build --show-bin-path)/pigeon}"
[ -x "$bin" ] || swift build --product pigeon
port="${PIGEON_INTEROP_AIOSMTPD_STARTTLS##*:}"
user="$PIGEON_INTEROP_AIOSMTPD_USER"
export PIGEON_SMTP_CA_FILE="$PIGEON_INTEROP_AIOSMTPD_CA"
fail() { echo "pigeon-check: $*" >&2; exit 1; }

out=$(PIGEON_SMTP_URL="smtp://$user:$PIGEON_INTEROP_AIOSMTPD_PASSWORD@localhost:$port" "$bin" check) || fail "expected success: $out"
echo "$out"
grep -q '^tls: TLS 1\.[23] (STARTTLS)$' <<<"$out" || fail "no TLS line"
grep -q '^capabilities: .*AUTH' <<<"$out" || fail "no capabilities"
grep -q "^auth: succeeded as $user$" <<<"$out" || fail "no AUTH line"

if out=$(PIGEON_SMTP_URL="smtp://$user:wrong-password@localhost:$port" "$bin" check 2>&1); then fail "a wrong password passed"; fi
echo "$out"
[ "$(wc -l <<<"$out")" -eq 1 ] || fail "not one line: $out"
grep -q 'authentication failed' <<<"$out" || fail "cause not named: $out"
if grep -q 'wrong-password' <<<"$out"; then fail "the password was printed"; fi

plain=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m aiosmtpd -n -l "127.0.0.1:$plain" -c aiosmtpd.handlers.Sink &
sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$plain") 2>/dev/null && break; sleep 0.1; done
if out=$(PIGEON_SMTP_CA_FILE='' PIGEON_SMTP_URL="smtp://$user:secret@127.0.0.1:$plain?tls=required" "$bin" check 2>&1); then
    fail "tls=required passed without STARTTLS"
fi
echo "$out"
grep -q 'TLS failed' <<<"$out" && grep -q 'STARTTLS' <<<"$out" || fail "cause not named: $out"
echo "pigeon check: ok"
