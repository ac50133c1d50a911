"""``POST /models/<name>/explain`` and V1 ``:explain``: exact linear contributions, TreeSHAP for trees, 501 else."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test
from sklearn.datasets import load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from iris_service.artifacts import describe_estimator, dump_joblib, write_artifact
from iris_service.artifacts.background import with_explanation_data

IRIS = load_iris()
X = np.asarray(IRIS.data, dtype=np.float64)
Y = IRIS.target
#: Training rows and 40 rows the models never saw, some outside the training ranges.
FRESH = np.random.default_rng(7).uniform(X.min(axis=0) - 1, X.max(axis=0) + 1, size=(40, 4))
ROWS = [row for row, _, _ in KNOWN_ROWS]
SUPPORTED_NAMES = ("LogisticRegression", "RandomForestClassifier", "HistGradientBoostingClassifier")


def write_model(folder: Path, estimator: Any, *, binary: bool = False, explain: bool = True,
                regression: bool = False) -> Path:
    """Fit ``estimator`` on Iris (class 2 against the rest when ``binary``) and write a verified artifact."""
    y = X[:, 0] if regression else ((Y == 2).astype(int) if binary else Y)
    estimator.fit(X, y)
    names = None if regression else (["other", "virginica"] if binary else list(IRIS.target_names))
    manifest = describe_estimator(estimator, name=folder.name, version="1", fmt="joblib",
                                  feature_names=list(FEATURES), class_names=names)
    if explain:
        manifest = with_explanation_data(manifest, X)
    path = folder / "model.joblib"
    folder.mkdir(parents=True)
    write_artifact(path, dump_joblib(estimator), manifest)
    return path


def serve(tmp_path: Path, iris_artifact: Path, **models: Path):
    return create_app_for_test({"TESTING": True, "MODEL_PATH": str(iris_artifact),
                                "MODELS": {name: str(path) for name, path in models.items()}}).test_client()


def explained(client, name: str, rows: Any) -> dict[str, Any]:
    response = client.post(f"/models/{name}/explain", json={"instances": np.asarray(rows).tolist()})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def per_class_scores(scores: Any) -> np.ndarray:
    """A binary model's one decision score ``d`` as the two classes' scores ``[-d, d]``."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


def totals(answer: dict[str, Any]) -> np.ndarray:
    contributions = np.array([row["contributions"] for row in answer["explanations"]])
    return np.asarray(answer["baseline"]) + contributions.sum(axis=2)


LINEAR = {
    "logreg-multiclass": (lambda: LogisticRegression(max_iter=500), False),
    "logreg-binary": (lambda: LogisticRegression(max_iter=500), True),
    "scaled-logreg-multiclass": (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), False),
    "scaled-logreg-binary": (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), True),
    "minmax-linear-svc-binary": (lambda: make_pipeline(MinMaxScaler(), LinearSVC()), True),
    "sgd-multiclass": (lambda: SGDClassifier(random_state=0), False),
    "ridge-classifier-multiclass": (lambda: RidgeClassifier(), False),
}


@pytest.mark.parametrize("kind", list(LINEAR))
def test_linear_contributions_add_up_to_the_decision_function(tmp_path, iris_artifact, kind):
    make, binary = LINEAR[kind]
    estimator = make()
    client = serve(tmp_path, iris_artifact, m=write_model(tmp_path / "m", estimator, binary=binary))
    rows = np.vstack([X, FRESH])
    answer = explained(client, "m", rows)

    expected = per_class_scores(estimator.decision_function(rows))
    assert answer["method"] == "linear" and answer["output"] == "decision_function"
    assert answer["features"] == list(FEATURES)
    assert np.max(np.abs(totals(answer) - expected)) <= 1e-9
    assert np.max(np.abs(np.array([r["scores"] for r in answer["explanations"]]) - expected)) <= 1e-9
    predicted = client.post("/models/m/predict", json={"instances": rows.tolist()}).get_json()["predictions"]
    assert [r["prediction"] for r in answer["explanations"]] == [p["prediction"] for p in predicted]
    assert [r["label"] for r in answer["explanations"]] == [p["label"] for p in predicted]


