"""Bounded work per request: every list a body may carry is measured before anything reads its items.

The body limit counts bytes, not work: 16 MiB of JSON (about 15 KiB gzipped)
holds eight million list items, and each check that converted or named them one
by one cost seconds of CPU, hundreds of MiB, or a message as large as the body.
Each body below is such a request, built at just under ``MAX_CONTENT_LENGTH``;
it must be refused with the protocol's input status and a short message naming
the bound, at a CPU cost within a few times what parsing the body costs. A real
server gets them gzipped while another client's prediction is answered, and its
resident memory stays bounded.
"""
from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
import pytest
import requests
from conftest import FEATURES, KNOWN_ROWS, free_port, run_server, serve_args, server_env

from iris_service.errors import BadRequest
from iris_service.protocols import mlflow, v2
from iris_service.serving import DataPlane, ServingSettings, model_sources
from iris_service.settings import load_settings

MIB = 1 << 20
#: Decompressed size of each amplified body: just under the default 16 MiB MAX_CONTENT_LENGTH.
BODY_SIZE = 16 * MIB - 64 * 1024
ROW, ROW_CLASS, _ = KNOWN_ROWS[0]
OK_TENSOR = b'{"name":"input-0","datatype":"FP64","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}'
SPLIT_COLUMNS = orjson.dumps(list(FEATURES))
#: The longest message a refusal may answer.
MAX_ANSWER = 1000


