"""gRPC under gunicorn's worker processes: every worker serves the one GRPC_PORT, and SIGTERM drains it.

The shipped ``gunicorn.conf.py`` (preloaded app, our gthread worker) with
``IRIS_SERVICE_GRPC_PORT``: each worker starts its own grpcio server after the
fork, all on the same port. Which worker answered is read from the
multiprocess metrics files, one per worker pid.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import KNOWN_ROWS, ROOT, free_port, run_server, server_env
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.multiprocess import MultiProcessCollector
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

pytestmark = [pytest.mark.server,
              pytest.mark.skipif(sys.platform != "linux", reason="gunicorn workers sharing a port: Linux")]

ROWS = np.array([row for row, _, _ in KNOWN_ROWS])
CLASSES = [index for _, index, _ in KNOWN_ROWS]
#: A test config: the shipped one, with ModelInfer for id "slow" held until a file appears,
#: so a call is certainly in flight when SIGTERM arrives.
SLOW_CONFIG = """
exec(open({conf!r}).read())
_start_grpc = post_worker_init


def post_worker_init(worker):
    import os, time
    from iris_service.grpc import servicer

    answer = servicer.InferenceServicer.ModelInfer

    def held(self, request, context):
        if request.id == "slow":
            open({started!r}, "w").close()
            for _ in range(200):  # bounded: 20 s at most
                if os.path.exists({release!r}):
                    break
                time.sleep(0.1)
        return answer(self, request, context)

    servicer.InferenceServicer.ModelInfer = held
    _start_grpc(worker)
