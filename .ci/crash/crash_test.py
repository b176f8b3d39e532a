#!/usr/bin/env python3
"""Crash test for Pigeon's outbox (issue 5).

While emails are being accepted over HTTP and delivered to an SMTP sink (aiosmtpd,
in this process), the `pigeon serve` process is killed -- with SIGKILL, then in a
second run with SIGTERM -- and started again on the same database. Then:

* every email that got a 202 is delivered at least once;
* SIGKILL: duplicates happen only for emails that were `sending` at the kill
  (read from the database right after the kill); the count is printed;
* SIGTERM: zero duplicates, and zero emails left `sending` when the process exits;
* `PRAGMA integrity_check` is ok;
* every POST carries an Idempotency-Key, and a POST whose answer was cut off by the
  kill (no status, or a status line without its body) is retried with the same key:
  the database ends with exactly one email per key, never two.

Usage: crash_test.py PIGEON_BINARY [--emails N] [--signal KILL|TERM|both]
Traffic stays on 127.0.0.1.
"""
import argparse
import collections
import email
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

from aiosmtpd.controller import Controller

KEY = "crash-test-key-0123456789abcdef"


class Sink:
    """Counts deliveries per Message-ID; answers slowly enough that kills land mid-flight."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_message_id = collections.Counter()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        with self.lock:
            self.by_message_id[message["Message-ID"]] += 1
        return "250 2.0.0 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pigeon:
    def __init__(self, binary, database, smtp_port, http_port, log):
        self.env = dict(os.environ)
        self.env.update({
            "PIGEON_LISTEN": f"127.0.0.1:{http_port}",
            "PIGEON_DATABASE": database,
            "PIGEON_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?tls=none",
            "PIGEON_API_KEYS": KEY,
            "PIGEON_RETRY_SCHEDULE": "1s",
            "PIGEON_LOG_LEVEL": "warning",
        })
        self.binary = binary
        self.http_port = http_port
        self.log = log
        self.process = None

    def start(self):
        self.process = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                status, _ = request(self.http_port, "GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("pigeon did not start")

    def signal(self, signum):
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)


def request(port, method, path, body=None, idempotency_key=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {KEY}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, (json.loads(data) if data else None)


def run(binary, count, signum):
    name = signal.Signals(signum).name
    print(f"--- crash test with {name}: {count} emails", flush=True)
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    directory = tempfile.mkdtemp(prefix="pigeon-crash-")
    database = os.path.join(directory, "outbox.sqlite")
    log = open(os.path.join(directory, "pigeon.log"), "ab")
    pigeon = Pigeon(binary, database, smtp_port, free_port(), log)
    pigeon.start()

    accepted = []
    accepted_lock = threading.Lock()
    next_index = [0]
    down = threading.Event()

    def sender():
        while True:
            with accepted_lock:
                if next_index[0] >= count:
                    return
                index = next_index[0]
                next_index[0] += 1
            body = {"from": "crash@acme.example", "to": [f"user{index}@example.com"],
                    "subject": f"crash {index}", "text": f"email {index}\n" + "x" * 2000}
            while True:
                try:
                    status, answer = request(pigeon.http_port, "POST", "/v1/emails", body,
                                             idempotency_key=f"crash-{name}-{index}")
                except (OSError, http.client.HTTPException, ValueError):
                    # Refused, reset, or an answer cut off by the kill: the email may or may
                    # not be stored. The same Idempotency-Key makes the retry safe.
                    status, answer = None, None
                if status == 202:
                    with accepted_lock:
                        accepted.append(answer["id"])
                    break
                # Not accepted (server down or stopping): nothing was promised; try again.
                time.sleep(0.05)

    threads = [threading.Thread(target=sender) for _ in range(16)]
    for thread in threads:
        thread.start()
    while True:
        with accepted_lock:
            if len(accepted) >= count // 3:
                break
        time.sleep(0.01)

    code = pigeon.signal(signum)
    print(f"pigeon exited with {code} after {len(accepted)} accepted", flush=True)
    db = sqlite3.connect(database)
    sending_at_stop = {row[0] for row in db.execute("SELECT id FROM email WHERE status = 'sending'")}
    ids_in_db = {row[0] for row in db.execute("SELECT id FROM email")}
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    print(f"left sending at the stop: {len(sending_at_stop)}; integrity_check: {integrity}", flush=True)
    with accepted_lock:
        missing = [i for i in accepted if i not in ids_in_db]
    assert not missing, f"{len(missing)} emails that got a 202 are not in the database"
    assert integrity == "ok", integrity
    if signum == signal.SIGTERM:
        assert code == 0, f"SIGTERM exit code {code}"
        assert not sending_at_stop, f"{len(sending_at_stop)} left sending after SIGTERM"

    pigeon.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == count
    assert len(set(accepted)) == count, "two keys answered with the same id"
    db = sqlite3.connect(database)
    stored = db.execute("SELECT COUNT(*) FROM email").fetchone()[0]
    db.close()
    assert stored == count, f"{stored} emails stored for {count} idempotency keys"

    # Wait for every accepted email to be sent.
    deadline = time.time() + 180
    pending = set(accepted)
    message_ids = {}
    while pending and time.time() < deadline:
        for email_id in list(pending):
            status, answer = request(pigeon.http_port, "GET", f"/v1/emails/{email_id}")
            if status == 200 and answer["status"] == "sent":
                pending.discard(email_id)
                message_ids[email_id] = answer["message_id"]
        if pending:
            time.sleep(0.5)
    assert not pending, f"{len(pending)} accepted emails were never sent"
    code = pigeon.signal(signal.SIGTERM)
    assert code == 0, f"final SIGTERM exit code {code}"
    controller.stop()

    db = sqlite3.connect(database)
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    left = db.execute("SELECT COUNT(*) FROM email WHERE status = 'sending'").fetchone()[0]
    db.close()
    assert integrity == "ok", integrity
    assert left == 0, f"{left} left sending after the final SIGTERM"

    undelivered = [i for i, m in message_ids.items() if sink.by_message_id[m] < 1]
    duplicated = [i for i, m in message_ids.items() if sink.by_message_id[m] > 1]
    print(f"{name}: {len(accepted)} accepted, {len(accepted) - len(undelivered)} delivered, "
          f"{len(duplicated)} duplicates (in flight at the stop: {len(sending_at_stop)})", flush=True)
    assert not undelivered, f"{len(undelivered)} accepted emails never reached the server"
    unexplained = [i for i in duplicated if i not in sending_at_stop]
    assert not unexplained, f"{len(unexplained)} duplicates of emails that were not in flight"
    if signum == signal.SIGTERM:
        assert not duplicated, f"{len(duplicated)} duplicates after SIGTERM"
    return len(duplicated)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--signal", choices=["KILL", "TERM", "both"], default="both")
    args = parser.parse_args()
    signals = {"KILL": [signal.SIGKILL], "TERM": [signal.SIGTERM], "both": [signal.SIGKILL, signal.SIGTERM]}[args.signal]
    for signum in signals:
        run(args.binary, args.emails, signum)
    print("crash test: ok")


if __name__ == "__main__":
    sys.exit(main())