def items(item: bytes, size: int) -> bytes:
    """A JSON array of ``item`` repeated to fill about ``size`` bytes."""
    count = max(size // (len(item) + 1), 1)
    return b"[" + (item + b",") * (count - 1) + item + b"]"


def keys(value: bytes, size: int) -> bytes:
    """A JSON object of distinct keys ``k0``, ``k1``, ... each mapped to ``value``, about ``size`` bytes."""
    count = size // (len(value) + 12)
    return b"{" + b",".join(b'"k%d":%s' % (i, value) for i in range(count)) + b"}"


def fill(template: bytes, make: Callable[[int], bytes]) -> bytes:
    """``template`` with its ``@`` replaced by what ``make`` builds in the room left under ``BODY_SIZE``."""
    return template.replace(b"@", make(BODY_SIZE - len(template)))


def binary_v2(header: dict, tail: bytes) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(header)
    return head + tail, {"Inference-Header-Content-Length": str(len(head))}


@dataclass(frozen=True)
class Case:
    """One amplified request: where it goes, how it is built, and the refusal it must get."""

    route: str
    content_type: str
    build: Callable[[], bytes | tuple[bytes, dict[str, str]]]
    status: int
    says: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> tuple[bytes, dict[str, str]]:
        built = self.build()
        if isinstance(built, tuple):
            return built[0], {**self.headers, **built[1]}
        return built, dict(self.headers)


V2_INFER = "/v2/models/iris/infer"
V1_PREDICT = "/v1/models/iris:predict"
JSON = "application/json"
CSV = "text/csv"
OCTET = "application/octet-stream"
INT8_ROWS = BODY_SIZE // 4 - 1024

CASES = {
    # MLflow: dataframe_split's index and columns, records' keys, params, a row's width.
    "mlflow-index": Case("/invocations", JSON, lambda: fill(
        b'{"dataframe_split":{"columns":' + SPLIT_COLUMNS + b',"data":[[5.1,3.5,1.4,0.2]],"index":@}}',
        lambda room: items(b"0", room)), 400, "At most 10000 index labels (one per row); got 8"),
    "mlflow-columns": Case("/invocations", JSON, lambda: fill(
        b'{"dataframe_split":{"columns":@,"data":[[1]]}}', lambda room: items(b'"a"', room)),
        400, "At most 64 columns; got 4"),
    "mlflow-records-keys": Case("/invocations", JSON, lambda: fill(
        b'{"dataframe_records":[@]}', lambda room: keys(b"0", room)), 400, "features; at most 64 per row."),
    "mlflow-params": Case("/invocations", JSON, lambda: fill(
        b'{"instances":[[5.1,3.5,1.4,0.2]],"params":@}', lambda room: keys(b"0", room)),
        400, "At most 64 entries; got"),
    "mlflow-width": Case("/invocations", JSON, lambda: fill(
        b'{"instances":[@]}', lambda room: items(b"0", room)), 400, "values; at most 64 per row."),
    # MLflow CSV: lines, blank lines, one wide line, fields past csv's own limit (once a 500).
    "csv-lines": Case("/invocations", CSV, lambda: b"sepal_length\n" + b"1\n" * (BODY_SIZE // 2 - 16),
                      400, "At most 10000 rows per request; the CSV body has more."),
    "csv-blank-lines": Case("/invocations", CSV, lambda: b"sepal_length\n1\n" + b"\n" * (BODY_SIZE - 16),
                            400, "the CSV body has more than 20002 lines."),
    "csv-wide-line": Case("/invocations", CSV, lambda: b"a," * (BODY_SIZE // 2), 400,
                          "CSV line 1 is longer than 65600 characters."),
    "csv-huge-field": Case("/invocations", CSV, lambda: b"sepal_length\n" + b"1" * (BODY_SIZE - 16), 400,
                           "CSV line 2 is longer than 65600 characters."),
    # V2: dimensions, inputs, outputs, parameters, id, declared rows, nested data, binary tails.
    "v2-dimensions": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[{"name":"input-0","datatype":"FP64","shape":@,"data":[1]}]}', lambda room: items(b"1", room)),
        400, "Input 'input-0' has 8"),
    "v2-inputs": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":@}', lambda room: items(b'{"name":"x","datatype":"FP64","shape":[1],"data":[1]}', room)),
        400, "At most 4 inputs for this model; got"),
    "v2-outputs": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[' + OK_TENSOR + b'],"outputs":@}', lambda room: items(b'{"name":"predict"}', room)),
        400, "'outputs' must be a list of at most 2 requested outputs."),
    "v2-parameters": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[' + OK_TENSOR + b'],"parameters":@}', lambda room: keys(b"0", room)),
        400, "The request: 'parameters' has"),
    "v2-id": Case(V2_INFER, JSON, lambda: fill(
        b'{"id":"@","inputs":[' + OK_TENSOR + b"]}", lambda room: b"x" * room), 400, "characters; at most 256."),
    "v2-output-name": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[' + OK_TENSOR + b'],"outputs":[{"name":"@"}]}', lambda room: b"p" * room),
        400, "Output 0: the name is"),
    "v2-input-name": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[{"name":"@","datatype":"FP64","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}',
        lambda room: b"i" * room), 400, "Input 0: the name is"),
    "v2-string-value": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[{"name":"input-0","datatype":"FP64","shape":[1],"data":["@"]}]}', lambda room: b"v" * room),
        400, "Input 'input-0': data must hold numbers only; got"),
    "v2-int8-json": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[{"name":"input-0","datatype":"INT8","shape":[2000000,4],"data":@}]}',
        lambda room: items(b"0", room)), 400, "At most 10000 rows per request; got 2000000."),
    "v2-nested-data": Case(V2_INFER, JSON, lambda: fill(
        b'{"inputs":[{"name":"input-0","datatype":"FP64","shape":[1,4],"data":@}]}',
        lambda room: items(b"[0,0,0,0]", room)), 400, "has shape [1, 4] (4 values) but its data holds more."),
    "v2-int8-binary": Case(V2_INFER, OCTET, lambda: binary_v2(
        {"inputs": [{"name": "input-0", "datatype": "INT8", "shape": [INT8_ROWS, 4],
                     "parameters": {"binary_data_size": INT8_ROWS * 4}}]}, bytes(INT8_ROWS * 4)),
        400, f"At most 10000 rows per request; got {INT8_ROWS}."),
    "v2-binary-tail": Case(V2_INFER, OCTET, lambda: binary_v2(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4],
                     "parameters": {"binary_data_size": 32}}]}, bytes(BODY_SIZE - 256)),
        400, "binary_data_size parameters add up to 32."),
    # V1: columnar keys and column lengths, a row's width.
    "v1-columnar-keys": Case(V1_PREDICT, JSON, lambda: fill(
        b'{"inputs":@}', lambda room: keys(b"[0]", room)), 400, "json.inputs: At most 64 columns; got"),
    "v1-columnar-length": Case(V1_PREDICT, JSON, lambda: fill(
        b'{"inputs":{' + b",".join(b'"%s":@' % f.encode() for f in FEATURES) + b"}}",
        lambda room: items(b"0", room // 4)), 400, "json.inputs: At most 10000 rows per request; got"),
    "v1-width": Case(V1_PREDICT, JSON, lambda: fill(
        b'{"instances":[@]}', lambda room: items(b"0", room)), 400, "values; at most 64 per row."),
    # Native /predict: one row's width and keys, a batch row's keys, unknown top-level keys.
    "predict-width": Case("/predict", JSON, lambda: fill(
        b'{"features":@}', lambda room: items(b"0", room)), 422, "values; at most 64 per row."),
    "predict-keys": Case("/predict", JSON, lambda: fill(
        b'{"features":@}', lambda room: keys(b"0", room)), 422, "features; at most 64 per row."),
    "predict-batch-keys": Case("/predict", JSON, lambda: fill(
        b'{"instances":[@]}', lambda room: keys(b"0", room)), 422, "features; at most 64 per row."),
    "predict-unknown-keys": Case("/predict", JSON, lambda: fill(
        b'{"features":[5.1,3.5,1.4,0.2],@', lambda room: keys(b"0", room)[1:]), 422,
        "Unknown field(s): k0, k1, k2, k3, k4 and"),
}


def parse_cost(case: Case, body: bytes, headers: dict[str, str]) -> float:
    """CPU seconds this process takes to parse the body as the route must (the part the byte limit bounds)."""
    start = time.process_time()
    if case.content_type == CSV:
        body.decode("utf-8")
    else:
        orjson.loads(body[: int(headers.get("Inference-Header-Content-Length", len(body)))])
    return time.process_time() - start


def assert_refused(response, case: Case) -> str:
    text = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
    assert response.status_code == case.status, text[:300]
    assert len(text) < MAX_ANSWER, text[:300]
    assert case.says in text, text
    return text


@pytest.mark.parametrize("name", list(CASES))
def test_amplified_body_is_refused_by_its_bound_before_per_item_work(client, name):
    case = CASES[name]
    body, headers = case.body()
    assert len(body) <= BODY_SIZE
    baseline = parse_cost(case, body, headers)
    start = time.process_time()
    response = client.post(case.route, data=body, content_type=case.content_type, headers=headers)
    spent = time.process_time() - start
    assert_refused(response, case)
    # Generous: the fixed server spends about the parse; converting every item cost 10-50 times more.
    assert spent < 4 * baseline + 1.0, f"{spent:.2f} s of CPU; parsing alone takes {baseline:.2f} s"


@pytest.mark.parametrize("dimensions", [3, 65, 100])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_shape_of_many_dimensions_is_400(client, dimensions, binary):
    spec = {"name": "input-0", "datatype": "FP64", "shape": [1] * dimensions}
    if binary:
        spec["parameters"] = {"binary_data_size": 8}
        body, headers = binary_v2({"inputs": [spec]}, bytes(8))
        response = client.post(V2_INFER, data=body, headers=headers, content_type=OCTET)
    else:
        response = client.post(V2_INFER, json={"inputs": [{**spec, "data": [1.0]}]})
    assert response.status_code == 400
    assert response.get_json() == {
        "error": f"Input 'input-0' has {dimensions} dimensions; this model's inputs have 1 or 2."}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"sepal_length\n" + b"1" * 2000 + b"\n", "CSV line 2 has a field of 2000 characters; at most 1024.",
                     id="field-over-1024"),
        # A quoted field over csv's own limit of 131,072 characters, in lines short enough to be read.
        pytest.param(b'sepal_length\n"' + (b"1" * 60_000 + b"\n") * 3 + b'"\n',
                     "The CSV body cannot be read at line 4: field larger than field limit (131072).",
                     id="field-over-csv-limit"),
        pytest.param(b"sepal_length\r5.1\r", "Missing column(s): sepal_width, petal_length, petal_width. "
                     "Expected: sepal_length, sepal_width, petal_length, petal_width.", id="classic-mac-lines"),
        pytest.param(b",".join(b"c%d" % i for i in range(65)) + b"\n" + b",".join([b"1"] * 65) + b"\n",
                     "CSV line 1 has 65 fields; at most 64.", id="65-columns"),
    ],
)
def test_csv_fields_and_lines_are_bounded(client, body, error):
    response = client.post("/invocations", data=body, content_type=CSV)
    assert response.status_code == 400
    # MLflow's error shape: our error, and its error_code and message beside it.
    assert response.get_json() == {"error": error, "error_code": "BAD_REQUEST", "message": error}


