"""Payload logs in one process: what a record holds (and never holds), sampling, rotation, settings at start."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from conftest import FEATURES, KNOWN_ROWS, free_port, serve_args, server_env

from iris_service.errors import ConfigError
from iris_service.rest.state import state_of
from iris_service.settings import load_settings

ROWS = [row for row, _, _ in KNOWN_ROWS]
LABELS = [label for _, _, label in KNOWN_ROWS]
KEY, TOKEN = "pl-secret-key-4711", "pl-admin-token-0815"


def flushed_lines(app, path: Path) -> list[dict[str, object]]:
    assert state_of(app).payload_log.flush()
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_records_hold_id_time_model_inputs_and_outputs_for_every_protocol(payload_app, tmp_path) -> None:
    out = tmp_path / "payloads.jsonl"
    app = payload_app(PAYLOAD_LOG=str(out))
    client = app.test_client()
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    single = client.post("/predict", json={"features": ROWS[0]}, headers={"X-Request-ID": "native-1"})
    batch = client.post("/predict", json={"instances": ROWS}, headers={"X-Request-ID": "native-2"})
    v1 = client.post("/v1/models/iris:predict", json={"instances": ROWS}, headers={"X-Request-ID": "v1-3"})
    v2 = client.post("/v2/models/iris/infer", headers={"X-Request-ID": "v2-4"}, json={"inputs": [
        {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": [v for row in ROWS for v in row]}]})
    mlflow = client.post("/invocations", headers={"X-Request-ID": "mlflow-5"},
                         json={"dataframe_split": {"columns": list(FEATURES), "data": ROWS}})
    assert [r.status_code for r in (single, batch, v1, v2, mlflow)] == [200] * 5
    records = flushed_lines(app, out)
    assert [r["request_id"] for r in records] == ["native-1", "native-2", "v1-3", "v2-4", "mlflow-5"]
    probabilities = [list(row["probabilities"].values()) for row in batch.get_json()["predictions"]]
    for record in records:
        assert set(record) == {"request_id", "time", "model", "version", "inputs", "outputs"}
        assert (record["model"], record["version"]) == ("iris", "1")
        assert before <= datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")) <= datetime.now(timezone.utc)
        assert str(record["time"]).endswith("Z")
    assert records[0]["inputs"] == [ROWS[0]]
    # The answer's own numbers (one row takes the exact plain-float path, a batch numpy's).
    assert records[0]["outputs"] == {"predictions": ["setosa"],
                                     "probabilities": [list(single.get_json()["probabilities"].values())],
                                     "classes": ["setosa", "versicolor", "virginica"]}
    for record in records[1:]:
        assert record["inputs"] == ROWS
        assert record["outputs"]["predictions"] == LABELS
        assert record["outputs"]["probabilities"] == probabilities


def test_records_never_hold_headers_keys_or_tokens(payload_app, tmp_path) -> None:
    out = tmp_path / "payloads.jsonl"
    app = payload_app(PAYLOAD_LOG=str(out), API_KEYS=[KEY], ADMIN_TOKEN=TOKEN)
    client = app.test_client()
    headers = {"X-API-Key": KEY, "Authorization": f"Bearer {KEY}", "Cookie": f"session={TOKEN}",
               "User-Agent": "agent-007", "X-Request-ID": "with-key"}
    assert client.post("/predict", json={"features": ROWS[1]}, headers=headers).status_code == 200
    assert client.post(f"/predict?api_key={KEY}", json={"features": ROWS[1]}).status_code == 401
    # Refused and failed requests answered nothing: no record.
    assert client.post("/predict", json={"features": [1, 2]}, headers=headers).status_code == 422
    [record] = flushed_lines(app, out)
    assert record["request_id"] == "with-key" and record["inputs"] == [ROWS[1]]
    text = out.read_text()
    for secret in (KEY, TOKEN, "Authorization", "X-API-Key", "Cookie", "agent-007", "Bearer"):
        assert secret not in text


def test_off_by_default_and_nothing_runs_before_the_first_record(payload_app, tmp_path) -> None:
    assert state_of(payload_app()).payload_log is None
    assert state_of(payload_app(PAYLOAD_LOG="off")).payload_log is None
    out = tmp_path / "lazy.jsonl"
    app = payload_app(PAYLOAD_LOG=str(out))
    assert "iris-payload-log" not in [t.name for t in threading.enumerate()]
    assert not out.exists()
    assert app.test_client().post("/predict", json={"features": ROWS[2]}).status_code == 200
    assert "iris-payload-log" in [t.name for t in threading.enumerate()]
    assert [r["outputs"]["predictions"] for r in flushed_lines(app, out)] == [["virginica"]]
    assert out.stat().st_mode & 0o777 == 0o600  # what clients sent: the owner's only


def test_the_sample_rate_logs_that_share_of_requests(payload_app, tmp_path) -> None:
    out = tmp_path / "sampled.jsonl"
    app = payload_app(PAYLOAD_LOG=str(out), PAYLOAD_LOG_SAMPLE=0.5)
    client = app.test_client()
    for i in range(2000):
        assert client.post("/predict", json={"features": ROWS[i % 3]}, headers={"X-Request-ID": f"s-{i}"}).status_code == 200
    records = flushed_lines(app, out)
    # Binomial(2000, 0.5): a standard deviation of 22; 150 is almost seven of them.
    assert 850 <= len(records) <= 1150
    ids = [int(str(r["request_id"])[2:]) for r in records]
    assert ids == sorted(set(ids))  # each sampled request once, in order


@pytest.mark.parametrize("backups", [2, 0])
def test_the_file_rotates_by_size_keeping_the_backups(payload_app, tmp_path, backups: int) -> None:
    out = tmp_path / "rotated.jsonl"
    app = payload_app(PAYLOAD_LOG=str(out), PAYLOAD_LOG_MAX_BYTES=2048, PAYLOAD_LOG_BACKUPS=backups)
    client = app.test_client()
    for i in range(60):  # ~300 bytes a record: ~18 kB, nine files' worth
        assert client.post("/predict", json={"features": ROWS[0]}, headers={"X-Request-ID": f"r-{i:02d}"}).status_code == 200
    state_of(app).payload_log.flush()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("rotated.jsonl") and
                   not p.name.endswith(".lock"))
    assert names == ["rotated.jsonl", *[f"rotated.jsonl.{i}" for i in range(1, backups + 1)]]
    files = [out.with_name(f"rotated.jsonl.{i}") for i in range(backups, 0, -1)] + [out]
    ids = []
    for path in files:
        assert 0 < path.stat().st_size <= 2048
        ids += [orjson.loads(line)["request_id"] for line in path.read_bytes().splitlines()]
    # The newest records, oldest first, with none missing in between; the last one is the last request.
    assert ids == [f"r-{i:02d}" for i in range(60 - len(ids), 60)]


BAD_SETTINGS = [
    ("PAYLOAD_LOG", "ftp://logs.example/in", "PAYLOAD_LOG must be off, a file path in an existing writable "
     "folder, or an http:// or https:// URL, not 'ftp://logs.example/in'."),
    ("PAYLOAD_LOG", "http://", "PAYLOAD_LOG must be off, a file path in an existing writable folder, or an "
     "http:// or https:// URL, not 'http://'."),
    ("PAYLOAD_LOG", "/no/such/folder/p.jsonl", "PAYLOAD_LOG must be off, a file path in an existing writable "
     "folder, or an http:// or https:// URL, not '/no/such/folder/p.jsonl' (its folder does not exist or is "
     "not writable)."),
    ("PAYLOAD_LOG", "https://user:hunter2@logs.example/in", "PAYLOAD_LOG must be off, a file path in an existing "
     "writable folder, or an http:// or https:// URL without a user name or password (they would not be sent), "
     "not a URL to logs.example with one."),
    ("PAYLOAD_LOG", "http://logs.example:99999/", "PAYLOAD_LOG must be off, a file path in an existing writable "
     "folder, or an http:// or https:// URL, not 'http://logs.example:99999/' (its port is not valid)."),
    ("PAYLOAD_LOG", 5, "PAYLOAD_LOG must be off, a file path in an existing writable folder, or an http:// or "
     "https:// URL, not 5."),
    ("PAYLOAD_LOG_SAMPLE", 0, "PAYLOAD_LOG_SAMPLE must be a number above 0 and at most 1 (the share of requests "
     "logged), not 0."),
    ("PAYLOAD_LOG_SAMPLE", 1.5, "PAYLOAD_LOG_SAMPLE must be a number above 0 and at most 1 (the share of "
     "requests logged), not 1.5."),
    ("PAYLOAD_LOG_SAMPLE", "half", "PAYLOAD_LOG_SAMPLE must be a number above 0 and at most 1 (the share of "
     "requests logged), not 'half'."),
    ("PAYLOAD_LOG_MAX_BYTES", 10, "PAYLOAD_LOG_MAX_BYTES must be a whole number from 1024 to 1099511627776 "
     "(bytes before the file is rotated), not 10."),
    ("PAYLOAD_LOG_BACKUPS", -1, "PAYLOAD_LOG_BACKUPS must be a whole number from 0 to 1000 (rotated files "
     "kept), not -1."),
    ("PAYLOAD_LOG_QUEUE", 0, "PAYLOAD_LOG_QUEUE must be a whole number from 1 to 10000000 (records waiting for "
     "the writer), not 0."),
    ("PAYLOAD_LOG_QUEUE", True, "PAYLOAD_LOG_QUEUE must be a whole number from 1 to 10000000 (records waiting "
     "for the writer), not True."),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_SETTINGS)
def test_a_bad_payload_setting_is_refused_at_start_naming_it(key, value, message, tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ENV_NAME": "testing", key: value}, tmp_path)
    assert str(caught.value) == message
    assert "hunter2" not in message


def test_a_folder_is_not_a_payload_log_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"not '.*' \(a folder\)\.$"):
        load_settings({"ENV_NAME": "testing", "PAYLOAD_LOG": str(tmp_path)}, tmp_path)


def test_payload_settings_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IRIS_SERVICE_PAYLOAD_LOG", str(tmp_path / "p.jsonl"))
    monkeypatch.setenv("IRIS_SERVICE_PAYLOAD_LOG_SAMPLE", "0.25")
    monkeypatch.setenv("IRIS_SERVICE_PAYLOAD_LOG_QUEUE", "50")
    settings = load_settings("testing", tmp_path)
    assert (settings["PAYLOAD_LOG"], settings["PAYLOAD_LOG_SAMPLE"], settings["PAYLOAD_LOG_QUEUE"]) == (
        str(tmp_path / "p.jsonl"), 0.25, 50)
    assert (settings["PAYLOAD_LOG_MAX_BYTES"], settings["PAYLOAD_LOG_BACKUPS"]) == (100 * 1024 * 1024, 5)
    monkeypatch.setenv("IRIS_SERVICE_PAYLOAD_LOG", "off")
    assert load_settings("testing", tmp_path)["PAYLOAD_LOG"] is None


def test_serve_stops_on_a_bad_payload_setting_with_one_line(iris_artifact, tmp_path) -> None:
    env = {**os.environ, **server_env(iris_artifact, tmp_path, IRIS_SERVICE_PAYLOAD_LOG_SAMPLE="2")}
    result = subprocess.run(serve_args(free_port()), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: PAYLOAD_LOG_SAMPLE must be a number above 0 and at most 1 (the share of requests logged), not 2."]


def test_close_waits_for_the_queue_then_gives_up_counting_what_was_left(iris_artifact, tmp_path) -> None:
    """The exit hook's bound: a stuck sink costs ``timeout``, its records are counted, a new writer takes over."""
    import numpy as np

    from iris_service.serving import DataPlane, InferResult, ServingSettings, model_sources
    from iris_service.serving.payload_log import PayloadLog, PayloadLogSettings

    config = load_settings({"ENV_NAME": "testing", "MODEL_PATH": str(iris_artifact)}, tmp_path)
    plane = DataPlane.start(model_sources(config), ServingSettings.from_config(config))
    model, x = plane.model("iris"), np.array([ROWS[0]])
    result = InferResult(model, 1, model.predict(x), {}, x)
    release, written, drops = threading.Event(), [], []

    class StuckSink:
        def write(self, entries):
            assert release.wait(30)
            written.extend(e.request_id for e in entries)
            return 0

        def close(self):
            written.append("closed")

    payloads = PayloadLog(PayloadLogSettings("unused.jsonl"), lambda reason, n: drops.append((reason, n)),
                          sink=StuckSink)
    payloads.record("a", result)
    deadline = time.monotonic() + 10
    while payloads._queue.items and time.monotonic() < deadline:  # the writer took "a" and is stuck on it
        time.sleep(0.01)
    payloads.record("b", result)
    payloads.record("c", result)
    stuck = payloads._writer
    payloads.close(timeout=0.3)
    assert drops == [("not_flushed", 2)]
    release.set()
    stuck.join(10)  # once its sink answers, the stuck writer delivers "a" and closes its sink
    assert not stuck.is_alive()
    payloads.record("d", result)  # a new writer
    assert payloads.flush()
    payloads.close()
    assert sorted(written) == ["a", "closed", "closed", "d"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only: Windows has no fork")
def test_a_forked_child_records_through_its_own_writer(payload_app, tmp_path) -> None:
    """Threads do not survive a fork: the child's first record starts its own writer, and nothing is lost."""
    path = tmp_path / "fork.jsonl"
    app = payload_app(PAYLOAD_LOG=str(path))
    client = app.test_client()
    assert client.post("/predict", json={"features": KNOWN_ROWS[0][0]}, headers={"X-Request-ID": "parent-1"}).status_code == 200
    log = state_of(app).payload_log
    assert log.flush()
    pid = os.fork()
    if pid == 0:  # the child: one request, its record flushed by its own writer, then out without cleanup
        ok = client.post("/predict", json={"features": KNOWN_ROWS[1][0]}, headers={"X-Request-ID": "child-1"})
        os._exit(0 if ok.status_code == 200 and log.flush() and log._writer.is_alive() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert client.post("/predict", json={"features": KNOWN_ROWS[2][0]}, headers={"X-Request-ID": "parent-2"}).status_code == 200
    assert log.flush()
    ids = [orjson.loads(line)["request_id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == ["child-1", "parent-1", "parent-2"]
