#!/usr/bin/env python3
"""Pigeon vs Postfix, side by side in one run (issue 5's benchmark).

Both deliver to Postfix's `smtp-sink` on 127.0.0.1. For Pigeon: 10,000 emails of
2 KB are POSTed by h2load over 64 HTTP/1.1 connections (synchronous=FULL, the
default). For Postfix: smtp-source sends the same number of 2 KB messages over 20
sessions (`-s 20`) into Postfix's smtpd, which queues them (fsync) and relays them
to its own smtp-sink. Reported:

* durable ingest: accepted per second (202s for Pigeon, 250s after DATA for Postfix);
* end to end: first request to last message counted at the sink;
* p99 POST latency at half of Pigeon's maximum rate (h2load --rps, per-request log);
* peak RSS of the pigeon process (VmHWM);
and the ratios. Machines here are shared and noisy: compare within one run.

Usage: outbox_bench.py PIGEON_BINARY [--emails N]
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

KEY = "bench-key-0123456789abcdef0123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """smtp-sink with a running counter (`-c`), read from its output file."""

    def __init__(self, workdir, name):
        self.port = free_port()
        self.out = os.path.join(workdir, f"{name}.out")
        self.process = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "1000"],
            stdout=open(self.out, "wb"), stderr=subprocess.STDOUT)
        time.sleep(0.3)

    def count(self):
        with open(self.out, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 200))
            tail = f.read().decode(errors="replace")
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def wait_for(self, n, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.count() >= n:
                return time.time()
            time.sleep(0.01)
        raise SystemExit(f"sink saw only {self.count()} of {n}")

    def stop(self):
        self.process.terminate()
        self.process.wait()


def body_2kb():
    return json.dumps({
        "from": "Bench <bench@acme.example>", "to": ["user@example.com"],
        "subject": "Benchmark message", "text": ("lorem ipsum dolor sit amet " * 80)[:2000],
    })


def h2load(url, n, connections, body_file, extra=()):
    command = ["h2load", "--h1", "-n", str(n), "-c", str(connections), "-t", "1",
               "-d", body_file, "-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json",
               *extra, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    if not codes or int(codes.group(1)) != n:
        raise SystemExit("h2load: not every request got a 2xx:\n" + output)
    seconds = float(re.search(r"finished in ([\d.]+)s", output).group(1))
    return seconds, output


def run_pigeon(binary, n, workdir):
    sink = Sink(workdir, "pigeon-sink")
    port = free_port()
    database = os.path.join(workdir, "pigeon.sqlite")
    env = dict(os.environ, PIGEON_LISTEN=f"127.0.0.1:{port}", PIGEON_DATABASE=database,
               PIGEON_SMTP_URL=f"smtp://127.0.0.1:{sink.port}?tls=none", PIGEON_API_KEYS=KEY,
               PIGEON_SMTP_MAX_CONNECTIONS="20", PIGEON_LOG_LEVEL="error")
    process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(workdir, "pigeon.log"), "wb"))
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    body_file = os.path.join(workdir, "body.json")
    with open(body_file, "w") as f:
        f.write(body_2kb())
    url = f"http://127.0.0.1:{port}/v1/emails"

    start = time.time()
    ingest_seconds, _ = h2load(url, n, 64, body_file)
    last = sink.wait_for(n)
    e2e_seconds = last - start
    ingest_rate = n / ingest_seconds

    # p99 latency at half the maximum rate, from h2load's per-request log.
    half = max(1, int(ingest_rate / 2))
    per_client = max(1, half // 64)
    log_file = os.path.join(workdir, "latency.log")
    paced_n = min(n, max(2000, half * 5))
    h2load(url, paced_n, 64, body_file, ["--rps", str(per_client), "--log-file", log_file])
    latencies = []
    with open(log_file) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                latencies.append(int(parts[2]) / 1000.0)  # microseconds -> ms
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    sink.wait_for(n + paced_n)

    with open(f"/proc/{process.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    sink.stop()
    return {"ingest_rate": ingest_rate, "e2e_seconds": e2e_seconds, "e2e_rate": n / e2e_seconds,
            "p50_ms": p50, "p99_ms": p99, "paced_rps": per_client * 64, "peak_rss_mb": rss}


def run_postfix(n, workdir):
    """Postfix's own path for the same mail: smtp-source -> smtpd -> queue (fsync) -> smtp -> sink.

    Uses the machine's Postfix instance with one extra smtpd listener whose
    `content_filter` sends everything it accepts to this run's smtp-sink; the listener
    is removed afterwards. (The main instance must be able to start: `postfix start`.)
    """
    sink = Sink(workdir, "postfix-sink")
    smtpd_port = free_port()
    service = f"127.0.0.1:{smtpd_port}/inet"
    definition = (f"127.0.0.1:{smtpd_port} inet n - n - - smtpd"
                  f" -o content_filter=smtp:[127.0.0.1]:{sink.port}"
                  " -o smtpd_recipient_restrictions=permit_mynetworks,reject"
                  " -o smtpd_relay_restrictions=permit_mynetworks,reject"
                  " -o smtpd_tls_security_level=none")
    if subprocess.run(["postfix", "status"], capture_output=True).returncode != 0:
        subprocess.run(["postfix", "start"], check=True, capture_output=True)
    subprocess.run(["postconf", "-M", f"{service}={definition}"], check=True)
    subprocess.run(["postconf", "-e", "smtp_destination_concurrency_limit = 20",
                    "default_destination_concurrency_limit = 20"], check=True)
    subprocess.run(["postfix", "reload"], check=True, capture_output=True)
    time.sleep(1.5)
    try:
        start = time.time()
        subprocess.run(["smtp-source", "-s", "20", "-m", str(n), "-l", "2048", "-f", "bench@acme.example",
                        "-t", "user@example.com", f"127.0.0.1:{smtpd_port}"], check=True)
        ingest_seconds = time.time() - start
        last = sink.wait_for(n)
        e2e_seconds = last - start
    finally:
        subprocess.run(["postconf", "-MX", service], check=False)
        subprocess.run(["postfix", "reload"], check=False, capture_output=True)
        sink.stop()
    return {"ingest_rate": n / ingest_seconds, "e2e_seconds": e2e_seconds, "e2e_rate": n / e2e_seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--emails", type=int, default=10000)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pigeon-bench-")
    os.chmod(workdir, 0o755)
    pigeon = run_pigeon(args.binary, args.emails, workdir)
    postfix = run_postfix(args.emails, workdir)
    print()
    print(f"{args.emails} emails of 2 KB, both into smtp-sink on 127.0.0.1")
    print(f"| measure | Pigeon | Postfix | ratio |")
    print(f"|---|---|---|---|")
    print(f"| durable ingest (accepted/s) | {pigeon['ingest_rate']:.0f} | {postfix['ingest_rate']:.0f} | {pigeon['ingest_rate'] / postfix['ingest_rate']:.2f}x |")
    print(f"| end to end (emails/s) | {pigeon['e2e_rate']:.0f} | {postfix['e2e_rate']:.0f} | {pigeon['e2e_rate'] / postfix['e2e_rate']:.2f}x |")
    print(f"| end to end (s) | {pigeon['e2e_seconds']:.2f} | {postfix['e2e_seconds']:.2f} | |")
    print(f"| POST latency at {pigeon['paced_rps']} req/s (half of max): p50 / p99 | {pigeon['p50_ms']:.1f} ms / {pigeon['p99_ms']:.1f} ms | | |")
    print(f"| peak RSS of pigeon | {pigeon['peak_rss_mb']:.0f} MB | | |")


if __name__ == "__main__":
    sys.exit(main())