def test_csv_at_the_row_limit_is_served(client):
    body = ",".join(FEATURES) + "\n" + "5.1,3.5,1.4,0.2\n" * 10_000 + "\n"
    response = client.post("/invocations", data=body, content_type=CSV)
    assert response.status_code == 200
    assert response.get_json()["predictions"] == [0] * 10_000
    over = client.post("/invocations", data=body + "5.1,3.5,1.4,0.2\n", content_type=CSV)
    assert over.status_code == 400
    assert over.get_json()["error"] == "At most 10000 rows per request; the CSV body has more."


@pytest.mark.parametrize(
    ("route", "body", "status", "error"),
    [
        pytest.param("/invocations", {"dataframe_split": {"columns": [f"c{i}" for i in range(40)],
                                                          "data": [list(range(40))]}},
                     400, "Missing column(s): sepal_length, sepal_width, petal_length, petal_width; unknown column(s): "
                     "'c0', 'c1', 'c2', 'c3', 'c4' and 35 more. Expected: sepal_length, sepal_width, petal_length, "
                     "petal_width.", id="mlflow-unknown-columns"),
        pytest.param(V1_PREDICT, {"inputs": {f"c{i}": [1.0] for i in range(40)}}, 400,
                     "Missing feature(s): sepal_length, sepal_width, petal_length, petal_width; unknown feature(s): "
                     "c0, c1, c2, c3, c4 and 35 more. Expected: sepal_length, sepal_width, petal_length, petal_width.",
                     id="v1-unknown-columns"),
        pytest.param("/invocations", {"dataframe_split": {"columns": ["x" * 100_000, *FEATURES[1:]],
                                                          "data": [ROW]}},
                     400, f"Missing column(s): sepal_length; unknown column(s): '{'x' * 64}... (100000 characters)'. "
                     "Expected: sepal_length, sepal_width, petal_length, petal_width.", id="long-column-name"),
        pytest.param(V1_PREDICT, {"instances": [ROW], **{f"k{i}": 0 for i in range(9)}}, 400,
                     "json._schema: Unknown field(s): k0, k1, k2, k3, k4 and 4 more.", id="unknown-keys"),
        pytest.param(V1_PREDICT, {"instances": [{"Sepal_Length": 1.0}]}, 400,
                     "Missing feature(s): sepal_length, sepal_width, petal_length, petal_width; unknown feature(s): "
                     "Sepal_Length. Expected: sepal_length, sepal_width, petal_length, petal_width.",
                     id="names-keep-their-case"),
    ],
)
def test_error_messages_name_the_first_offenders_and_a_count(client, route, body, status, error):
    response = client.post(route, json=body)
    assert response.status_code == status
    answer = response.get_json()
    if route == "/invocations":  # MLflow's shape carries its error_code and message too
        assert (answer.pop("error_code"), answer.pop("message")) == ("BAD_REQUEST", error)
    assert answer == {"error": error}