def test_scaled_contributions_are_coefficient_times_scaled_distance_from_the_mean(tmp_path, iris_artifact):
    """With a scaler the contributions live in the space the coefficients see: t(x) - t(training mean)."""
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    client = serve(tmp_path, iris_artifact, m=write_model(tmp_path / "m", estimator))
    answer = client.post("/models/m/explain", json={"features": ROWS[2]}).get_json()

    scaler, logreg = estimator[0], estimator[-1]
    t, mean = scaler.transform([ROWS[2]])[0], scaler.transform([X.mean(axis=0)])[0]
    assert np.allclose(answer["contributions"], logreg.coef_ * (t - mean), rtol=0, atol=1e-12)
    assert np.allclose(answer["baseline"], logreg.coef_ @ mean + logreg.intercept_, rtol=0, atol=1e-12)
    assert answer["prediction"] == 2 and answer["label"] == "virginica"


def test_binary_class_zero_score_is_the_negated_decision_function(tmp_path, iris_artifact):
    estimator = LogisticRegression(max_iter=500)
    client = serve(tmp_path, iris_artifact, m=write_model(tmp_path / "m", estimator, binary=True))
    answer = client.post("/models/m/explain", json={"features": ROWS[0]}).get_json()
    d = float(estimator.decision_function([ROWS[0]])[0])
    assert answer["classes"] == ["other", "virginica"]
    assert answer["scores"] == pytest.approx([-d, d], abs=1e-12)
    assert np.allclose(answer["contributions"][0], -np.asarray(answer["contributions"][1]), rtol=0, atol=0)
    assert answer["label"] == "other"


TREES = {
    "random-forest": (lambda: RandomForestClassifier(n_estimators=30, random_state=0), False, "probability"),
    "random-forest-binary": (lambda: RandomForestClassifier(n_estimators=30, random_state=0), True, "probability"),
    "extra-trees": (lambda: ExtraTreesClassifier(n_estimators=20, random_state=0), False, "probability"),
    "decision-tree": (lambda: DecisionTreeClassifier(random_state=0), False, "probability"),
    "gradient-boosting-binary": (lambda: GradientBoostingClassifier(n_estimators=30, random_state=0), True,
                                 "decision_function"),
    "hist-gradient-boosting": (lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), False,
                               "decision_function"),
}


@pytest.mark.parametrize("kind", list(TREES))
def test_tree_shap_adds_up_to_the_model_output(tmp_path, iris_artifact, kind):
    make, binary, output = TREES[kind]
    estimator = make()
    client = serve(tmp_path, iris_artifact, m=write_model(tmp_path / "m", estimator, binary=binary))
    rows = np.vstack([X, FRESH])
    answer = explained(client, "m", rows)

    raw = estimator.predict_proba(rows) if output == "probability" else estimator.decision_function(rows)
    expected = per_class_scores(raw)
    assert answer["method"] == "tree_path_dependent" and answer["output"] == output
    assert np.max(np.abs(totals(answer) - expected)) <= 1e-6
    predicted = client.post("/models/m/predict", json={"instances": rows.tolist()}).get_json()["predictions"]
    assert [r["prediction"] for r in answer["explanations"]] == [p["prediction"] for p in predicted]


UNSUPPORTED = {
    "k-neighbors": (lambda: KNeighborsClassifier(), "a KNeighborsClassifier"),
    "rbf-svc": (lambda: SVC(kernel="rbf"), "a SVC"),
    "gradient-boosting-multiclass": (lambda: GradientBoostingClassifier(n_estimators=5), "a GradientBoostingClassifier"),
    "polynomial-pipeline": (lambda: make_pipeline(PolynomialFeatures(), LogisticRegression(max_iter=500)),
                            "a Pipeline"),
}


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_other_estimators_are_501_naming_what_is_supported(tmp_path, iris_artifact, kind):
    make, what = UNSUPPORTED[kind]
    client = serve(tmp_path, iris_artifact, m=write_model(tmp_path / "m", make()))
    native = client.post("/models/m/explain", json={"features": ROWS[0]})
    assert native.status_code == 501
    message = native.get_json()["message"]
    assert message.startswith(f"Model 'm' 1 is {what}; explanations are computed for linear classifiers")
    assert all(name in message for name in SUPPORTED_NAMES)
    assert native.get_json()["request_id"] == native.headers["X-Request-ID"]
    v1 = client.post("/v1/models/m:explain", json={"instances": [ROWS[0]]})
    assert v1.status_code == 501
    assert v1.get_json() == {"error": message, "request_id": v1.headers["X-Request-ID"]}
    # Whatever the body: the model cannot be explained.
    assert client.post("/models/m/explain", json={"features": [1, 2]}).status_code == 501


