#!/usr/bin/env bash
# Runs a command in a new network namespace that has only the loopback interface, so
# nothing it starts can send a packet (a DNS query for a fuzzed webhook host name, say)
# beyond 127.0.0.0/8 and ::1. Needs root (CI runs as root) or unprivileged user namespaces.
set -euo pipefail
if [ "${PIGEON_LOOPBACK_NETNS:-}" != "1" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        exec unshare --net -- env PIGEON_LOOPBACK_NETNS=1 "$0" "$@"
    fi
    exec unshare --map-root-user --net -- env PIGEON_LOOPBACK_NETNS=1 "$0" "$@"
fi
ip link set lo up
exec "$@"