def test_a_long_key_is_clipped_in_field_errors(client):
    response = client.post("/predict", json={"features": {"k" * 100_000: "x"}})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "json": {"features": {f"{'k' * 64}... (100000 characters)": ["Must be a number, not a string."]}}}


def test_up_to_the_bounds_is_still_answered(client):
    """The bounds refuse only what no model takes: a full batch, every list at its longest, is served."""
    records = [dict(zip(FEATURES, ROW, strict=True))] * 10_000
    split = {"columns": list(FEATURES), "data": [ROW] * 10_000, "index": list(range(10_000))}
    assert client.post("/invocations", json={"dataframe_split": split}).get_json()["predictions"] == [0] * 10_000
    assert client.post("/invocations", json={"dataframe_records": records}).status_code == 200
    columnar = {f: [v] * 10_000 for f, v in zip(FEATURES, ROW, strict=True)}
    assert client.post(V1_PREDICT, json={"inputs": columnar}).get_json()["outputs"] == [0] * 10_000
    header = {"id": "r" * 256, "parameters": {f"p{i}": i for i in range(64)},
              "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [10_000, 4],
                          "data": [ROW] * 10_000, "parameters": {f"p{i}": i for i in range(64)}}],
              "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    answer = client.post(V2_INFER, json=header).get_json()
    assert answer["id"] == "r" * 256
    assert answer["outputs"][0]["data"] == [0] * 10_000


@pytest.fixture
def plane(iris_artifact, tmp_path, monkeypatch) -> DataPlane:
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    config = load_settings({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact)})
    return DataPlane.start(model_sources(config), ServingSettings.from_config(config))


