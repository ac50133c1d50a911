"""``iris-service predict-file --explain``: one ``contribution_<feature>`` column per feature, as the API's."""
from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import FEATURES, KNOWN_ROWS
from sklearn.neighbors import KNeighborsClassifier
from test_explain import write_model

from iris_service.cli import main

OUTPUT_COLUMNS = ["prediction", "label", "proba_setosa", "proba_versicolor", "proba_virginica"]
CONTRIBUTIONS = [f"contribution_{name}" for name in FEATURES]


def env_for(artifact, tmp_path) -> dict[str, str]:
    return {"IRIS_SERVICE_ENV": "production", "IRIS_SERVICE_MODEL_PATH": str(artifact),
            "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path / "instance")}


def predict_file(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, ["predict-file", *args], env=env, catch_exceptions=False)


def test_explain_adds_the_predicted_class_contributions(iris_artifact, client, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    rows = [dict(zip(FEATURES, row, strict=True), id=f"r{i}") for i, (row, _, _) in enumerate(KNOWN_ROWS * 2)]
    pd.DataFrame(rows)[["id", "petal_width", "sepal_length", "petal_length", "sepal_width"]].to_csv(source, index=False)
    result = predict_file(env_for(iris_artifact, tmp_path), str(source), "--out", str(out), "--explain",
                          "--chunk-size", "4")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["id", "petal_width", "sepal_length", "petal_length", "sepal_width",
                                    *OUTPUT_COLUMNS, *CONTRIBUTIONS]
    for i, (row, index, label) in enumerate(KNOWN_ROWS * 2):
        api = client.post("/models/iris/explain", json={"features": row}).get_json()
        assert (scored["prediction"][i], scored["label"][i]) == (index, label)
        for j, column in enumerate(CONTRIBUTIONS):
            assert scored[column][i] == pytest.approx(api["contributions"][index][j], rel=1e-12, abs=1e-15)


def test_explain_with_skipped_rows_and_an_empty_file(iris_artifact, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    source.write_text(",".join(FEATURES) + "\n5.1,3.5,1.4,0.2\n5.1,,1.4,0.2\n")
    result = predict_file(env_for(iris_artifact, tmp_path), str(source), "--out", str(out), "--explain",
                          "--on-error", "skip")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert len(scored) == 1 and list(scored.columns)[-4:] == CONTRIBUTIONS
    assert scored["contribution_petal_length"][0] > 0  # a short petal is what makes a setosa

    empty, empty_out = tmp_path / "empty.csv", tmp_path / "empty-scored.csv"
    empty.write_text(",".join(FEATURES) + "\n")
    assert predict_file(env_for(iris_artifact, tmp_path), str(empty), "--out", str(empty_out),
                        "--explain").exit_code == 0
    assert list(pd.read_csv(empty_out).columns) == [*FEATURES, *OUTPUT_COLUMNS, *CONTRIBUTIONS]


def test_explain_with_a_model_that_cannot_be_explained_fails_before_writing(tmp_path):
    artifact = write_model(tmp_path / "knn", KNeighborsClassifier())
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    source.write_text(",".join(FEATURES) + "\n5.1,3.5,1.4,0.2\n")
    result = predict_file(env_for(artifact, tmp_path), str(source), "--out", str(out), "--explain")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Model 'knn' 1 is a KNeighborsClassifier; explanations are computed for")
    assert not out.exists()


def test_dask_engine_writes_the_same_contributions_as_the_local_one(iris_artifact, tmp_path):
    pytest.importorskip("distributed")
    from iris_service.artifacts import load_verified
    from iris_service.offline.files import score_file, score_file_dask
    from iris_service.runtime import from_artifact

    model = from_artifact(load_verified(iris_artifact))
    source = tmp_path / "in.csv"
    pd.DataFrame([row for row, _, _ in KNOWN_ROWS * 3], columns=list(FEATURES)).to_csv(source, index=False)
    score_file(source, tmp_path / "local.csv", model, progress=False, explain=True)
    score_file_dask(source, tmp_path / "dask_out", model, blocksize=64, explain=True)
    parts = sorted((tmp_path / "dask_out").glob("part.*.csv"))
    assert len(parts) > 1  # really partitioned
    dask = pd.concat([pd.read_csv(part) for part in parts], ignore_index=True)
    local = pd.read_csv(tmp_path / "local.csv")
    assert list(dask.columns) == list(local.columns) == [*FEATURES, *OUTPUT_COLUMNS, *CONTRIBUTIONS]
    pd.testing.assert_frame_equal(dask, local)
