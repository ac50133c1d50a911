"""The data plane without Flask: what a gRPC servicer or a queue consumer gets, the same answers as REST."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import KNOWN_ROWS, ROOT

from iris_service.errors import BadRequest, InvalidInput, ModelNotFound, ModelNotReady
from iris_service.protocols import native, v2
from iris_service.protocols.rows import positional_rows
from iris_service.serving import DataPlane, ServingSettings, model_sources
from iris_service.settings import load_settings


@pytest.fixture
def plane(iris_artifact, tmp_path, monkeypatch) -> DataPlane:
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    config = load_settings({"ENV_NAME": "production", "MODEL_PATH": str(iris_artifact), "MAX_BATCH_SIZE": 2,
                            "INPUT_RANGE_POLICY": "reject"})
    return DataPlane.start(model_sources(config), ServingSettings.from_config(config))


def tensor_request(rows: list[list[float]], datatype: str = "FP64") -> v2.InferRequest:
    header = {"id": "q1", "inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": datatype,
                                      "data": rows}], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    return v2.InferRequest(header)


def test_v2_through_the_data_plane_answers_as_rest_does(plane, client):
    rows = [row for row, _, _ in KNOWN_ROWS[:2]]
    result = plane.infer("iris", tensor_request(rows), v2)
    assert (result.model.name, result.rows) == ("iris", 2)
    assert result.class_counts() == [("setosa", 1), ("versicolor", 1)]
    header = result.answer.header
    rest = client.post("/v2/models/iris/infer", json=tensor_request(rows).header).get_json()
    assert header["id"] == rest["id"] == "q1"
    assert [o["name"] for o in header["outputs"]] == ["predict", "predict_proba"]
    assert np.asarray(header["outputs"][0]["data"]).tolist() == rest["outputs"][0]["data"] == [0, 1]
    assert np.asarray(header["outputs"][1]["data"]).tolist() == rest["outputs"][1]["data"]


def test_the_data_plane_applies_its_own_settings(plane):
    with pytest.raises(BadRequest, match=r"^At most 2 rows per request; got 3\.$"):
        plane.infer(None, tensor_request([[5.1, 3.5, 1.4, 0.2]] * 3), v2)
    with pytest.raises(BadRequest, match=r"^Row 0: petal_width: Must be between 0\.1 and 2\.5 \(the training range\); got 9\.$"):
        plane.infer(None, tensor_request([[5.1, 3.5, 1.4, 9.0]]), v2)
    # The native protocol takes bodies its REST schema validated (rows already a float64 array).
    single = {"features": positional_rows([[5.1, 3.5, 1.4, 9.0]], single=True)}
    with pytest.raises(InvalidInput, match=r"^petal_width: Must be between 0\.1 and 2\.5 \(the training range\); got 9\.$"):
        plane.infer(None, single, native)
    with pytest.raises(ModelNotFound):
        plane.infer("nope", single, native)
    plane.unload("iris")
    assert plane.unready() == {"iris": "unloaded"}
    with pytest.raises(ModelNotReady):
        plane.model()
    assert plane.load("iris").version == "1" and plane.ready()


def test_v2_header_checks_need_no_web_framework(plane):
    """What the marshmallow schema checks for REST, the V2 unit checks for any front-end, with 400s."""
    bad = [
        ({"inputs": []}, "'inputs' must be a non-empty list of tensors."),
        ({"inputs": [{"name": "input-0", "shape": [1] * 65, "datatype": "FP64", "data": [1]}]},
         "Input 'input-0' has 65 dimensions; this model's inputs have 1 or 2."),
        ({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "data": [1]}]},
         "Input 'input-0': datatype 'BYTES' is not one of"),
        ({"inputs": [{"name": "input-0", "shape": [-1, 4], "datatype": "FP64", "data": [1]}]},
         "Input 'input-0': 'shape' must be a list of whole numbers >= 0."),
        ({"inputs": [{"name": str(i), "shape": [1], "datatype": "FP64", "data": [1]} for i in range(9)]},
         "At most 4 inputs for this model; got 9."),
    ]
    for header, message in bad:
        with pytest.raises(BadRequest) as refused:
            plane.infer("iris", v2.InferRequest(header), v2)
        assert refused.value.message.startswith(message)


def test_importing_the_data_plane_loads_no_web_framework():
    code = ("import sys, iris_service.serving, iris_service.protocols.v2; "
            "print([m for m in ('flask', 'werkzeug', 'flask_smorest') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
