"""The exact numpy path: same answers as scikit-learn, or scikit-learn itself."""
from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import FEATURES, KNOWN_ROWS
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_service.artifacts import describe_estimator, dump_joblib, load_verified, write_artifact
from iris_service.errors import InvalidInput
from iris_service.protocols import Decoded, native
from iris_service.runtime import Prediction, SklearnModel, from_artifact, linear
from iris_service.runtime.linear import LinearModel, accelerate, check_sample
from iris_service.serving.dataplane import _check_finite

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
    with caplog.at_level(logging.WARNING, logger="iris_service.linear"):
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
    with caplog.at_level(logging.WARNING, logger="iris_service.linear"):
        model = from_artifact(load_verified(iris_artifact))
    assert type(model) is SklearnModel
    assert "in probability on row 0" in caplog.text


# --- The whole finite float64 range (issue 17) -------------------------------------------

#: The issue's row: scikit-learn's decision score for virginica overflows to inf.
HUGE_ROW = [5.1, 3.5, 1.4, 1e308]
TOO_LARGE = "the values are too large for this model to give finite probabilities."
MAX = float(np.finfo(np.float64).max)
TINY = 5e-324
#: Examples per property; `make fuzz` raises them with FUZZ_EXAMPLES, as in test_fuzz.py.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    # The suite replays the same examples on every run; `make fuzz` explores new ones.
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    database=None,
)
#: Any finite float64, from -max to max through the subnormals.
FINITE = st.floats(allow_nan=False, allow_infinity=False)
#: Ordinary values next to overflowing ones: products and sums that overflow, or almost.
MIXED = st.one_of(
    st.floats(-10, 10),
    st.sampled_from([0.0, -0.0, TINY, -TINY, 1e308, -1e308, MAX, -MAX, 1e154, -1e154, 1e4, -1e4]),
    st.floats(min_value=1e300, allow_infinity=False),
    st.floats(max_value=-1e300, allow_infinity=False),
    st.floats(-1e6, 1e6),  # across the fast path's limits (about 1e4 for these models)
    st.floats(-1e30, 1e30),
)
#: One to six rows of four features, each row all-FINITE or all-MIXED.
ROWS = st.lists(
    st.one_of(st.lists(FINITE, min_size=4, max_size=4), st.lists(MIXED, min_size=4, max_size=4)),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def both_models(
    iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[LogisticRegression, LinearModel]]:
    """(estimator, fast path) for the default three-class model and a two-class one, as served."""
    binary = IRIS_Y < 2
    two_classes = LogisticRegression(max_iter=500).fit(IRIS_X[binary], IRIS_Y[binary])
    binary_path = _artifact(tmp_path_factory.mktemp("binary"), two_classes, ["setosa", "versicolor"])
    pairs = []
    for path in (iris_artifact, binary_path):
        model = from_artifact(load_verified(path))
        assert isinstance(model, LinearModel), "the load-time check must accept the fast path"
        pairs.append((model.estimator, model))
    return pairs


def _assert_answers_as_scikit_learn(estimator: LogisticRegression, fast: LinearModel, x: np.ndarray) -> None:
    """Classes equal, probabilities within TOLERANCE; where scikit-learn's are not finite, a 422."""
    with np.errstate(all="ignore"):  # scikit-learn overflows on some of these rows
        want = estimator.predict_proba(x)
    finite = np.isfinite(want).all(axis=1)
    if not finite.all():
        # The fast path gives scikit-learn's own answer there, and the data plane refuses it (a 422/400).
        got = fast.predict(x)
        with pytest.raises(InvalidInput, match=rf"^Row {int(np.flatnonzero(~finite)[0])}: {TOO_LARGE}$"):
            _check_finite(got, InvalidInput)
        return
    got = fast.predict(x)
    assert np.isfinite(got.probabilities).all()
    assert got.classes.tolist() == want.argmax(axis=1).tolist()
    assert np.max(np.abs(got.probabilities - want)) <= linear.TOLERANCE


@PROPERTY_SETTINGS
@given(rows=ROWS)
@example(rows=[HUGE_ROW])
@example(rows=[[5.1, 3.5, 1.4, 0.2], HUGE_ROW])
@example(rows=[[1e308, -1e308, 1.0, 1.0]])
@example(rows=[[0.0, 0.0, 7e307, 5e307]])
@example(rows=[[MAX, MAX, MAX, MAX], [-MAX, MAX, -MAX, MAX]])
@example(rows=[[TINY, -TINY, 0.0, -0.0]])
def test_any_finite_rows_answer_as_scikit_learn_or_422(both_models, rows: list[list[float]]) -> None:
    """Property over the whole finite float64 range, for a three- and a two-class model.

    Each row alone takes the plain-Python path, all rows together the numpy
    batch path; both must agree with scikit-learn on that same input.
    """
    x = np.array(rows, dtype=np.float64)
    for estimator, fast in both_models:
        _assert_answers_as_scikit_learn(estimator, fast, x)
        for i in range(len(x)):
            _assert_answers_as_scikit_learn(estimator, fast, x[i : i + 1])


def test_a_row_scikit_learn_cannot_answer_finitely_is_refused(client, iris_artifact: Path) -> None:
    """The issue's row: scikit-learn's own probabilities are NaN there, so no 200 with nulls.

    Its ``predict`` says virginica (the argmax of decision scores, one of them
    inf), its ``predict_proba`` NaN (inf - inf in the softmax): there is no
    probability to serve, so the request is refused, with 422 on the native
    routes and 400 on V1, V2 and MLflow like their other input errors.
    """
    estimator = _sklearn(iris_artifact).estimator
    with np.errstate(all="ignore"):
        assert np.isnan(estimator.predict_proba([HUGE_ROW])).all()
        assert estimator.predict([HUGE_ROW]).tolist() == [2]
    single = client.post("/predict", json={"features": HUGE_ROW})
    assert single.status_code == 422
    assert single.get_json()["message"] == f"Row 0: {TOO_LARGE}"
    batch = client.post("/predict", json={"instances": [KNOWN_ROWS[0][0], HUGE_ROW]})
    assert batch.status_code == 422
    assert batch.get_json()["message"] == f"Row 1: {TOO_LARGE}"
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": HUGE_ROW}
    body = {"inputs": [tensor], "outputs": [{"name": "predict_proba"}]}
    v2 = client.post("/v2/models/iris/infer", json=body)
    assert v2.status_code == 400
    assert v2.get_json() == {"error": f"Row 0: {TOO_LARGE}"}
    v1 = client.post("/v1/models/iris:predict", json={"instances": [KNOWN_ROWS[0][0], HUGE_ROW]})
    assert v1.status_code == 400
    assert v1.get_json() == {"error": f"Row 1: {TOO_LARGE}"}


NAMES = ("setosa", "versicolor", "virginica")


def _served(answer: dict) -> tuple[int, list[float]]:
    return answer["prediction"], [answer["probabilities"][n] for n in NAMES]


@pytest.mark.parametrize("row", [
    [1e308, -1e308, 1.0, 1.0],  # scores near -max and +max: the softmax's subtraction overflows to -inf
    [5.1, 3.5, 1e300, 0.2],
    [-1e200, 3.5, 1.4, 0.2],
    [TINY, TINY, TINY, TINY],
    [0.0, 0.0, 0.0, 0.0],
])
def test_extreme_rows_scikit_learn_answers_are_served_exactly(client, iris_artifact: Path, row) -> None:
    """Finite rows scikit-learn answers finitely: /predict (one row, a batch) and V2 serve its answer."""
    estimator = _sklearn(iris_artifact).estimator
    with np.errstate(all="ignore"):
        alone, twice = estimator.predict_proba([row]), estimator.predict_proba([row, row])
    assert np.isfinite(alone).all() and np.isfinite(twice).all()
    single = client.post("/predict", json={"features": row})
    assert single.status_code == 200
    predicted, proba = _served(single.get_json())
    assert predicted == int(alone[0].argmax())
    assert proba == pytest.approx(alone[0].tolist(), abs=linear.TOLERANCE)
    batch = client.post("/predict", json={"instances": [row, row]})
    assert batch.status_code == 200
    for answer, want in zip(batch.get_json()["predictions"], twice, strict=True):
        predicted, proba = _served(answer)
        assert predicted == int(want.argmax())
        assert proba == pytest.approx(want.tolist(), abs=linear.TOLERANCE)
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row}
    outputs = [{"name": "predict"}, {"name": "predict_proba"}]
    v2 = client.post("/v2/models/iris/infer", json={"inputs": [tensor], "outputs": outputs})
    assert v2.status_code == 200
    classes, probabilities = v2.get_json()["outputs"]
    assert classes["data"] == [int(alone[0].argmax())]
    assert probabilities["data"] == pytest.approx(alone[0].tolist(), abs=linear.TOLERANCE)


