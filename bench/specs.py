"""What the bench runs: its scenarios and server specs, and the one switch naming ours' default server.

``iris-service serve`` picks the server ours runs on by default; the bench
asks it (``serve_servers``: the ``--server`` option's default and choices, or
waitress alone before that option existed) and builds the specs from the
answer, so "ours on the default server" (S1, S3, S4, S5, S8, P1) follows the
CLI without an edit here. Until ``serve --server granian`` exists, ours'
granian specs start granian on ours' WSGI factory directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import mlserver
from bench.servers import Scenario, ServerSpec

BATCH_ROWS = 10_000
V2_PATH = "/v2/models/iris/infer"  # ours' models are trained under the name "iris", MLServer's too

ROW_C1 = Scenario("row-c1", "row", 1, 1)
ROW_C16 = Scenario("row-c16", "row", 1, 16)
ROW_C64 = Scenario("row-c64", "row", 1, 64)
V2_ROW_C16 = Scenario("v2-row-c16", "v2-row", 1, 16, V2_PATH)
BATCH = Scenario(f"batch-{BATCH_ROWS}", f"instances-{BATCH_ROWS}", BATCH_ROWS, 1)
#: The same rows as one V2 JSON tensor, asking for both outputs: flat arrays instead of an object per row.
V2_BATCH = Scenario(f"batch-{BATCH_ROWS}-v2", f"v2-{BATCH_ROWS}", BATCH_ROWS, 1, V2_PATH)
#: The same rows with Triton's binary tensor extension, answered binary: what gRPC is compared with (G2).
V2_BINARY_BATCH = Scenario(f"batch-{BATCH_ROWS}-v2-binary", f"v2-bin-{BATCH_ROWS}", BATCH_ROWS, 1, V2_PATH)
GRPC_ROW_C16 = Scenario("grpc-row-c16", "grpc-row", 1, 16, protocol="grpc")
GRPC_BATCH = Scenario(f"grpc-batch-{BATCH_ROWS}", f"grpc-{BATCH_ROWS}", BATCH_ROWS, 1, protocol="grpc")

OURS_ENV = {"IRIS_SERVICE_ENV": "production", "IRIS_SERVICE_MODEL_PATH": "{ours_model}", "IRIS_SERVICE_BATCHING": "off"}
#: Issue 20's settings: every request's payload logged to a file, drift tracked (P1).
PAYLOAD_DRIFT_ENV = {
    "IRIS_SERVICE_PAYLOAD_LOG": "{payload_log}",
    "IRIS_SERVICE_PAYLOAD_LOG_SAMPLE": "1.0",
    "IRIS_SERVICE_DRIFT_ENABLED": "true",
}
DRIFT_PATH = "/models/iris/drift"
#: P1's "both off": drift is on by default, the payload log off.
MONITORING_OFF_ENV = {"IRIS_SERVICE_DRIFT_ENABLED": "false"}
_WAITRESS = ("{python}", "-m", "waitress", "--host=127.0.0.1", "--port={port}", "--threads={threads}")
_SERVE_BASE = ("{python}", "-m", "iris_service.cli", "serve", "--host", "127.0.0.1", "--port", "{port}")
_SERVE = (*_SERVE_BASE, "--threads", "{threads}")
_GRANIAN = ("{python}", "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", "{port}",
            "--blocking-threads", "{threads}", "--no-ws", "--log-level", "warning")


@dataclass(frozen=True)
class ServeServers:
    """What ``iris-service serve`` offers: its default server and the ``--server`` choices."""

    default: str = "waitress"
    choices: tuple[str, ...] = ()


def describe_serve(command: Any, module: Any) -> ServeServers:
    """What a ``serve`` click command offers: its ``--server`` default and choices.

    The default is the option's own when it has one; an option defaulting to
    None (serve then picks) is read from the module's ``DEFAULT_SERVER``, else
    from the first of the choices, which ``serve`` lists default first. No
    ``--server`` option at all: waitress, the only server serve had.
    """
    option = next((p for p in getattr(command, "params", ()) if p.name == "server"), None)
    if option is None:
        return ServeServers()
    choices = tuple(str(c) for c in getattr(option.type, "choices", ()))
    default = option.default or getattr(module, "DEFAULT_SERVER", None) or (choices[0] if choices else "waitress")
    return ServeServers(str(default), choices)


_PROBE = """
import dataclasses, json
import importlib
from bench.specs import describe_serve
serve = importlib.import_module("iris_service.cli.serve")  # the module: the package exports the command too
print(json.dumps(dataclasses.asdict(describe_serve(serve.serve, serve))))
"""


def serve_servers(cwd: Path, env: Mapping[str, str]) -> ServeServers:
    """Ask ``iris-service serve`` (in a child, as the servers import it) what it serves with."""
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=cwd, env=dict(env), capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        return ServeServers()
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return ServeServers(str(answer["default"]), tuple(str(c) for c in answer["choices"]))


def ours_command(server: str, workers: int, serve: ServeServers) -> tuple[str, ...]:
    """How to start ours on ``server`` with ``workers`` processes: ``serve --server`` when it exists."""
    if server in serve.choices:
        if server == "granian":  # serve's own thread count for granian (4): the setting measured for it
            return (*_SERVE_BASE, "--server", server, "--workers", str(workers))
        extra = ("--workers", str(workers)) if workers > 1 else ()
        return (*_SERVE, "--server", server, *extra)
    if server == "waitress":
        return _SERVE
    if server == "granian":
        return (*_GRANIAN, "--workers", str(workers), "--factory", "iris_service.cli.wsgi:create_app")
    raise ValueError(f"the bench cannot start ours on {server!r}")


def ours_name(server: str, workers: int = 1) -> str:
    """The spec name of ours on ``server``: ``ours-waitress``, ``ours-granian-w2``."""
    return "ours-waitress" if server == "waitress" else f"ours-{server}-w{workers}"


def build(serve: ServeServers) -> tuple[ServerSpec, ...]:
    """Every server spec, in the order a round runs them.

    Ours' default server carries the extra scenarios (V2 row, batches); the
    P1's two specs (payload log and drift off, then both on) run side by
    side, their loads alternating. The gRPC spec is ``serve --grpc-port`` with no ``--server``:
    whichever server serve runs gRPC beside.
    """
    default = serve.default
    default_cmd = ours_command(default, 1, serve)
    default_scenarios = (ROW_C16, ROW_C64, V2_ROW_C16, BATCH, V2_BATCH)
    ours: list[ServerSpec] = []
    for server, workers in (("waitress", 1), ("granian", 1), ("granian", 2)):
        is_default = server == default and workers == 1
        ours.append(ServerSpec(
            ours_name(server, workers), ours_command(server, workers, serve),
            default_scenarios if is_default else (ROW_C16, ROW_C64), env=OURS_ENV, needs_ours=True,
            note=f"iris-service on {server}, {workers} process{'es' if workers > 1 else ''}{' (the default server)' if is_default else ''}",
        ))
        if is_default:
            ours.append(ServerSpec(
                "ours-monitoring-off", default_cmd, (ROW_C16,), env={**OURS_ENV, **MONITORING_OFF_ENV},
                needs_ours=True, paired_with="ours-payload-drift",
                note=f"the same on {default}, payload log and drift off (P1's baseline, run beside the next)",
            ))
            ours.append(ServerSpec(
                "ours-payload-drift", default_cmd, (ROW_C16,), env={**OURS_ENV, **PAYLOAD_DRIFT_ENV},
                needs_ours=True, probe_path=DRIFT_PATH,
                note=f"the same on {default}, payload log at 100% to a file and drift on",
            ))
    rf_env = {**OURS_ENV, "IRIS_SERVICE_MODEL_PATH": "{ours_rf_model}"}
    return (
        ServerSpec("floor-waitress", (*_WAITRESS, "bench.reference.floor:app"), (ROW_C16,),
                   note="Flask constant answer, no model: the HTTP floor, waitress"),
        ServerSpec("floor-granian", (*_GRANIAN, "--workers", "1", "bench.reference.floor:app"), (ROW_C16, ROW_C64),
                   note="the same floor under granian, 1 process"),
        ServerSpec("tutorial-waitress", (*_WAITRESS, "bench.reference.tutorial:app"), (ROW_C16,),
                   env={"BENCH_MODEL_PATH": "{ref_model}"}, note="tutorial Flask app under waitress"),
        ServerSpec("tutorial-flask-dev", ("{python}", "-m", "bench.reference.tutorial"), (ROW_C16,),
                   env={"BENCH_MODEL_PATH": "{ref_model}", "BENCH_PORT": "{port}"},
                   note="tutorial Flask app, app.run(threaded=True)"),
        ServerSpec("fastapi-uvicorn", ("{python}", "-m", "uvicorn", "bench.reference.fastapi_app:app",
                                       "--host", "127.0.0.1", "--port", "{port}"), (ROW_C16, ROW_C64),
                   env={"BENCH_MODEL_PATH": "{ref_model}"}, note="tutorial work in async FastAPI, one uvicorn"),
        ServerSpec("fastapi-uvicorn-w2", ("{python}", "-m", "uvicorn", "bench.reference.fastapi_app:app",
                                          "--host", "127.0.0.1", "--port", "{port}", "--workers", "2"), (ROW_C64,),
                   env={"BENCH_MODEL_PATH": "{ref_model}"}, note="the same, uvicorn --workers 2"),
        *ours,
        ServerSpec("ours-rf-batching-off", default_cmd, (ROW_C64,), env=rf_env, needs_ours=True,
                   note=f"iris-service on {default}, random forest 200 trees (scikit-learn predict_proba)"),
        ServerSpec("ours-rf-batching-on", default_cmd, (ROW_C64,), env={**rf_env, "IRIS_SERVICE_BATCHING": "on"},
                   needs_ours=True, note="same, IRIS_SERVICE_BATCHING=on"),
        ServerSpec("ours-grpc", (*_SERVE, "--grpc-port", "{grpc_port}"), (V2_BINARY_BATCH, GRPC_ROW_C16, GRPC_BATCH),
                   env=OURS_ENV, needs_ours=True, note="iris-service serve --grpc-port: V2 over gRPC beside REST"),
        ServerSpec("mlserver", ("{mlserver}", "start", "{mlserver_repository}"), (V2_ROW_C16, GRPC_ROW_C16, GRPC_BATCH),
                   env=mlserver.ENV, ready_path="/v2/models/iris/ready", needs=("mlserver",),
                   cwd="{mlserver_repository}",
                   note=f"MLServer {mlserver.VERSION}, scikit-learn runtime, default settings (its own venv)"),
    )


def default_spec_name(serve: ServeServers) -> str:
    """The spec that is "ours on the default server"."""
    return ours_name(serve.default, 1)
