"""The exact numpy path: same answers as scikit-learn, or scikit-learn itself."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import FEATURES, KNOWN_ROWS
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_service.artifacts import describe_estimator, dump_joblib, load_verified, write_artifact
from iris_service.protocols import Decoded, native
from iris_service.runtime import Prediction, SklearnModel, from_artifact, linear
from iris_service.runtime.linear import LinearModel, accelerate, check_sample

IRIS_X, IRIS_Y = load_iris(return_X_y=True)


def _sklearn(path: Path) -> SklearnModel:
    artifact = load_verified(path)
    return SklearnModel(artifact.obj, artifact.manifest)


def _artifact(tmp_path: Path, estimator: object, classes: list[str]) -> Path:
    path = tmp_path / "model.joblib"
    manifest = describe_estimator(
        estimator, name="m", version="1", fmt="joblib", feature_names=list(FEATURES), class_names=classes
    )
    write_artifact(path, dump_joblib(estimator), manifest)
    return path


def test_the_default_model_is_served_by_the_numpy_path(iris_artifact: Path) -> None:
    model = from_artifact(load_verified(iris_artifact))
    assert isinstance(model, LinearModel)


def test_numpy_path_matches_scikit_learn_on_iris_and_random_rows(iris_artifact: Path) -> None:
    reference = _sklearn(iris_artifact)
    fast = LinearModel(reference.estimator, reference.manifest)
    rng = np.random.default_rng(7)
    rows = np.concatenate([IRIS_X, rng.normal(5, 3, size=(500, 4)), rng.normal(0, 1e3, size=(50, 4))])
    for x in (rows, rows[:1], rows[77:78]):
        want, got = reference.predict(x), fast.predict(x)
        assert np.array_equal(want.classes, got.classes)
        assert np.max(np.abs(want.probabilities - got.probabilities)) <= 1e-9


def test_binary_logistic_regression_takes_the_numpy_path_exactly(tmp_path: Path) -> None:
    binary = IRIS_Y < 2
    estimator = LogisticRegression(max_iter=500).fit(IRIS_X[binary], IRIS_Y[binary])
    path = _artifact(tmp_path, estimator, ["setosa", "versicolor"])
    model = from_artifact(load_verified(path))
    assert isinstance(model, LinearModel)
    got = model.predict(IRIS_X)
    assert np.array_equal(got.classes, estimator.predict(IRIS_X))
    assert np.max(np.abs(got.probabilities - estimator.predict_proba(IRIS_X))) <= 1e-9


def test_a_disagreeing_numpy_path_falls_back_to_scikit_learn(
    iris_artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(linear, "TOLERANCE", -1.0)  # no path can be this exact
    with caplog.at_level(logging.WARNING, logger="iris_service.runtime.linear"):
        model = from_artifact(load_verified(iris_artifact))
    assert type(model) is SklearnModel
    assert "keeps scikit-learn" in caplog.text


def test_other_estimators_keep_scikit_learn(forest_artifact: Path, tmp_path: Path) -> None:
    class Tweaked(LogisticRegression):
        def predict_proba(self, X):  # noqa: N803 - scikit-learn's name
            return super().predict_proba(X)

    assert type(from_artifact(load_verified(forest_artifact))) is SklearnModel
    tweaked = Tweaked(max_iter=500).fit(IRIS_X, IRIS_Y)
    assert type(accelerate(SklearnModel(tweaked, load_verified(forest_artifact).manifest))) is SklearnModel


def test_check_sample_spans_the_manifest_ranges(iris_artifact: Path) -> None:
    model = _sklearn(iris_artifact)
    sample = check_sample(model)
    assert sample.shape[1] == 4 and np.isfinite(sample).all()
    assert (sample.min(axis=0) <= IRIS_X.min(axis=0)).all()
    assert (sample.max(axis=0) >= IRIS_X.max(axis=0)).all()


@pytest.mark.parametrize("row,index,label", KNOWN_ROWS)
def test_predict_answers_the_known_rows_on_the_numpy_path(client, row, index, label) -> None:
    response = client.post("/predict", json={"features": row})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["prediction"], body["label"]) == (index, label)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


def test_a_large_batch_answers_what_scikit_learn_answers(client, iris_artifact: Path) -> None:
    rows = np.resize(IRIS_X, (1000, 4))
    response = client.post("/predict", json={"instances": rows.tolist()})
    assert response.status_code == 200
    body = response.get_json()
    estimator = _sklearn(iris_artifact).estimator
    proba = estimator.predict_proba(rows)
    names = ("setosa", "versicolor", "virginica")
    assert [p["prediction"] for p in body["predictions"]] == proba.argmax(axis=1).tolist()
    assert [p["label"] for p in body["predictions"]] == [names[i] for i in proba.argmax(axis=1)]
    got = np.array([[p["probabilities"][n] for n in names] for p in body["predictions"]])
    assert np.max(np.abs(got - proba)) <= 1e-9
    assert (body["model"], body["version"]) == ("iris", "1")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_bytes_are_those_of_the_row_objects(iris_artifact: Path, dtype: type) -> None:
    """The spliced JSON of a large batch equals orjson's dump of the per-row dicts."""
    model = _sklearn(iris_artifact)
    rng = np.random.default_rng(3)
    proba = rng.dirichlet([0.3, 0.3, 0.3], size=300).astype(dtype)
    proba[0] = [1e-300, 5e-324, 1.0] if dtype is np.float64 else [1e-30, 0.0, 1.0]
    proba[1] = [0.0, 1.0, 0.0]
    prediction = Prediction(classes=proba.argmax(axis=1), probabilities=proba)
    decoded = Decoded(np.zeros((300, 4)))
    answer = native.encode(prediction, model, decoded)
    expected = {"predictions": native.rows_of(prediction, model), "model": "iris", "version": "1"}
    assert orjson.dumps(answer) == orjson.dumps(expected)


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
@pytest.mark.parametrize("rows", [1, 2, 64, 257])
def test_spliced_rows_are_the_row_objects_for_any_class_count(classes: int, rows: int) -> None:
    """Every splice point: the first and last row, one row, one class (a number that is both)."""
    names = tuple(f"class {i}" for i in range(classes))
    proba = np.random.default_rng(rows * 10 + classes).dirichlet([0.5] * classes, size=rows)
    proba[0, 0] = 5e-324 if classes > 1 else 1.0
    predicted = proba.argmax(axis=1)
    expected = [
        {"prediction": int(c), "label": names[c], "probabilities": dict(zip(names, p, strict=True))}
        for c, p in zip(predicted, proba.tolist(), strict=True)
    ]
    assert orjson.dumps(native.rows_fragment(predicted, proba, names)) == orjson.dumps(expected)


