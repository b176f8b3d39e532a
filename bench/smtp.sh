#!/usr/bin/env bash
# SMTP client benchmark (issue 3): 10,000 messages of 2 KB into Postfix's smtp-sink,
# over 1 and over 20 connections, Pigeon's SMTPClient (smtp-bench) next to Postfix's
# own smtp-source, in the same run against the same sink. Both reuse connections
# (smtp-source -d); smtp-source does not pipeline, SMTPClient does when offered.
#
#   bench/smtp.sh                      # builds smtp-bench in release mode first
#   SMTP_BENCH=path/to/smtp-bench bench/smtp.sh
#   MESSAGES=10000 SIZE=2048 ROUNDS=3 PORT=2526 bench/smtp.sh
#
# Needs the postfix package (smtp-sink, smtp-source). Loopback only. Prints the best
# of ROUNDS runs of each (the machine's other load only ever slows a run down).
set -euo pipefail

cd "$(dirname "$0")/.."
messages="${MESSAGES:-10000}"
size="${SIZE:-2048}"
rounds="${ROUNDS:-3}"
port="${PORT:-2526}"
sink_user="${SINK_USER:-nobody}"

for tool in smtp-sink smtp-source; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (apt-get install postfix)" >&2; exit 1; }
done

bench="${SMTP_BENCH:-}"
if [ -z "$bench" ]; then
    swift build -c release --product smtp-bench >&2
    bench="$(swift build -c release --show-bin-path)/smtp-bench"
fi

sink_args=()
[ "$(id -u)" = 0 ] && sink_args=(-u "$sink_user")
smtp-sink "${sink_args[@]}" "127.0.0.1:$port" 1024 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# smtp-source -l counts the payload only; subtract its few header bytes so both send ~SIZE bytes.
payload=$((size - 120))

now() { date +%s.%N; }
best_rate() { # command...
    local best=0 start end rate
    for _ in $(seq 1 "$rounds"); do
        start=$(now)
        "$@" >/dev/null
        end=$(now)
        rate=$(awk -v m="$messages" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", m / (e - s) }')
        [ "$rate" -gt "$best" ] && best=$rate
    done
    echo "$best"
}

printf '%-12s %14s %14s %8s\n' "connections" "smtp-source/s" "SMTPClient/s" "ratio"
for connections in 1 20; do
    source_rate=$(best_rate smtp-source -d -s "$connections" -m "$messages" -l "$payload" \
        -f bench@example.com -t sink@example.com "127.0.0.1:$port")
    client_rate=$(best_rate "$bench" --port "$port" --messages "$messages" --connections "$connections" --size "$size")
    ratio=$(awk -v a="$client_rate" -v b="$source_rate" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    printf '%-12s %14s %14s %8s\n' "$connections" "$source_rate" "$client_rate" "$ratio"
done
