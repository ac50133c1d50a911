"""``grpc.health.v1`` Watch on a live ``serve --grpc-port``: told of changes, never freezing the server or its stop.

grpcio's own health servicer sends to watchers under a lock that a watcher
hanging up needs on grpcio's polling thread: a status set meanwhile froze every
call of the server, and its SIGTERM with it. And a Watch stream never ends by
itself, so the drain used to wait its whole timeout for any watcher.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from conftest import free_port, run_server, serve_args, server_env
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.server

ADMIN = "health-admin-token"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@contextlib.contextmanager
def serve(artifact: Path, folder: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """serve --grpc-port with a 60 s drain: a stop that waited for a watcher would take that long."""
    http_port, grpc_port = free_port(), free_port()
    args = serve_args(http_port, "--grpc-port", str(grpc_port), "--drain-timeout", "60")
    env = server_env(artifact, folder, IRIS_SERVICE_ADMIN_TOKEN=ADMIN)
    with run_server(args, env, http_port, output=folder / "server.log") as (base, proc):
        yield f"127.0.0.1:{grpc_port}", base, proc


def watch(channel: grpc.Channel, service: str = "") -> Iterator[health_pb2.HealthCheckResponse]:
    return health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)


def check(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_a_watcher_is_told_of_an_unload_through_rest_and_of_the_reload(iris_artifact: Path, tmp_path: Path) -> None:
    with serve(iris_artifact, tmp_path) as (target, base, _proc), grpc.insecure_channel(target) as channel:
        stream = watch(channel, "iris")
        unknown = watch(channel, "nope")
        assert next(stream).status == SERVING and next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert requests.post(f"{base}/v2/repository/models/iris/unload", headers=admin, timeout=10).status_code == 200
        assert check(channel, "iris") == NOT_SERVING  # a Check reads the data plane and tells the watchers
        assert next(stream).status == NOT_SERVING
        assert requests.post(f"{base}/v2/repository/models/iris/load", headers=admin, timeout=30).status_code == 200
        assert check(channel) == SERVING and next(stream).status == SERVING
        stream.cancel()
        unknown.cancel()


def test_watchers_hanging_up_while_statuses_change_never_freeze_the_server(iris_artifact: Path, tmp_path: Path) -> None:
    with serve(iris_artifact, tmp_path) as (target, _base, proc):
        for _ in range(5):
            with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
                # 17 on one connection: 16 open (each answered before the next), the 17th waits.
                streams = []
                for _ in range(16):
                    streams.append(watch(channel))
                    assert next(streams[-1]).status == SERVING
                streams.append(watch(channel))
                for stream in streams:
                    stream.cancel()
            with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
                assert check(channel) == SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sigterm_tells_watchers_not_serving_ends_their_streams_and_does_not_wait_for_them(
        iris_artifact: Path, tmp_path: Path) -> None:
    with serve(iris_artifact, tmp_path) as (target, _base, proc), grpc.insecure_channel(target) as channel:
        streams = [watch(channel), watch(channel, "iris")]
        assert [next(s).status for s in streams] == [SERVING, SERVING]
        proc.send_signal(signal.SIGTERM)
        assert [next(s).status for s in streams] == [NOT_SERVING, NOT_SERVING]
        for stream in streams:
            assert list(stream) == []  # the stream ended, with OK
            assert stream.code() == grpc.StatusCode.OK
        # Well within the 60 s drain: nothing else was in flight.
        assert proc.wait(timeout=30) == 0
