"""The bench's gRPC load generator: V2 ``ModelInfer`` calls with a fixed, pre-serialised request.

``python -m bench.grpcload --port P --body-file F --concurrency 16 --processes 2
--duration 5`` prints one BENCH_JSON line in the shape bench/predict.lua prints,
so bench/load.py reads HTTP and gRPC loads alike. There is no ghz here, so
this is the generator for ours and MLServer alike (both serve
``inference.GRPCInferenceService``). The request is serialised once by the
bench (bench/models.py) and sent as bytes, so the client spends no time in
protobuf; the calls are spread over a few processes, each an asyncio loop
with its share of the concurrent callers on one channel, so one client GIL
is not what is measured. Every run is bounded in time and in calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

METHOD = "/inference.GRPCInferenceService/ModelInfer"
MAX_CALLS = 2_000_000
CALL_TIMEOUT_S = 30.0
#: Large enough for a 10,000-row request and its answer (gRPC's default is 4 MiB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MARKER = "BENCH_JSON "


async def _callers(port: int, body: bytes, callers: int, duration_s: float, budget: int) -> dict[str, object]:
    """``callers`` concurrent callers on one channel for ``duration_s``: latencies and failures."""
    import grpc

    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    latencies_us: list[int] = []
    failures = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        # No serialisers: the request goes out as the bytes given, the answer comes back as bytes.
        call = channel.unary_unary(METHOD)
        await call(body, timeout=CALL_TIMEOUT_S)  # connected before the clock starts
        stop_at = time.monotonic() + duration_s

        async def caller() -> None:
            nonlocal failures
            for _ in range(budget):
                if time.monotonic() >= stop_at:
                    return
                start = time.perf_counter()
                try:
                    await call(body, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError:
                    failures += 1
                    continue
                latencies_us.append(int((time.perf_counter() - start) * 1e6))

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - started
    return {"latencies_us": latencies_us, "failures": failures, "elapsed_s": elapsed}


def percentile(sorted_values: list[int], q: float) -> float:
    """The ``q`` quantile of an ascending list, as predict.lua's wrk percentile reads it; 0 when empty."""
    if not sorted_values:
        return 0.0
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def summarise(workers: list[dict[str, object]]) -> dict[str, float]:
    """One BENCH_JSON summary from the workers' reports: calls, mean elapsed, latency percentiles.

    Failed calls (any gRPC status but OK) are counted as ``non2xx``, as an HTTP
    error answer would be.
    """
    latencies = sorted(x for w in workers for x in w["latencies_us"])  # type: ignore[attr-defined]
    elapsed = [float(w["elapsed_s"]) for w in workers]  # type: ignore[arg-type]
    return {
        "requests": len(latencies),
        "duration_us": (sum(elapsed) / len(elapsed) * 1e6) if elapsed else 0.0,
        "connect": 0,
        "read": 0,
        "write": 0,
        "timeout": 0,
        "status": 0,
        "non2xx": sum(int(w["failures"]) for w in workers),  # type: ignore[call-overload]
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "max_us": float(latencies[-1]) if latencies else 0.0,
        "mean_us": sum(latencies) / len(latencies) if latencies else 0.0,
    }


def split(concurrency: int, processes: int) -> list[int]:
    """``concurrency`` callers shared out over at most ``processes`` processes, none empty."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("the bench only sends load to 127.0.0.1")
    if args.worker:
        budget = MAX_CALLS // max(1, args.concurrency)
        report = asyncio.run(_callers(args.port, args.body_file.read_bytes(), args.concurrency, args.duration, budget))
        print(json.dumps(report), flush=True)
        return
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.grpcload", "--worker", "--port", str(args.port), "--body-file",
             str(args.body_file), "--concurrency", str(n), "--duration", str(args.duration)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        for n in split(args.concurrency, args.processes)
    ]
    reports, failed = [], 0
    for child in children:
        try:
            out, _ = child.communicate(timeout=args.duration + CALL_TIMEOUT_S + 30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            failed += 1
            continue
        if child.returncode != 0:
            failed += 1
            continue
        reports.append(json.loads(out.strip().splitlines()[-1]))
    if failed:
        raise SystemExit(f"{failed} of {len(children)} gRPC load processes failed")
    print(MARKER + json.dumps(summarise(reports)), flush=True)


if __name__ == "__main__":
    main()