def test_rows_up_to_the_limits_take_the_fast_arithmetic_and_stay_exact(
    both_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the edge of ``exact_limits`` the fast arithmetic agrees; one step beyond, scikit-learn answers.

    The rows lie in the null space of ``coef_``: large products that cancel, so
    the scores are the intercepts up to rounding and the probabilities are not
    saturated, where a rounding difference would show.
    """
    for estimator, fast in both_models:
        calls: list[int] = []

        def spy(x: np.ndarray, fast: LinearModel = fast, calls: list[int] = calls) -> Prediction:
            calls.append(len(x))
            return LinearModel._scikit_learn(fast, x)

        monkeypatch.setattr(fast, "_scikit_learn", spy)
        norm_limit, value_limit = linear.exact_limits(estimator.coef_, estimator.intercept_)
        assert 1e4 < value_limit <= norm_limit < 1e5  # the bounds the docstrings quote
        null = np.linalg.svd(estimator.coef_)[2][-1]
        assert np.max(np.abs(estimator.coef_ @ null)) < 1e-12
        edge = null / math.hypot(*null) * norm_limit * (1 - 1e-9)
        batch_edge = null / np.max(np.abs(null)) * value_limit * (1 - 1e-9)
        for x in (edge[None, :], np.stack([batch_edge, -batch_edge, IRIS_X[0]])):
            _assert_answers_as_scikit_learn(estimator, fast, x)
        assert calls == []
        _assert_answers_as_scikit_learn(estimator, fast, edge[None, :] * (1 + 1e-6))
        _assert_answers_as_scikit_learn(estimator, fast, np.stack([batch_edge * (1 + 1e-6), IRIS_X[0]]))
        assert calls == [1, 2]  # the one-row request, then the whole two-row batch


def test_binary_model_on_extreme_rows_answers_as_scikit_learn(both_models) -> None:
    """Each row alone and all together: scikit-learn's answer for that same input, or the 422.

    With numpy's OpenBLAS, [0, max, max, -max] is finite alone and NaN in a
    batch (its kernels overflow differently), hence the comparison on the same array.
    """
    estimator, fast = both_models[1]
    assert len(estimator.classes_) == 2
    rows = np.array([[1e308] * 4, [-1e308] * 4, [MAX, -MAX, MAX, -MAX], [0.0, MAX, MAX, -MAX],
                     [5.1, 3.5, 1.4, 1e308], [5.1, -1e308, 1.4, 0.2], [TINY] * 4, [5.1, 3.5, 1.4, 0.2]])
    for i in range(len(rows)):
        _assert_answers_as_scikit_learn(estimator, fast, rows[i : i + 1])
    _assert_answers_as_scikit_learn(estimator, fast, rows)
    _assert_answers_as_scikit_learn(estimator, fast, rows[[0, 6, 7]])


def test_check_sample_ends_with_extreme_rows(iris_artifact: Path) -> None:
    sample = check_sample(_sklearn(iris_artifact))
    rows = sample.tolist()
    for value in (1e308, MAX, TINY, 1e5):
        for signed in (value, -value):
            assert [signed] * 4 in rows
            assert [signed, -signed, signed, -signed] in rows
    assert [0.0] * 4 in rows
    middle = sample[2]  # the middle of the manifest's ranges
    for j in range(4):
        for value in (1e308, -1e308, MAX, -MAX, TINY, -TINY):
            one_extreme = middle.copy()
            one_extreme[j] = value
            assert one_extreme.tolist() in rows


@pytest.mark.parametrize("unlimited", ["one-row path"])
def test_a_fast_path_without_limits_is_refused_at_load(
    iris_artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, unlimited: str
) -> None:
    """The extreme rows of the check catch the plain-Python row path overflowing where scikit-learn does not.

    Warnings are ignored as in production (the suite turns them into errors),
    so the refusal comes from the check itself. (Without its limit the batch path
    is scikit-learn's own numpy product, NaN included where scikit-learn's is, so
    it still gives the served outcome: the limit there only guards other BLAS builds.)
    """
    exact_limits = linear.exact_limits

    def without_one_limit(coef: np.ndarray, intercept: np.ndarray) -> tuple[float, float]:
        norm_limit, value_limit = exact_limits(coef, intercept)
        return (math.inf, value_limit) if unlimited == "one-row path" else (norm_limit, math.inf)

    monkeypatch.setattr(linear, "exact_limits", without_one_limit)
    with caplog.at_level(logging.WARNING, logger="iris_service.linear"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = from_artifact(load_verified(iris_artifact))
    assert type(model) is SklearnModel
    assert "model iris keeps scikit-learn: the numpy path" in caplog.text