"""


@contextlib.contextmanager
def gunicorn(folder: Path, artifact: Path, config: str = "gunicorn.conf.py", **env: str,
             ) -> Iterator[tuple[str, subprocess.Popen[bytes], Path, Path]]:
    """``gunicorn -c <config>`` with 2 workers and GRPC_PORT; yields the gRPC target, process, metrics dir, log."""
    http_port, grpc_port = free_port(), free_port()
    metrics = folder / "metrics"
    settings = server_env(artifact, folder, GUNICORN_BIND=f"127.0.0.1:{http_port}", GUNICORN_WORKERS="2",
                          GUNICORN_GRACEFUL_TIMEOUT="20", IRIS_SERVICE_GRPC_PORT=str(grpc_port),
                          PROMETHEUS_MULTIPROC_DIR=str(metrics), **env)
    log = folder / "gunicorn.log"
    args = [sys.executable, "-m", "gunicorn", "-c", config]
    with run_server(args, settings, http_port, cwd=ROOT, output=log) as (_base, proc):
        target = f"127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 30
        while len(worker_pids(log)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the workers did not start gRPC"
            time.sleep(0.1)
        wait_serving(target, proc)
        yield target, proc, metrics, log


def wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until gRPC answers health (HTTP being up says nothing of gRPC)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited"
        with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.1)
    raise TimeoutError(f"gRPC on {target} not serving in {timeout}s")


def infer_request(request_id: str = "") -> tpb.ModelInferRequest:
    tensor = tpb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[3, 4])
    return tpb.ModelInferRequest(model_name="iris", id=request_id, inputs=[tensor],
                                 raw_input_contents=[ROWS.astype("<f8").tobytes()])


def classes_of(answer: tpb.ModelInferResponse) -> list[int]:
    index = [o.name for o in answer.outputs].index("predict")
    return np.frombuffer(answer.raw_output_contents[index], dtype="<i8").tolist()


def infer_calls_by_pid(metrics: Path) -> dict[int, float]:
    """OK ModelInfer calls counted by each process, from its own multiprocess file."""
    counts: dict[int, float] = {}
    for path in metrics.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name == "iris_grpc_requests_total" and sample.labels == {"method": "ModelInfer", "code": "OK"}:
                    counts[pid] = counts.get(pid, 0) + sample.value
    return counts


def worker_pids(log: Path) -> set[int]:
    lines = log.read_text(errors="replace").splitlines()
    return {int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in lines if "iris-service gRPC on" in line}


def test_every_worker_serves_grpc_on_the_shared_port(iris_artifact: Path, tmp_path: Path) -> None:
    with gunicorn(tmp_path, iris_artifact) as (target, _proc, metrics, log):
        pids = worker_pids(log)
        assert len(pids) == 2
        for i in range(60):  # a connection of its own each: the kernel picks a worker per connection
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                answer = tpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(f"w-{i}"), timeout=10)
                assert classes_of(answer) == CLASSES and answer.id == f"w-{i}"
        counts = infer_calls_by_pid(metrics)
    assert set(counts) == pids, (counts, pids)  # both workers answered, the master none
    assert sum(counts.values()) == 60


def test_sigterm_drains_the_workers_grpc_calls_and_exits_0(iris_artifact: Path, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    config = tmp_path / "slow.conf.py"
    config.write_text(SLOW_CONFIG.format(conf=str(ROOT / "gunicorn.conf.py"), started=str(started),
                                         release=str(release)))
    with gunicorn(tmp_path, iris_artifact, config=str(config)) as (target, proc, _metrics, log):
        answers: list[object] = []
        channel = grpc.insecure_channel(target)
        stub = tpb_grpc.GRPCInferenceServiceStub(channel)
        slow = threading.Thread(target=lambda: answers.append(stub.ModelInfer(infer_request("slow"), timeout=30)))
        slow.start()
        deadline = time.monotonic() + 20
        while not started.exists():
            assert time.monotonic() < deadline, "the slow call never reached a worker"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # The worker holding the call stops taking new ones: on that same connection, a call is refused.
        refused = None
        for _ in range(100):  # bounded: 10 s
            try:
                stub.ServerLive(tpb.ServerLiveRequest(), timeout=5)
            except grpc.RpcError as exc:
                refused = exc.code()
                break
            time.sleep(0.1)
        release.touch()
        slow.join(timeout=30)
        assert proc.wait(timeout=30) == 0
        channel.close()
    # Refused as a single server refuses after its stop (test_grpc.py): UNAVAILABLE, or CANCELLED when
    # the call reached grpc-core in the instant its shutdown began, before our code ran.
    assert refused in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refused
    [answer] = answers  # the call in flight at SIGTERM was answered in full
    assert classes_of(answer) == CLASSES and answer.id == "slow"
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and text.count("Worker exiting") == 2


def test_a_busy_grpc_port_stops_gunicorn_before_any_worker(iris_artifact: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**server_env(iris_artifact, tmp_path, GUNICORN_BIND=f"127.0.0.1:{free_port()}",
                            IRIS_SERVICE_GRPC_PORT=str(port))}
        result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT,
                                env={**_environ(), **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"Error: Cannot listen on 127.0.0.1:{port} for gRPC: Address already in use" in result.stderr
    assert "Booting worker" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "70000", "port"])
def test_a_bad_grpc_port_is_refused_at_start(iris_artifact: Path, tmp_path: Path, value: str) -> None:
    env = server_env(iris_artifact, tmp_path, GUNICORN_BIND=f"127.0.0.1:{free_port()}", IRIS_SERVICE_GRPC_PORT=value)
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT,
                            env={**_environ(), **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"GRPC_PORT must be a whole number from 1 to 65535, or null for no gRPC, not {value if value != 'port' else repr(value)}" \
        in result.stderr
    assert "Booting worker" not in result.stderr and "Traceback" not in result.stderr


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_serve_takes_the_same_setting(iris_artifact: Path, tmp_path: Path) -> None:
    """IRIS_SERVICE_GRPC_PORT turns gRPC on under ``iris-service serve`` too (--grpc-port wins when given)."""
    from conftest import serve_args

    http_port, grpc_port = free_port(), free_port()
    env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_GRPC_PORT=str(grpc_port))
    with run_server(serve_args(http_port), env, http_port, output=tmp_path / "serve.log") as (_base, proc):
        target = f"127.0.0.1:{grpc_port}"
        wait_serving(target, proc)
        with grpc.insecure_channel(target) as channel:
            assert classes_of(tpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(), timeout=10)) == CLASSES


@pytest.mark.parametrize(("extra", "threads"), [({}, 2), ({"IRIS_SERVICE_BATCHING": "on"}, 4),
                                                ({"IRIS_SERVICE_GRPC_THREADS": "3"}, 3)])
def test_grpc_threads_default_to_the_measured_setting_for_batching(iris_artifact: Path, tmp_path: Path, extra,
                                                                   threads) -> None:
    """gRPC calls get 2 threads (4 when the micro-batcher gathers calls) unless GRPC_THREADS says; they answer."""
    from conftest import serve_args

    http_port, grpc_port = free_port(), free_port()
    env = server_env(iris_artifact, tmp_path, IRIS_SERVICE_GRPC_PORT=str(grpc_port), **extra)
    log = tmp_path / "serve.log"
    with run_server(serve_args(http_port), env, http_port, output=log) as (_base, proc):
        target = f"127.0.0.1:{grpc_port}"
        wait_serving(target, proc)
        with grpc.insecure_channel(target) as channel:
            assert classes_of(tpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(), timeout=10)) == CLASSES
        assert f"iris-service gRPC on 127.0.0.1:{grpc_port} ({threads} threads" in log.read_text()
