#!/usr/bin/env bash
# Starts the SMTP servers Pigeon's interop tests talk to, on 127.0.0.1 only:
#   - Postfix (Debian's package): STARTTLS with a generated certificate, PIPELINING,
#     every message discarded (default_transport = discard); a recipient
#     reject@example.net is refused with 550.
#   - aiosmtpd (PyPI): AUTH PLAIN, LOGIN and XOAUTH2 over implicit TLS and over STARTTLS.
# Installs nothing (see apt-packages.txt and requirements.txt). Idempotent: run it
# again and it reconfigures Postfix and restarts aiosmtpd. Writes the addresses to
# .ci/interop/env for .ci/run to source before `swift test`.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state="${PIGEON_INTEROP_STATE:-/tmp/pigeon-interop}"
postfix_port="${PIGEON_INTEROP_POSTFIX_PORT:-10025}"
smtps_port="${PIGEON_INTEROP_SMTPS_PORT:-10465}"
starttls_port="${PIGEON_INTEROP_STARTTLS_PORT:-10587}"
user="pigeon"
password="interop-secret"
python="${PYTHON:-python3}"

mkdir -p "$state"
chmod 700 "$state"

# A CA and a server certificate for localhost and 127.0.0.1 (made once).
if [ ! -s "$state/server.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$state/ca.key" -out "$state/ca.pem" -subj "/CN=Pigeon Interop CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$state/server.key" -out "$state/server.csr" -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$state/server.ext"
    openssl x509 -req -in "$state/server.csr" -CA "$state/ca.pem" -CAkey "$state/ca.key" -CAcreateserial \
        -days 30 -extfile "$state/server.ext" -out "$state/server.pem" 2>/dev/null
    chmod 600 "$state"/*.key
fi

# Postfix: loopback only, nothing local, everything discarded.
printf 'reject@example.net 550 5.1.1 Recipient rejected by interop Postfix\n' >"$state/recipient_access"
[ -s /etc/mailname ] || echo localhost >/etc/mailname
postconf -e \
    "inet_interfaces = loopback-only" \
    "inet_protocols = ipv4" \
    "myhostname = postfix.pigeon.test" \
    "mydestination =" \
    "local_recipient_maps =" \
    "mynetworks = 127.0.0.0/8" \
    "relayhost =" \
    "default_transport = discard:interop" \
    "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination" \
    "smtpd_recipient_restrictions = check_recipient_access texthash:$state/recipient_access, permit_mynetworks, reject" \
    "smtpd_tls_chain_files = $state/server.key, $state/server.pem" \
    "smtpd_tls_security_level = may" \
    "smtpd_tls_loglevel = 0" \
    "message_size_limit = 10240000" \
    "smtputf8_enable = yes" \
    "maillog_file = /var/log/postfix.log"
# A second smtpd on our port, unchrooted (no chroot set-up needed in a container).
postconf -M# "$postfix_port/inet" >/dev/null 2>&1 || true
postconf -Me "127.0.0.1:$postfix_port/inet = 127.0.0.1:$postfix_port inet n - n - - smtpd"
postconf -Fe "smtp/inet/chroot = n" 2>/dev/null || true
postconf -Fe "discard/unix/chroot = n" 2>/dev/null || true
newaliases 2>/dev/null || true
if postfix status >/dev/null 2>&1; then
    postfix reload >/dev/null 2>&1
else
    postfix start >/dev/null 2>&1
fi

# aiosmtpd: restart so that a changed script or certificate takes effect.
if [ -s "$state/aiosmtpd.pid" ] && kill -0 "$(cat "$state/aiosmtpd.pid")" 2>/dev/null; then
    kill "$(cat "$state/aiosmtpd.pid")" || true
    sleep 0.5
fi
nohup "$python" "$here/aiosmtpd_server.py" --cert "$state/server.pem" --key "$state/server.key" \
    --smtps-port "$smtps_port" --starttls-port "$starttls_port" --user "$user" --password "$password" \
    >"$state/aiosmtpd.log" 2>&1 &
echo $! >"$state/aiosmtpd.pid"

# Wait until every port answers.
for port in "$postfix_port" "$smtps_port" "$starttls_port"; do
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "interop: nothing listens on 127.0.0.1:$port" >&2; exit 1; }
done

cat >"$here/env" <<ENV
export PIGEON_INTEROP_POSTFIX=127.0.0.1:$postfix_port
export PIGEON_INTEROP_POSTFIX_CA=$state/ca.pem
export PIGEON_INTEROP_AIOSMTPD_SMTPS=127.0.0.1:$smtps_port
export PIGEON_INTEROP_AIOSMTPD_STARTTLS=127.0.0.1:$starttls_port
export PIGEON_INTEROP_AIOSMTPD_CA=$state/ca.pem
export PIGEON_INTEROP_AIOSMTPD_USER=$user
export PIGEON_INTEROP_AIOSMTPD_PASSWORD=$password
ENV
echo "interop: Postfix on 127.0.0.1:$postfix_port, aiosmtpd on 127.0.0.1:$smtps_port (smtps) and 127.0.0.1:$starttls_port (STARTTLS); see $here/env"
