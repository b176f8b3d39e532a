"""aiosmtpd servers for Pigeon's SMTP interop tests (.ci/interop/start-smtp-servers.sh).

Two servers, both requiring AUTH (PLAIN and LOGIN, aiosmtpd's built-in mechanisms,
and XOAUTH2 as Gmail answers it, with the password as the access token):
  - implicit TLS (RFC 8314) on --smtps-port
  - STARTTLS (RFC 3207) required, on --starttls-port
Messages are counted and dropped. A recipient "reject@example.net" is refused with
550 so that per-recipient replies can be checked against a server we did not write.
"""

import argparse
import base64
import json
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, user, token):
        self.count = 0
        self.user = user
        self.token = token

    async def auth_XOAUTH2(self, server, args):
        """SASL XOAUTH2 (Google's and Microsoft's): user=U^Aauth=Bearer T^A^A, base64.

        A wrong token gets Gmail's answer: a 334 carrying a base64 JSON error, then,
        after the client's empty line, 535.
        """
        if len(args) != 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 XOAUTH2 needs an initial response")
        try:
            fields = base64.b64decode(args[1], validate=True).decode().split("\x01")
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode response")
        if len(fields) != 4 or not fields[0].startswith("user=") or not fields[1].startswith("auth=Bearer ") or fields[2:] != ["", ""]:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode response")
        if fields[0][len("user="):] == self.user and fields[1][len("auth=Bearer "):] == self.token:
            return AuthResult(success=True, handled=False)
        error = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
        await server.challenge_auth(json.dumps(error))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() == "reject@example.net":
            return "550 5.1.1 Recipient rejected by interop server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 2.0.0 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)

    return check


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--smtps-port", type=int, required=True)
    parser.add_argument("--starttls-port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    check = authenticator(args.user, args.password)

    implicit = Controller(
        Handler(args.user, args.password),
        hostname="127.0.0.1",
        port=args.smtps_port,
        ssl_context=context,
        server_hostname="localhost",
        authenticator=check,
        auth_required=True,
        # The whole connection is TLS; aiosmtpd only counts STARTTLS for
        # auth_require_tls and would hide AUTH here.
        auth_require_tls=False,
        server_kwargs={"ident": "aiosmtpd interop (smtps)"},
    )
    starttls = Controller(
        Handler(args.user, args.password),
        hostname="127.0.0.1",
        port=args.starttls_port,
        tls_context=context,
        require_starttls=True,
        authenticator=check,
        auth_required=True,
        auth_require_tls=True,
        server_kwargs={"ident": "aiosmtpd interop (starttls)"},
    )
    implicit.start()
    starttls.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    implicit.stop()
    starttls.stop()


if __name__ == "__main__":
    main()
