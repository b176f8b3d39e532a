#!/usr/bin/env python3
"""A webhook receiver that verifies every request with the `standardwebhooks` package.

Usage: receiver.py SECRET OUT_DIR

Listens on a free port of 127.0.0.1, writes the port to OUT_DIR/port, and appends one
JSON line per request to OUT_DIR/webhooks.jsonl: {"ok": true, "id", "type", "email_id",
"status", "tamper_rejected"} after a successful verification (answering 204), or
{"ok": false, "error"} (answering 400). `tamper_rejected` says that the same request
with one changed body byte does NOT verify. Runs until SIGTERM or until its standard
input closes (so it never outlives the test that started it).
"""
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET, OUT_DIR = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()


def record(entry):
    with LOCK, open(os.path.join(OUT_DIR, "webhooks.jsonl"), "a") as out:
        out.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            payload = Webhook(SECRET).verify(body, headers)
        except (WebhookVerificationError, ValueError) as error:
            record({"ok": False, "error": str(error), "headers": headers})
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        tampered = body.replace(b'"', b"'", 1)
        try:
            Webhook(SECRET).verify(tampered, headers)
            tamper_rejected = False
        except WebhookVerificationError:
            tamper_rejected = True
        data = payload.get("data", {})
        record({
            "ok": True,
            "id": headers.get("webhook-id"),
            "body_id": payload.get("id"),
            "type": payload.get("type"),
            "email_id": data.get("email_id"),
            "status": data.get("status"),
            "tamper_rejected": tamper_rejected,
        })
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


# A parent that ignores SIGTERM (as a ServiceLifecycle process does) passes that on.
signal.signal(signal.SIGTERM, signal.SIG_DFL)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_when_stdin_closes, daemon=True).start()

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(OUT_DIR, "port.tmp"), "w") as port_file:
    port_file.write(str(server.server_address[1]))
os.rename(os.path.join(OUT_DIR, "port.tmp"), os.path.join(OUT_DIR, "port"))
server.serve_forever()
