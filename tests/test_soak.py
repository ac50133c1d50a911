"""A bounded soak: 32 concurrent clients against a real waitress server.

Zero errors, every answer right, and the server's resident memory after the run
within 10% of its size after warm-up. ``SOAK_SECONDS`` sets the measured run
(10 s in the suite; ``make soak`` runs 60 s).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import KNOWN_ROWS, free_port, run_server, serve_args, server_env

CLIENTS = 32
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "10"))
WARMUP_SECONDS = max(3.0, SOAK_SECONDS / 5)
#: However slow the machine, no loop runs past this many requests per client.
MAX_REQUESTS_PER_CLIENT = 20_000

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the server's RSS from /proc/<pid>/status (Linux only)"
)

BATCH = [r for r, _, _ in KNOWN_ROWS] * 10
BATCH_CLASSES = [c for _, c, _ in KNOWN_ROWS] * 10


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def hammer(base: str, seconds: float) -> tuple[int, list[str]]:
    """``CLIENTS`` threads post single rows and batches for ``seconds``; returns (requests, errors)."""
    deadline = time.monotonic() + seconds
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> int:
        done = 0
        with requests.Session() as session:
            while time.monotonic() < deadline and done < MAX_REQUESTS_PER_CLIENT:
                try:
                    if done % 4 == 3:
                        response = session.post(f"{base}/predict", json={"instances": BATCH}, timeout=30)
                        ok = response.status_code == 200 and [
                            p["prediction"] for p in response.json()["predictions"]] == BATCH_CLASSES
                    else:
                        row, cls, _ = KNOWN_ROWS[(index + done) % len(KNOWN_ROWS)]
                        response = session.post(f"{base}/predict", json={"features": row}, timeout=30)
                        ok = response.status_code == 200 and response.json()["prediction"] == cls
                    if not ok:
                        with lock:
                            errors.append(f"{response.status_code}: {response.text[:200]}")
                except requests.RequestException as exc:
                    with lock:
                        errors.append(repr(exc))
                done += 1
        return done

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        total = sum(pool.map(client, range(CLIENTS)))
    return total, errors


def test_soak_has_no_errors_and_stable_memory(iris_artifact, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    # A log line per request would measure the log, not the server.
    env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_LOG_LEVEL="WARNING")
    # waitress: the RSS read is the server process's own (granian serves from a child).
    args = serve_args(port, "--server", "waitress", "--threads", "8")
    with run_server(args, env, port, output=log) as (base, proc):
        warm_requests, warm_errors = hammer(base, WARMUP_SECONDS)
        assert warm_errors == []
        after_warmup = rss_kib(proc.pid)
        requests_done, errors = hammer(base, SOAK_SECONDS)
        after_run = rss_kib(proc.pid)
        assert requests.get(f"{base}/health/ready", timeout=10).status_code == 200
    assert errors == [], f"{len(errors)} errors in {requests_done} requests, first: {errors[:3]}"
    assert requests_done >= CLIENTS  # every client got answers
    assert after_run <= after_warmup * 1.10, (
        f"RSS grew from {after_warmup} KiB after warm-up to {after_run} KiB after {requests_done} requests"
    )
    faults = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line or "ERROR" in line]
    assert faults == []
