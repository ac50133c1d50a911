"""What explanations need is stored at train and register time, in the manifest, and covered by its checks."""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from iris_service.artifacts import load_verified, manifest_path
from iris_service.artifacts.background import BACKGROUND_ROWS, _digest
from iris_service.artifacts.signing import load_private_key, load_trusted_keys, sign_artifact, write_keypair
from iris_service.cli import main
from iris_service.errors import ArtifactError
from iris_service.training import DEFAULT_SEED, TEST_SIZE

IRIS = load_iris()
SETOSA = KNOWN_ROWS[0][0]


def edit_manifest(artifact: Path, change) -> None:
    path = manifest_path(artifact)
    data = json.loads(path.read_bytes())
    change(data)
    path.write_text(json.dumps(data))


def test_train_stores_the_training_means_and_a_sample_of_training_rows(iris_artifact):
    x_train, _, _, _ = train_test_split(IRIS.data, IRIS.target, test_size=TEST_SIZE, random_state=DEFAULT_SEED,
                                        stratify=IRIS.target)
    block = json.loads(manifest_path(iris_artifact).read_bytes())["explain"]
    assert block["feature_names"] == list(FEATURES)
    assert np.allclose(block["feature_means"], x_train.mean(axis=0), rtol=0, atol=1e-12)
    assert block["rows"] == len(x_train) == 120 and block["source"] == "training rows"
    assert len(block["background"]) == BACKGROUND_ROWS
    training_rows = {tuple(row) for row in x_train.tolist()}
    assert all(tuple(row) in training_rows for row in block["background"])
    assert block["sha256"] == _digest(block)


def test_training_rows_are_not_published_with_the_model(client):
    detail = client.get("/models/iris").get_json()
    assert "explain" not in detail and "background" not in json.dumps(detail)


@pytest.mark.parametrize("change", [
    lambda block: block["feature_means"].__setitem__(0, block["feature_means"][0] + 0.5),
    lambda block: block["background"].pop(),
    lambda block: block["background"][3].__setitem__(2, 99.0),
    lambda block: block.__setitem__("source", "elsewhere"),
], ids=["mean", "row-removed", "row-edited", "source"])
def test_edited_explanation_data_is_refused_at_load(artifact, change):
    edit_manifest(artifact, lambda data: change(data["explain"]))
    with pytest.raises(ArtifactError) as refused:
        load_verified(artifact)
    assert refused.value.message == (
        "Manifest model.joblib.json: the explanation data does not match its SHA-256. Refusing to load model.joblib."
    )


def test_explanation_data_that_does_not_fit_the_model_is_refused(artifact):
    """A block with a recomputed digest but the wrong width is still refused, and named."""
    def change(data):
        block = data["explain"]
        block["feature_means"] = block["feature_means"][:3]
        block["sha256"] = _digest(block)

    edit_manifest(artifact, change)
    with pytest.raises(ArtifactError) as refused:
        load_verified(artifact)
    assert refused.value.message == (
        "Manifest model.joblib.json: the explanation data does not fit the model's 4 features. "
        "Refusing to load model.joblib."
    )


def test_a_refused_reload_keeps_the_old_model_explaining(artifact, monkeypatch, tmp_path):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app_for_test({"TESTING": True, "MODEL_PATH": str(artifact), "ADMIN_TOKEN": "t"})
    client = app.test_client()
    before = client.post("/models/iris/explain", json={"features": SETOSA}).get_json()
    edit_manifest(artifact, lambda data: data["explain"]["feature_means"].__setitem__(1, 0.0))
    reload = client.post("/admin/models/iris/reload", headers={"Authorization": "Bearer t"})
    assert reload.status_code == 409
    assert "explanation data does not match its SHA-256" in reload.get_json()["message"]
    assert client.post("/models/iris/explain", json={"features": SETOSA}).get_json() == before


def test_the_signature_covers_the_explanation_data(artifact, tmp_path):
    """Recomputing the block's digest does not help: the signed manifest bytes changed."""
    private, public, _ = write_keypair(tmp_path / "keys" / "ours.key")
    sign_artifact(artifact, load_private_key(private))
    keys = load_trusted_keys([public])
    assert load_verified(artifact, trusted_keys=keys).manifest.explain["feature_means"]

    def change(data):
        data["explain"]["feature_means"][0] = 0.0
        data["explain"]["sha256"] = _digest(data["explain"])

    edit_manifest(artifact, change)
    load_verified(artifact)  # consistent on its own...
    with pytest.raises(ArtifactError) as refused:
        load_verified(artifact, trusted_keys=keys)  # ...but no longer what was signed
    assert "signature" in refused.value.message


