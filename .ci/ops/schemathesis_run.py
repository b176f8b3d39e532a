"""Schemathesis against a live `pigeon serve` with openapi.yaml: every operation,
examples, coverage (boundary and negative values) and fuzzing (positive and negative),
every check: no 5xx, every status, header, content type and body as the spec says."""

import subprocess
import sys
import tempfile
from pathlib import Path

from pigeon_live import ROOT, live_pigeon

HERE = Path(__file__).resolve().parent

MAX_EXAMPLES = "25"

with live_pigeon() as (base, key, sink, log_path):
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"),
        "run", str(ROOT / "openapi.yaml"),
        "--url", base,
        "--header", f"Authorization: Bearer {key}",
        "--checks", "all",
        "--mode", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", MAX_EXAMPLES,
        "--request-timeout", "15",
        "--max-time", "240",
        "--generation-deterministic",
        # Valid UTF-8 only (JSON with lone surrogates is refused as 400, correctly), and no
        # NUL bytes in header values, which HTTP does not allow.
        "--generation-codec", "utf-8",
        "--generation-allow-x00", "false",
        "--continue-on-failure",
        "--warnings", "off",
    ]
    # Schemathesis keeps a cache folder in its working directory: not in the repository.
    with tempfile.TemporaryDirectory(prefix="pigeon-schemathesis-") as work:
        result = subprocess.run(command, cwd=work)
    if result.returncode != 0:
        print("--- pigeon log (errors) ---")
        lines = log_path.read_text(errors="replace").splitlines()
        print("\n".join(line for line in lines if " error " in line or " critical " in line)[-5000:])
    sys.exit(result.returncode)
