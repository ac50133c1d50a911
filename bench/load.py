"""Drive load at a started server with wrk, or the bench's own generators.

wrk is preferred for HTTP: it is C, so at concurrency 64 it measures the
server and not the load generator. gRPC loads go through bench/grpcload.py.
All print the same BENCH_JSON summary line. A body file may have a
``<name>.headers.json`` beside it: the request headers it needs (the binary
V2 body's content type and ``Inference-Header-Content-Length``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "predict.lua"
REQUEST_TIMEOUT_S = 30
MARKER = "BENCH_JSON "
#: gRPC client processes: the callers are shared out over them (bench/grpcload.py).
GRPC_CLIENT_PROCESSES = 2


@dataclass(frozen=True)
class Measurement:
    """What one fixed-duration load measured."""

    tool: str
    connections: int
    rows_per_request: int
    duration_s: float
    requests: int
    requests_per_s: float
    rows_per_s: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "errors": self.errors}


def default_tool() -> str:
    """``wrk`` when it is on PATH, else ``python`` (bench/loadgen.py)."""
    return "wrk" if shutil.which("wrk") else "python"


def headers_file(body_file: Path) -> Path:
    """Where the extra request headers of ``body_file`` are kept, if it needs any."""
    return body_file.with_name(body_file.stem + ".headers.json")


def body_headers(body_file: Path) -> dict[str, str]:
    """The extra request headers ``body_file`` is sent with; none for a JSON body."""
    extra = headers_file(body_file)
    return json.loads(extra.read_text()) if extra.exists() else {}


def _command(
    tool: str, port: int, path: str, body_file: Path, connections: int, duration_s: int
) -> tuple[list[str], dict[str, str]]:
    if tool == "grpc":
        return (
            [
                sys.executable,
                "-m",
                "bench.grpcload",
                "--port",
                str(port),
                "--body-file",
                str(body_file),
                "--concurrency",
                str(connections),
                "--processes",
                str(GRPC_CLIENT_PROCESSES),
                "--duration",
                str(duration_s),
            ],
            {},
        )
    extra = body_headers(body_file)
    if tool == "wrk":
        return (
            [
                "wrk",
                "-t1",  # one C thread saturates a Flask server; leave the cores to it
                f"-c{connections}",
                f"-d{duration_s}s",
                f"--timeout={REQUEST_TIMEOUT_S}s",
                "-s",
                str(LUA_SCRIPT),
                f"http://127.0.0.1:{port}{path}",
            ],
            # predict.lua has no JSON parser: one "Name: value" per line.
            {"BENCH_BODY_FILE": str(body_file), "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in extra.items())},
        )
    return (
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(port),
            "--path",
            path,
            "--body-file",
            str(body_file),
            "--connections",
            str(connections),
            "--duration",
            str(duration_s),
            "--headers",
            json.dumps(extra),
        ],
        {},
    )


def run_load(
    tool: str,
    port: int,
    body_file: Path,
    *,
    connections: int,
    duration_s: int,
    rows_per_request: int,
    env: dict[str, str],
    cwd: Path,
    path: str = "/predict",
) -> Measurement:
    """Load ``path`` on 127.0.0.1:``port`` for ``duration_s`` seconds (``tool`` grpc: ModelInfer)."""
    command, extra_env = _command(tool, port, path, body_file, connections, duration_s)
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**env, **extra_env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=duration_s + REQUEST_TIMEOUT_S + 30,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"{tool} failed ({done.returncode}): {done.stderr.strip()[-500:] or done.stdout[-500:]}"
        )
    raw = json.loads(line[len(MARKER) :])
    seconds = raw["duration_us"] / 1e6
    requests = int(raw["requests"])
    # wrk's "status" counts answers >= 400, which non2xx already covers.
    socket_errors = int(raw["connect"] + raw["read"] + raw["write"] + raw["timeout"])
    return Measurement(
        tool=tool,
        connections=connections,
        rows_per_request=rows_per_request,
        duration_s=round(seconds, 3),
        requests=requests,
        requests_per_s=requests / seconds if seconds else 0.0,
        rows_per_s=requests * rows_per_request / seconds if seconds else 0.0,
        mean_ms=raw["mean_us"] / 1000.0,
        p50_ms=raw["p50_us"] / 1000.0,
        p99_ms=raw["p99_us"] / 1000.0,
        socket_errors=socket_errors,
        non_2xx=int(raw["non2xx"]),
    )