def test_one_row_path_matches_scikit_learn_row_by_row(iris_artifact: Path, tmp_path: Path) -> None:
    binary = IRIS_Y < 2
    two_classes = LogisticRegression(max_iter=500).fit(IRIS_X[binary], IRIS_Y[binary])
    models = [
        _sklearn(iris_artifact).estimator,
        load_verified(_artifact(tmp_path, two_classes, ["setosa", "versicolor"])).obj,
    ]
    rng = np.random.default_rng(11)
    rows = np.concatenate([IRIS_X, rng.normal(5, 3, size=(200, 4)), rng.normal(0, 1e3, size=(20, 4))])
    for estimator in models:
        fast = LinearModel(estimator, load_verified(iris_artifact).manifest)
        want = estimator.predict_proba(rows)
        for i in range(len(rows)):
            got = fast.predict(rows[i : i + 1])
            assert got.classes.tolist() == [int(np.argmax(want[i]))]
            assert np.max(np.abs(got.probabilities[0] - want[i])) <= 1e-12


def test_one_row_path_saturates_instead_of_overflowing(tmp_path: Path) -> None:
    binary = IRIS_Y < 2
    estimator = LogisticRegression(max_iter=500).fit(IRIS_X[binary], IRIS_Y[binary])
    model = from_artifact(load_verified(_artifact(tmp_path, estimator, ["setosa", "versicolor"])))
    assert isinstance(model, LinearModel)
    for row, cls in (([1e6, -1e6, 1e6, 1e6], 1), ([-1e6, 1e6, -1e6, -1e6], 0)):
        got = model.predict(np.array([row]))
        assert got.classes.tolist() == [cls]
        assert got.probabilities.tolist() == estimator.predict_proba([row]).tolist()


def test_a_disagreeing_one_row_path_falls_back_to_scikit_learn(
    iris_artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    exact = LinearModel._predict_row

    def off_by_a_little(self: LinearModel, row: list[float]) -> Prediction:
        answer = exact(self, row)
        return Prediction(classes=answer.classes, probabilities=answer.probabilities + 1e-6)

    monkeypatch.setattr(LinearModel, "_predict_row", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="iris_service.runtime.linear"):
        model = from_artifact(load_verified(iris_artifact))
    assert type(model) is SklearnModel
    assert "in probability on row 0" in caplog.text
