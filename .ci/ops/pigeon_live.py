"""Runs a real `pigeon serve` for the checks in .ci/checks: a temporary database, a free
port, an SMTP sink (aiosmtpd, in this process) and an admin key. Loopback only."""

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
KEY = "ops-check-admin-key-0123456789abcdef"


class Sink:
    """Accepts every message; counts them."""

    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 2.0.0 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pigeon_binary() -> str:
    explicit = os.environ.get("PIGEON_BIN")
    if explicit:
        return explicit
    path = subprocess.run(
        ["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    binary = Path(path) / "pigeon"
    if not binary.exists():
        subprocess.run(["swift", "build", "--product", "pigeon"], cwd=ROOT, check=True)
    return str(binary)


@contextlib.contextmanager
def live_pigeon(extra_env=None):
    """Yields (base_url, key, sink, log_path)."""
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    with tempfile.TemporaryDirectory(prefix="pigeon-ops-") as directory:
        port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "PIGEON_LISTEN": f"127.0.0.1:{port}",
                "PIGEON_DATABASE": f"{directory}/pigeon.sqlite",
                "PIGEON_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?tls=none",
                "PIGEON_API_KEYS": KEY,
                "PIGEON_WEBHOOK_ALLOW_PRIVATE": "true",
                "PIGEON_RETRY_SCHEDULE": "1s",
                "PIGEON_LOG_LEVEL": "warning",
            }
        )
        env.update(extra_env or {})
        log_path = Path(directory) / "pigeon.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([pigeon_binary(), "serve"], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("pigeon did not start:\n" + log_path.read_text(errors="replace"))
                time.sleep(0.1)
            yield base, KEY, sink, log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            controller.stop()