def test_regressors_and_models_without_stored_data_are_501(tmp_path, iris_artifact):
    client = serve(tmp_path, iris_artifact,
                   reg=write_model(tmp_path / "reg", LinearRegression(), regression=True),
                   bare=write_model(tmp_path / "bare", LogisticRegression(max_iter=500), explain=False))
    regressor = client.post("/models/reg/explain", json={"features": ROWS[0]})
    assert regressor.status_code == 501
    assert regressor.get_json()["message"].startswith("Model 'reg' 1 is a regressor; explanations are computed for")
    bare = client.post("/models/bare/explain", json={"features": ROWS[0]})
    assert bare.status_code == 501
    assert bare.get_json()["message"] == (
        "Model 'bare' 1 has no explanation data in its manifest: train it with 'iris-service train', or "
        "register it again with --background FILE (a CSV of training rows)."
    )


def test_onnx_artifacts_are_501(tmp_path, iris_artifact):
    from iris_service import training

    onnx = tmp_path / "onnx" / "model.onnx"
    training.train(onnx, name="onnx", version="1", fmt="onnx")
    client = serve(tmp_path, iris_artifact, onnx=onnx)
    response = client.post("/models/onnx/explain", json={"features": ROWS[0]})
    assert response.status_code == 501
    assert response.get_json()["message"] == (
        "Model 'onnx' 1 is served from an onnx artifact: explanations need its scikit-learn estimator "
        "(serve the joblib or skops artifact)."
    )


def test_skops_artifacts_are_explained_like_joblib_ones(tmp_path, iris_artifact):
    """A skops artifact loads the scikit-learn estimator itself, so it is explained as the joblib one is."""
    from iris_service import training

    skops = tmp_path / "skops" / "model.skops"
    training.train(skops, name="skops", version="1", fmt="skops")
    client = serve(tmp_path, iris_artifact, skops=skops)
    answer = client.post("/models/skops/explain", json={"features": ROWS[1]}).get_json()
    reference = client.post("/models/iris/explain", json={"features": ROWS[1]}).get_json()
    assert answer["method"] == "linear" and answer["label"] == "versicolor"
    assert np.allclose(answer["contributions"], reference["contributions"], rtol=0, atol=1e-12)


def test_without_shap_a_tree_model_is_501_naming_the_extra(tmp_path, iris_artifact, monkeypatch):
    monkeypatch.setitem(sys.modules, "shap", None)  # `import shap` raises ImportError, as when it is absent
    client = serve(tmp_path, iris_artifact, forest=write_model(tmp_path / "forest", DecisionTreeClassifier()))
    response = client.post("/models/forest/explain", json={"features": ROWS[0]})
    assert response.status_code == 501
    assert response.get_json()["message"] == (
        "Explaining a DecisionTreeClassifier needs shap, from the 'explain' extra: pip install "
        "'iris-service[explain]' (from a checkout: pip install -e '.[explain]')."
    )
    # The linear default model needs no extra.
    assert client.post("/models/iris/explain", json={"features": ROWS[0]}).status_code == 200


def test_one_row_answer_names_everything_once(client):
    response = client.post("/models/iris/explain", json={"features": dict(zip(FEATURES, ROWS[1], strict=True))})
    assert response.status_code == 200
    answer = response.get_json()
    assert set(answer) == {"prediction", "label", "scores", "contributions", "method", "output", "classes",
                           "features", "baseline", "model", "version"}
    assert (answer["prediction"], answer["label"], answer["model"], answer["version"]) == (1, "versicolor",
                                                                                          "iris", "1")
    assert answer["classes"] == ["setosa", "versicolor", "virginica"]
    assert np.shape(answer["contributions"]) == (3, 4) and len(answer["baseline"]) == 3
    k = answer["prediction"]
    assert answer["baseline"][k] + sum(answer["contributions"][k]) == pytest.approx(answer["scores"][k], abs=1e-9)