def test_the_protocols_bound_what_no_schema_checked(plane):
    """Another front-end (gRPC) hands the protocols bodies no REST schema measured: they bound them too."""
    names = [f"c{i}" for i in range(2_000_000)]
    split = {"dataframe_split": {"columns": names, "data": np.zeros((1, len(names)))}}
    with pytest.raises(BadRequest, match=r"^The request names 2000000 columns; at most 64\. Expected: sepal_length, "):
        plane.infer(None, split, mlflow)
    shape = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1] * 8_000_000, "data": [1.0]}]}
    with pytest.raises(BadRequest, match=r"^Input 'input-0' has 8000000 dimensions; this model's inputs have 1 or 2\.$"):
        plane.infer(None, v2.InferRequest(shape), v2)
    nested = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [[0, 0, 0, 0]] * 10**6}]}
    with pytest.raises(BadRequest, match=r"but its data holds more\.$"):
        plane.infer(None, v2.InferRequest(nested), v2)
    many = {"id": "q", "parameters": {str(i): i for i in range(65)}, "inputs": [{"name": "input-0",
            "datatype": "FP64", "shape": [1, 4], "data": ROW}]}
    with pytest.raises(BadRequest, match=r"^The request: 'parameters' has 65 entries; at most 64\.$"):
        plane.infer(None, v2.InferRequest(many), v2)


# --- a real server --------------------------------------------------------------------------

#: Resident memory the server may grow by over its idle size while refusing the bodies. Parsing one 16 MiB
#: body of four million one-character strings costs about 370 MiB by itself (orjson builds every string
#: before any check can run): the byte limit's share, which this bound allows, and no per-item work on top.
RSS_GROWTH = 512 * MIB
#: Worker threads: one amplified request and one other client at a time (each thread's malloc arena
#: keeps the heap of the largest request it served, so more threads would measure the allocator).
THREADS = "2"
#: Server CPU seconds allowed per amplified body, generous (about 0.4 s each); converting items cost 5-20 s.
CPU_PER_BODY = 1.5


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` size (``VmRSS``, ``VmHWM``) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ = 100 on Linux)


def test_real_server_refuses_gzipped_amplified_bodies_with_bounded_memory_and_keeps_serving(iris_artifact, tmp_path):
    gzipped = {}
    for name, case in CASES.items():
        body, headers = case.body()
        gzipped[name] = (gzip.compress(body, 6), headers)
    assert max(len(z) for z, _ in gzipped.values()) < 4 * MIB  # small on the wire, 16 MiB once inflated
    port = free_port()
    with run_server(serve_args(port, "--server", "waitress", "--threads", THREADS), server_env(iris_artifact, tmp_path), port,
                    output=tmp_path / "server.log") as (base, proc):
        predict = requests.Session()

        def one_prediction() -> None:
            answer = predict.post(base + "/predict", json={"features": ROW}, timeout=60)
            assert answer.status_code == 200, answer.text[:300]
            assert answer.json()["prediction"] == ROW_CLASS

        one_prediction()
        idle = proc_status(proc.pid, "VmRSS")
        cpu_before = cpu_seconds(proc.pid)
        failures: list[str] = []

        def send_amplified() -> None:
            with requests.Session() as session:
                for name, (zipped, headers) in gzipped.items():
                    case = CASES[name]
                    try:
                        response = session.post(base + case.route, data=zipped, timeout=120, headers={
                            **headers, "Content-Type": case.content_type, "Content-Encoding": "gzip"})
                        assert_refused(response, case)
                    except (AssertionError, requests.RequestException) as exc:
                        failures.append(f"{name}: {exc}")

        sender = threading.Thread(target=send_amplified)
        sender.start()
        answered_meanwhile = 0
        for _ in range(5000):  # bounded; the sender ends first
            if not sender.is_alive():
                break
            one_prediction()
            answered_meanwhile += int(sender.is_alive())
        sender.join(timeout=600)
        assert not sender.is_alive()
        spent = cpu_seconds(proc.pid) - cpu_before
        peak = proc_status(proc.pid, "VmHWM")
        one_prediction()
        assert failures == []
        assert answered_meanwhile >= 1
        assert peak - idle < RSS_GROWTH, f"peak RSS {peak / MIB:.0f} MiB, idle {idle / MIB:.0f} MiB"
        assert spent < CPU_PER_BODY * len(CASES), f"{spent:.1f} s of server CPU for {len(CASES)} bodies"
