"""The bench's own keep-alive load generator, used when wrk is not installed.

Run as ``python -m bench.loadgen`` in its own process so its GIL is not the
server's; prints one JSON line in the same shape as bench/predict.lua.
Threads with persistent ``http.client`` connections, a fixed duration and a
hard cap on requests keep every run bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_REQUESTS = 5_000_000
CONNECT_TIMEOUT_S = 30.0


@dataclass
class _Tally:
    """One worker thread's counts; only that thread writes it."""

    latencies_us: list[float] = field(default_factory=list)
    non2xx: int = 0
    socket_errors: int = 0


def _worker(
    host: str, port: int, path: str, body: bytes, stop_at: float, budget: int, tally: _Tally,
    extra_headers: dict[str, str],
) -> None:
    headers = {"Content-Type": "application/json", "Connection": "keep-alive", **extra_headers}
    conn: http.client.HTTPConnection | None = None
    for _ in range(budget):
        if time.monotonic() >= stop_at:
            break
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT_S)
        start = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            tally.socket_errors += 1
            conn.close()
            conn = None
            continue
        tally.latencies_us.append((time.perf_counter() - start) * 1e6)
        if not 200 <= response.status < 300:
            tally.non2xx += 1
        if response.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def run(
    host: str, port: int, path: str, body: bytes, connections: int, duration_s: float,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Load ``path`` for ``duration_s`` seconds and summarise like predict.lua."""
    tallies = [_Tally() for _ in range(connections)]
    stop_at = time.monotonic() + duration_s
    budget = MAX_REQUESTS // connections
    threads = [
        threading.Thread(target=_worker, args=(host, port, path, body, stop_at, budget, t, extra_headers or {}),
                         daemon=True)
        for t in tallies
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + CONNECT_TIMEOUT_S + 5.0)
    elapsed = time.perf_counter() - start
    latencies = sorted(x for t in tallies for x in t.latencies_us)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "connect": 0,
        "read": sum(t.socket_errors for t in tallies),
        "write": 0,
        "timeout": 0,
        "status": 0,
        "non2xx": sum(t.non2xx for t in tallies),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": latencies[-1] if latencies else 0.0,
        "mean_us": sum(latencies) / len(latencies) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--headers", default="{}", help="extra request headers, a JSON object")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("the bench only sends load to 127.0.0.1")
    summary = run(
        args.host, args.port, args.path, args.body_file.read_bytes(), args.connections, args.duration,
        json.loads(args.headers),
    )
    print("BENCH_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