def test_v1_explain_answers_every_row(client):
    for body in ({"instances": ROWS}, {"inputs": {name: [row[j] for row in ROWS] for j, name in enumerate(FEATURES)}}):
        response = client.post("/v1/models/iris:explain", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        answer = response.get_json()
        assert set(answer) == {"explanations", "method", "output", "classes", "features", "baseline"}
        assert [row["label"] for row in answer["explanations"]] == ["setosa", "versicolor", "virginica"]
        assert [np.shape(row["contributions"]) for row in answer["explanations"]] == [(3, 4)] * 3


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/models/iris/explain", {"features": [1, 2]}, 422, "Expected 4 features"),
    ("/models/iris/explain", {"instances": [[1, 2, 3, "x"]]}, 422, "Must be a number, not a string."),
    ("/models/iris/explain", {"features": [5.1, 3.5, 1.4, 0.2], "instances": [ROWS[0]]}, 422, "not both"),
    ("/v1/models/iris:explain", {"instances": [[1, 2]]}, 400, "Expected 4 features"),
    ("/v1/models/iris:explain", {"instances": []}, 400, "Must contain at least one row."),
])
def test_bad_rows_are_refused_as_predict_refuses_them(client, path, body, status, says):
    response = client.post(path, json=body)
    predicted = client.post(path.replace("explain", "predict"), json=body)
    assert response.status_code == predicted.status_code == status
    assert response.get_json() == predicted.get_json()
    assert says in response.get_data(as_text=True)


def test_unknown_and_unloaded_models(app, client):
    unknown = client.post("/models/nope/explain", json={"features": ROWS[0]})
    assert unknown.status_code == 404
    assert client.post("/v1/models/nope:explain", json={"instances": [ROWS[0]]}).status_code == 404
    app.extensions["iris_service"].dataplane.unload("iris")
    assert client.post("/models/iris/explain", json={"features": ROWS[0]}).status_code == 503
    assert client.post("/v1/models/iris:explain", json={"instances": [ROWS[0]]}).status_code == 503


def test_row_limit_and_range_policy_apply(iris_artifact, monkeypatch, tmp_path):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    client = create_app_for_test({"TESTING": True, "MODEL_PATH": str(iris_artifact), "MAX_BATCH_SIZE": 2,
                                  "INPUT_RANGE_POLICY": "reject"}).test_client()
    too_many = client.post("/models/iris/explain", json={"instances": ROWS})
    assert too_many.status_code == 422
    assert too_many.get_json() == client.post("/models/iris/predict", json={"instances": ROWS}).get_json()
    assert "At most 2 rows" in too_many.get_data(as_text=True)
    outside = {"features": [5.1, 3.5, 1.4, 9.0]}
    refused = client.post("/models/iris/explain", json=outside)
    assert refused.status_code == 422
    assert refused.get_json() == client.post("/models/iris/predict", json=outside).get_json()
    assert "petal_width" in refused.get_data(as_text=True)


def test_contributions_too_large_to_be_finite_are_refused(client):
    response = client.post("/models/iris/explain", json={"instances": [ROWS[0], [1e308, 1e308, 1e308, 1e308]]})
    assert response.status_code == 422
    assert response.get_json()["message"] == (
        "Row 1: the values are too large for this model to give finite contributions."
    )


def test_a_large_forest_explains_a_bounded_number_of_rows(tmp_path, iris_artifact, monkeypatch):
    """TreeSHAP's cost is rows x tree nodes: past WORK_BUDGET a request is refused before the work, and named."""
    from iris_service.runtime import explain_trees

    estimator = RandomForestClassifier(n_estimators=10, random_state=0)
    path = write_model(tmp_path / "m", estimator)
    nodes = sum(tree.tree_.node_count for tree in estimator.estimators_)
    monkeypatch.setattr(explain_trees, "WORK_BUDGET", 3 * nodes)
    client = serve(tmp_path, iris_artifact, m=path)
    assert len(explained(client, "m", X[:3])["explanations"]) == 3
    for path, status in (("/models/m/explain", 422), ("/v1/models/m:explain", 400)):
        refused = client.post(path, json={"instances": X[:4].tolist()})
        assert refused.status_code == status
        assert "At most 3 rows per explanation of model 'm' (its cost grows with its trees); got 4." in (
            refused.get_data(as_text=True))
    assert client.post("/models/m/predict", json={"instances": X[:4].tolist()}).status_code == 200