@pytest.fixture
def pickled(tmp_path) -> Path:
    """A notebook's model fitted on a frame: its manifest takes the frame's feature names."""
    import pandas as pd

    source = tmp_path / "notebook.pkl"
    frame = pd.DataFrame(IRIS.data, columns=list(FEATURES))
    joblib.dump(LogisticRegression(max_iter=300).fit(frame, IRIS.target), source)
    return source


def register(source: Path, models: Path, *extra: str):
    return CliRunner().invoke(main, ["register", str(source), "--name", "nb", "--version", "1", "--model-dir",
                                     str(models), "--trust", *extra], catch_exceptions=False)


def test_register_with_background_stores_it_and_explains(pickled, tmp_path, monkeypatch):
    csv = tmp_path / "train.csv"
    # Any column order, extra columns (the label) ignored.
    lines = ["species," + ",".join(reversed(FEATURES))] + [
        f"{IRIS.target_names[y]}," + ",".join(str(v) for v in reversed(row))
        for row, y in zip(IRIS.data.tolist(), IRIS.target, strict=True)
    ]
    csv.write_text("\n".join(lines) + "\n")
    result = register(pickled, tmp_path / "models", "--background", str(csv))
    assert result.exit_code == 0, result.output
    artifact = tmp_path / "models" / "nb" / "1" / "model.pkl"
    block = load_verified(artifact).manifest.explain
    assert block["source"] == "train.csv" and block["rows"] == 150
    assert np.allclose(block["feature_means"], IRIS.data.mean(axis=0), rtol=0, atol=1e-12)

    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    client = create_app_for_test({"TESTING": True, "MODEL_DIR": str(tmp_path / "models"),
                                  "DEFAULT_MODEL": "nb"}).test_client()
    answer = client.post("/models/nb/explain", json={"features": SETOSA}).get_json()
    assert answer["label"] == "0" and answer["method"] == "linear"  # a registered model names classes by value
    # The same rows give drift tracking its deciles: a registered model is tracked like a trained one.
    assert client.post("/models/nb/predict", json={"instances": IRIS.data[:120].tolist()}).status_code == 200
    tracked = client.get("/models/nb/drift").get_json()
    assert tracked["tracked"] is True and tracked["rows"] == 120
    assert set(tracked["features"]) == set(FEATURES)
    assert all(f["out_of_range_share"] == 0.0 for f in tracked["features"].values())


def test_register_without_background_explains_nothing_and_says_how_to_fix_it(pickled, tmp_path, monkeypatch):
    assert register(pickled, tmp_path / "models").exit_code == 0
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    client = create_app_for_test({"TESTING": True, "MODEL_DIR": str(tmp_path / "models"),
                                  "DEFAULT_MODEL": "nb"}).test_client()
    response = client.post("/models/nb/explain", json={"features": SETOSA})
    assert response.status_code == 501
    assert "register it again with --background FILE" in response.get_json()["message"]
    assert client.post("/models/nb/predict", json={"features": SETOSA}).status_code == 200


@pytest.mark.parametrize(("content", "says"), [
    ("sepal_length,sepal_width,petal_length\n1,2,3\n",
     "Background file bg.csv has no column petal_width; its header must name the model's features: "
     "sepal_length, sepal_width, petal_length, petal_width."),
    (",".join(FEATURES) + "\n1,2,3,abc\n", "Background file bg.csv, line 2: 'abc' is not a number."),
    (",".join(FEATURES) + "\n1,2,3,inf\n", "Background file bg.csv, line 2: 'inf' is not a finite number."),
    (",".join(FEATURES) + "\n", "Background file bg.csv has a header but no rows."),
    ("", "Background file bg.csv is empty."),
], ids=["missing-column", "not-a-number", "infinite", "no-rows", "empty"])
def test_a_bad_background_file_is_one_line_and_writes_nothing(pickled, tmp_path, content, says):
    csv = tmp_path / "bg.csv"
    csv.write_text(content)
    result = register(pickled, tmp_path / "models", "--background", str(csv))
    assert result.exit_code == 1
    assert result.output == f"Error: {says}\n"
    assert not (tmp_path / "models" / "nb" / "1" / "model.pkl").exists()
