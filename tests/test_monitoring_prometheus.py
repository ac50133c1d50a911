"""A real Prometheus scrapes a real iris-service; the drift gauge reads back through its HTTP API."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import FEATURES, free_port, run_server, serve_args, server_env
from test_drift import drawn_like_training
from test_monitoring import ALERTS, MONITORING

WAIT_SECONDS = 60


@contextlib.contextmanager
def prometheus(target: str, folder: Path) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port scraping ``target`` every second; stopped by its PID."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is missing: apt-get install prometheus (.ci/run does)"
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())  # the example, pointed at the test
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, f"--config.file={path}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def query(base: str, promql: str) -> list[dict]:
    response = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]  # type: ignore[no-any-return]


def poll(base: str, promql: str, want: int) -> list[dict]:
    """The query's result once it has ``want`` series (bounded: WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    found: list[dict] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            found = query(base, promql)
            if len(found) >= want:
                return found
        time.sleep(0.5)
    pytest.fail(f"Prometheus had {len(found)} series of {promql} after {WAIT_SECONDS} s, wanted {want}")


def test_prometheus_reads_the_drift_gauge_iris_service_exports(iris_artifact: Path, tmp_path: Path) -> None:
    port = free_port()
    with run_server(serve_args(port), server_env(iris_artifact, tmp_path), port,
                    output=tmp_path / "server.log") as (base, _proc):
        rows = drawn_like_training(400)
        rows[:, 2] += 3.0  # petal_length shifted
        for start in range(0, len(rows), 100):
            answer = requests.post(f"{base}/models/iris/predict", json={"instances": rows[start:start + 100].tolist()},
                                   timeout=10)
            assert answer.status_code == 200
        drift = requests.get(f"{base}/models/iris/drift", timeout=5).json()
        with prometheus(f"127.0.0.1:{port}", tmp_path) as prom:
            series = poll(prom, "iris_feature_psi", len(FEATURES))
            got = {s["metric"]["feature"]: float(s["value"][1]) for s in series}
            assert got == {name: pytest.approx(f["psi"]) for name, f in drift["features"].items()}
            assert {(s["metric"]["model"], s["metric"]["version"], s["metric"]["job"], s["metric"]["instance"])
                    for s in series} == {("iris", "1", "iris-service", f"127.0.0.1:{port}")}
            assert got["petal_length"] > 0.25 and max(v for k, v in got.items() if k != "petal_length") < 0.1
            # The rules load in a real Prometheus, and the drift rule sees the shift (pending: for 15m).
            rules = requests.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
            assert sorted(r["name"] for g in rules for r in g["rules"]) == sorted(ALERTS)
            pending = poll(prom, 'ALERTS{alertname="IrisFeatureDrift"}', 1)
            assert [(a["metric"]["feature"], a["metric"]["alertstate"]) for a in pending] == [("petal_length", "pending")]
