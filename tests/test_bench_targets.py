"""The bench's scenario list, target table and request bodies, without starting a server.

Every target must read figures that some server spec measures (for each
default server ``iris-service serve`` may have), the default-server switch
must pick the spec the targets read, and the V2 bodies must be requests ours
answers. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import grpcload, load, mlserver, report, rounds, specs, targets, v2bodies
from bench.models import ONE_ROW, iris_rows

WAITRESS_ONLY = specs.ServeServers()  # serve before --server existed
GRANIAN_DEFAULT = specs.ServeServers("granian", ("waitress", "granian"))
EXPECTED_TARGETS = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "G1", "G2", "P1", "P2"]


@pytest.mark.parametrize("serve", [WAITRESS_ONLY, GRANIAN_DEFAULT, specs.ServeServers("waitress", ("waitress", "granian"))])
def test_every_target_reads_a_figure_some_spec_measures(serve: specs.ServeServers) -> None:
    built = {s.name: s for s in specs.build(serve)}
    assert len(built) == len(specs.build(serve)), "spec names must be unique"
    checks = targets.checks(specs.default_spec_name(serve))
    assert sorted({c.target for c in checks}, key=EXPECTED_TARGETS.index) == EXPECTED_TARGETS
    for check in checks:
        for path in (check.numerator, check.denominator, *([check.requires] if check.requires else [])):
            if path[0] == "inprocess":
                assert path[1] in rounds.INPROCESS_MEDIANS, check.label
                continue
            assert path[0] == "servers" and path[1] in built, (check.label, path)
            if path[2] == "scenarios":
                assert path[3] in {sc.name for sc in built[path[1]].scenarios}, (check.label, path)
            else:
                assert path[2] in (*rounds.SERVER_MEDIANS, *rounds.SERVER_ALL), (check.label, path)


def test_the_default_server_switch_follows_iris_service_serve() -> None:
    # Before `serve --server`: ours' default is waitress through `serve`, granian through its factory.
    assert specs.default_spec_name(WAITRESS_ONLY) == "ours-waitress"
    assert specs.ours_command("waitress", 1, WAITRESS_ONLY)[2:4] == ("iris_service.cli", "serve")
    granian = specs.ours_command("granian", 2, WAITRESS_ONLY)
    assert granian[2] == "granian" and granian[-2:] == ("--factory", "iris_service.cli.wsgi:create_app")
    assert granian[granian.index("--workers") + 1] == "2"
    # With it: `serve --server X`, and the default's spec carries the default-server scenarios.
    assert specs.default_spec_name(GRANIAN_DEFAULT) == "ours-granian-w1"
    cmd = specs.ours_command("granian", 2, GRANIAN_DEFAULT)
    assert cmd[3] == "serve" and cmd[-4:] == ("--server", "granian", "--workers", "2")
    built = {s.name: s for s in specs.build(GRANIAN_DEFAULT)}
    assert specs.V2_ROW_C16 in built["ours-granian-w1"].scenarios
    assert specs.V2_ROW_C16 not in built["ours-waitress"].scenarios
    assert built["ours-rf-batching-on"].command == specs.ours_command("granian", 1, GRANIAN_DEFAULT)
    assert built["ours-payload-drift"].command == built["ours-granian-w1"].command
    with pytest.raises(ValueError, match="cannot start ours on 'gunicorn'"):
        specs.ours_command("gunicorn", 1, WAITRESS_ONLY)


def test_specs_bind_loopback_only_and_payload_spec_passes_issue_20_settings() -> None:
    built = {s.name: s for s in specs.build(WAITRESS_ONLY)}
    for spec in built.values():
        joined = " ".join(spec.command)
        assert "0.0.0.0" not in joined and "{port}" in joined + " ".join(spec.env.values()), spec.name
    assert built["mlserver"].env["MLSERVER_HOST"] == "127.0.0.1"
    payload = built["ours-payload-drift"]
    assert payload.env["IRIS_SERVICE_PAYLOAD_LOG"] == "{payload_log}"
    assert (payload.env["IRIS_SERVICE_PAYLOAD_LOG_SAMPLE"], payload.env["IRIS_SERVICE_DRIFT_ENABLED"]) == ("1.0", "true")
    assert payload.probe_path == "/models/iris/drift"
    # P1's baseline has both off (drift is on by default) and runs beside it, loads alternating.
    off = built["ours-monitoring-off"]
    assert off.env["IRIS_SERVICE_DRIFT_ENABLED"] == "false" and "IRIS_SERVICE_PAYLOAD_LOG" not in off.env
    assert off.command == payload.command and off.paired_with == "ours-payload-drift"
    assert off.scenarios == payload.scenarios == (specs.ROW_C16,)


def _p1_results(applied: bool | None) -> dict[str, Any]:
    drift: dict[str, Any] = {"status": "ok", "scenarios": {"row-c16": {"requests_per_s": 950.0}}}
    if applied is not None:
        drift["settings_applied"] = applied
    return {"servers": {"ours-monitoring-off": {"status": "ok", "scenarios": {"row-c16": {"requests_per_s": 1000.0}}},
                        "ours-payload-drift": drift}}


def test_p1_is_not_judged_when_the_server_ignored_the_settings() -> None:
    (p1,) = [c for c in targets.checks() if c.target == "P1"]
    assert targets.evaluate(_p1_results(True), (p1,))[0]["status"] == "met"  # 0.95x >= 0.9x
    ignored = targets.evaluate(_p1_results(False), (p1,))[0]
    assert ignored["ratio"] == pytest.approx(0.95)
    assert ignored["status"] == "n/a: the server ignored IRIS_SERVICE_PAYLOAD_LOG / DRIFT_ENABLED"
    assert targets.evaluate({"servers": {}}, (p1,))[0]["status"] == "n/a"  # not run at all


def test_settings_applied_holds_only_when_it_held_in_every_round() -> None:
    def entry(n: int, applied: bool) -> dict[str, Any]:
        return {"round": n, "status": "ok", "settings_applied": applied, "probe_status": 200 if applied else 404,
                "scenarios": {}}

    assert rounds.merge_server([entry(1, True), entry(2, True)])["settings_applied"] is True
    merged = rounds.merge_server([entry(1, True), entry(2, False)])
    assert merged["settings_applied"] is False
    results = {"servers": {"ours-payload-drift": merged}}
    assert report.notes(results) == [
        "", "Notes:", "- ours-payload-drift: GET of its probe answered 200/404: the server ignores the settings "
        "passed (not merged yet?), so its figures are those of the settings off"]
    assert "settings_applied" not in rounds.merge_server([{"round": 1, "status": "ok", "scenarios": {}}])


def test_report_gives_each_rounds_req_per_s_and_says_why_a_server_was_skipped() -> None:
    load_rounds = [{"round": n, "requests_per_s": v} for n, v in ((1, 1200.0), (2, 1350.4), (3, 1100.0))]
    assert report.by_round({"rounds": load_rounds}) == "1,200 / 1,350 / 1,100"
    assert report.by_round({}) == "-"
    skipped = {"servers": {"mlserver": {"status": "skipped", "reason": "pip install mlserver failed: no network"}}}
    assert report.notes(skipped) == ["", "Notes:", "- mlserver skipped: pip install mlserver failed: no network"]


def test_grpc_load_shares_callers_out_and_summarises_like_predict_lua() -> None:
    assert grpcload.split(16, 2) == [8, 8]
    assert grpcload.split(5, 2) == [3, 2]
    assert grpcload.split(1, 4) == [1]
    summary = grpcload.summarise([
        {"latencies_us": [100, 300, 200], "failures": 1, "elapsed_s": 2.0},
        {"latencies_us": [400], "failures": 0, "elapsed_s": 4.0},
    ])
    assert (summary["requests"], summary["non2xx"], summary["duration_us"]) == (4, 1, 3.0e6)
    assert (summary["p50_us"], summary["p99_us"], summary["max_us"], summary["mean_us"]) == (300.0, 400.0, 400.0, 250.0)
    assert grpcload.percentile([], 0.99) == 0.0


def test_v2_bodies_are_requests_ours_answers(client: Any, tmp_path: Path) -> None:
    paths = v2bodies.write(tmp_path, ONE_ROW, iris_rows(100))
    row = client.post("/v2/models/iris/infer", data=paths["v2-row"].read_bytes(), content_type="application/json")
    assert row.status_code == 200
    assert row.get_json()["outputs"][0]["name"] == "predict"
    assert row.get_json()["outputs"][0]["data"] == [0]  # the first iris row is a setosa
    headers = load.body_headers(paths["v2-bin-100"])
    assert headers["Content-Type"] == "application/octet-stream"
    binary = client.post("/v2/models/iris/infer", data=paths["v2-bin-100"].read_bytes(), headers=headers)
    assert binary.status_code == 200
    length = int(binary.headers["Inference-Header-Content-Length"])
    header = json.loads(binary.data[:length])
    assert [o["name"] for o in header["outputs"]] == ["predict", "predict_proba"]
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes[1] == 100 * 3 * 8  # three FP64 probabilities a row
    assert len(binary.data) == length + sum(sizes)
    predict = np.frombuffer(binary.data[length:length + sizes[0]], dtype=header["outputs"][0]["datatype"].lower())
    as_json = client.post("/v2/models/iris/infer", data=v2bodies.json_body(iris_rows(100), ("predict",)),
                          content_type="application/json")
    assert predict.tolist() == as_json.get_json()["outputs"][0]["data"]  # the same answers, binary
    assert predict[:50].tolist() == [0] * 50  # the first 50 iris rows are setosa
    assert load.body_headers(paths["v2-row"]) == {}  # a JSON body needs no extra headers


def test_grpc_bodies_carry_the_rows_as_fp64_contents(tmp_path: Path) -> None:
    from iris_service.grpc.proto import inference_pb2 as pb

    paths = v2bodies.write(tmp_path, ONE_ROW, iris_rows(10))
    request = pb.ModelInferRequest.FromString(paths["grpc-10"].read_bytes())
    assert request.model_name == "iris"
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("input-0", "FP64", [10, 4])
    assert list(tensor.contents.fp64_contents) == iris_rows(10).ravel().tolist()
    assert [o.name for o in request.outputs] == ["predict", "predict_proba"]
    row = pb.ModelInferRequest.FromString(paths["grpc-row"].read_bytes())
    assert list(row.inputs[0].contents.fp64_contents) == ONE_ROW and [o.name for o in row.outputs] == ["predict"]


def test_wrk_gets_the_binary_headers_one_per_line(tmp_path: Path) -> None:
    paths = v2bodies.write(tmp_path, ONE_ROW, iris_rows(3))
    command, extra_env = load._command("wrk", 8080, "/v2/models/iris/infer", paths["v2-bin-3"], 1, 2)
    lines = extra_env["BENCH_HEADERS"].splitlines()
    assert lines[0] == "Content-Type: application/octet-stream"
    assert re.fullmatch(r"Inference-Header-Content-Length: \d+", lines[1])
    grpc_command, _ = load._command("grpc", 9000, "", paths["grpc-row"], 16, 2)
    assert grpc_command[1:3] == ["-m", "bench.grpcload"]
    assert grpc_command[grpc_command.index("--concurrency") + 1] == "16"


def test_mlserver_venv_is_installed_once_and_a_failure_is_one_line(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fail(command: list[str], timeout: float) -> str:
        calls.append(command)
        return "" if "venv" in command else "No matching distribution found for mlserver==1.7.*"

    monkeypatch.setattr(mlserver, "_run", fail)
    venv = tmp_path / "venv"
    reason = mlserver.ensure_venv(venv, say=lambda message: None)
    assert reason == ("pip install mlserver==1.7.* mlserver-sklearn==1.7.* uvloop<0.22 failed: "
                      "No matching distribution found for mlserver==1.7.*")
    assert not (venv / ".installed-1.7").exists()
    prepared = mlserver.prepare(venv, tmp_path / "repo", say=lambda message: None)
    assert (prepared.executable, prepared.reason) == (None, reason)
    # Once installed (the marker written), nothing is run again.
    venv.mkdir(exist_ok=True)
    (venv / ".installed-1.7").write_text("done\n")
    calls.clear()
    assert mlserver.ensure_venv(venv, say=lambda message: None) == ""
    assert calls == []


def test_grpc_load_refuses_any_address_but_loopback(tmp_path: Path) -> None:
    import subprocess
    import sys

    body = tmp_path / "body.bin"
    body.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "bench.grpcload", "--host", "10.0.0.1", "--port", "1", "--body-file", str(body)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "the bench only sends load to 127.0.0.1" in done.stderr


def test_describe_serve_reads_the_default_server_however_serve_declares_it() -> None:
    import types

    import click

    def command(default: str | None) -> click.Command:
        @click.command()
        @click.option("--server", type=click.Choice(("granian", "waitress")), default=default)
        def serve(server: str | None) -> None:
            """A serve with a --server option."""

        return serve

    no_constant = types.SimpleNamespace()
    assert specs.describe_serve(command("waitress"), no_constant) == specs.ServeServers("waitress", ("granian", "waitress"))
    # default=None (serve picks): the module's DEFAULT_SERVER, else the first choice, listed default first.
    assert specs.describe_serve(command(None), types.SimpleNamespace(DEFAULT_SERVER="waitress")).default == "waitress"
    assert specs.describe_serve(command(None), no_constant).default == "granian"

    @click.command()
    def old_serve() -> None:
        """serve before --server existed."""

    assert specs.describe_serve(old_serve, no_constant) == specs.ServeServers()


def test_p2_times_explain_and_predict_of_one_body_through_the_app(iris_artifact: Path, tmp_path: Path) -> None:
    """The P2 program ``make bench`` runs each round answers both routes (200) and gives both medians."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IRIS_SERVICE_")},
           "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path / "instance")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.explain_cost", "--json", "--model", str(iris_artifact), "--calls", "1",
         "--rounds", "1", "--rows", "50"],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) == {"explain_ms", "explain_predict_ms"}
    assert all(value > 0 for value in figures.values())
    (p2,) = [c for c in targets.checks() if c.target == "P2"]
    verdict = targets.evaluate({"inprocess": figures}, (p2,))[0]
    assert verdict["ratio"] == pytest.approx(figures["explain_ms"] / figures["explain_predict_ms"])
