"""Drift: training deciles in the manifest, PSI and out-of-range shares over served rows (issue 20, item 3)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import FEATURES, create_app_for_test
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from iris_service import training
from iris_service.artifacts import manifest_path, read_manifest
from iris_service.artifacts.profile import FeatureProfile, read_profile
from iris_service.serving.drift import COMPARED_EDGES, MIN_ROWS, psi
from iris_service.serving.drift import ModelDrift as DriftTracker


def training_rows() -> np.ndarray:
    """The rows ``train`` fitted on (same seed and split): what the deciles describe."""
    iris = load_iris()
    x_train, _, _, _ = train_test_split(iris.data, iris.target, test_size=training.TEST_SIZE,
                                        random_state=training.DEFAULT_SEED, stratify=iris.target)
    return np.asarray(x_train, dtype=np.float64)


def drawn_like_training(n: int, seed: int = 7) -> np.ndarray:
    """``n`` rows bootstrapped from the training rows."""
    rows = training_rows()
    return rows[np.random.default_rng(seed).integers(0, len(rows), n)]


def serve(client, rows: np.ndarray, model: str = "iris") -> None:
    for start in range(0, len(rows), 250):
        response = client.post(f"/models/{model}/predict", json={"instances": rows[start:start + 250].tolist()})
        assert response.status_code == 200, response.get_json()


def drift(client, model: str = "iris") -> dict:
    response = client.get(f"/models/{model}/drift")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def client(iris_artifact: Path):
    return create_app_for_test({"MODEL_PATH": str(iris_artifact), "DRIFT_WINDOW": 1000}).test_client()


def test_train_stores_each_features_deciles_and_bin_shares(iris_artifact: Path) -> None:
    manifest = read_manifest(iris_artifact)
    x = training_rows()
    profiles = read_profile(manifest)
    assert profiles is not None and [p.name for p in profiles] == list(FEATURES)
    for j, (item, profile) in enumerate(zip(manifest.input_schema, profiles, strict=True)):
        assert item["deciles"] == pytest.approx(np.quantile(x[:, j], np.arange(1, 10) / 10), abs=1e-9)
        assert item["deciles"] == list(profile.deciles)
        bins = np.searchsorted(profile.edges, x[:, j], side="left")
        assert item["decile_shares"] == pytest.approx(np.bincount(bins, minlength=len(profile.edges) + 1) / len(x))
    # Iris' petal widths tie at 0.2: the first two deciles coincide and the shares say so.
    petal_width = manifest.input_schema[3]
    assert petal_width["deciles"][:2] == [0.2, 0.2] and len(petal_width["decile_shares"]) == 9


def test_rows_drawn_like_the_training_data_keep_every_psi_under_0_1(client) -> None:
    serve(client, drawn_like_training(1000))
    answer = drift(client)
    assert (answer["window"], answer["rows"], answer["observed"]) == (1000, 1000, 1000)
    assert {name: f["psi"] < 0.1 for name, f in answer["features"].items()} == dict.fromkeys(FEATURES, True)


@pytest.mark.parametrize("shifted", FEATURES)
def test_shifting_one_feature_drives_its_psi_over_0_25_and_no_others(client, shifted: str) -> None:
    rows = drawn_like_training(1000)
    j = FEATURES.index(shifted)
    rows[:, j] += 2 * training_rows()[:, j].std()
    serve(client, rows)
    psis = {name: f["psi"] for name, f in drift(client)["features"].items()}
    assert psis[shifted] > 0.25
    assert all(value < 0.1 for name, value in psis.items() if name != shifted), psis


def test_the_window_slides_over_the_last_drift_window_rows(iris_artifact: Path) -> None:
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "DRIFT_WINDOW": 500}).test_client()
    shifted = drawn_like_training(500)
    shifted[:, 2] += 3
    serve(client, shifted)
    assert drift(client)["features"]["petal_length"]["psi"] > 0.25
    serve(client, drawn_like_training(500, seed=11))  # pushes every shifted row out
    answer = drift(client)
    assert (answer["window"], answer["rows"], answer["observed"]) == (500, 500, 1000)
    assert answer["features"]["petal_length"]["psi"] < 0.1


def test_drift_answer_shape_and_psi_null_until_the_window_has_enough_rows(client) -> None:
    serve(client, drawn_like_training(MIN_ROWS - 1))
    answer = drift(client)
    assert answer == {
        "model": "iris", "version": answer["version"], "tracked": True, "reason": None,
        "window": 1000, "rows": MIN_ROWS - 1, "observed": MIN_ROWS - 1,
        "features": {name: {"psi": None, "out_of_range_share": 0.0, "out_of_range_total": 0} for name in FEATURES},
    }
    serve(client, drawn_like_training(1))
    assert all(isinstance(f["psi"], float) for f in drift(client)["features"].values())


def test_unknown_model_is_404(client) -> None:
    response = client.get("/models/nope/drift")
    assert response.status_code == 404
    assert "No model named 'nope'" in response.get_json()["message"]


def test_out_of_range_counts_exactly_the_values_outside_the_training_min_and_max(client) -> None:
    # Training ranges: sepal_length 4.3..7.9, sepal_width 2.0..4.4, petal_length 1.0..6.9, petal_width 0.1..2.5.
    rows = [[4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], [4.2, 4.5, 1.0, 0.2], [8.0, 3.0, 0.9, 0.2]]
    serve(client, np.array(rows))
    features = drift(client)["features"]
    assert {n: f["out_of_range_total"] for n, f in features.items()} == {
        "sepal_length": 2, "sepal_width": 1, "petal_length": 1, "petal_width": 0}
    assert {n: f["out_of_range_share"] for n, f in features.items()} == {
        "sepal_length": 0.5, "sepal_width": 0.25, "petal_length": 0.25, "petal_width": 0.0}


def test_refused_rows_are_not_counted(client) -> None:
    assert client.post("/models/iris/predict", json={"instances": [[1, 2, 3]]}).status_code == 422
    assert drift(client)["observed"] == 0


def test_a_registered_estimator_has_no_profile_and_the_answer_says_so(iris_artifact: Path, tmp_path: Path) -> None:
    from iris_service.artifacts.registration import register_pickle

    manifest, path = register_pickle(iris_artifact, name="byo", version="3", folder=tmp_path)
    assert read_profile(manifest) is None
    client = create_app_for_test({"MODELS": {"byo": str(path)}}).test_client()
    serve(client, drawn_like_training(10), model="byo")
    assert drift(client, "byo") == {
        "model": "byo", "version": "3", "tracked": False, "features": {},
        "reason": "Model 'byo' version '3' has no training profile in its manifest (a registered estimator: "
                  "no training rows were given); train it with 'iris-service train' or register it "
                  "again with --background FILE (a CSV of its training rows).",
    }


def test_drift_enabled_false_turns_tracking_off(iris_artifact: Path) -> None:
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact), "DRIFT_ENABLED": False}).test_client()
    serve(client, drawn_like_training(10))
    answer = drift(client)
    assert (answer["tracked"], answer["reason"]) == (False, "Drift tracking is off (DRIFT_ENABLED is false).")
    assert "iris_feature_" not in client.get("/metrics").get_data(as_text=True)


def _tampered(artifact: Path, tmp_path: Path, edit) -> Path:
    target = tmp_path / "tampered" / "model.joblib"
    target.parent.mkdir()
    shutil.copy(artifact, target)
    data = json.loads(manifest_path(artifact).read_text())
    edit(data["input_schema"][2])
    manifest_path(target).write_text(json.dumps(data))
    return target


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda f: f["deciles"].reverse(), "needs nine ascending finite deciles"),
        (lambda f: f["deciles"].pop(), "needs nine ascending finite deciles"),
        (lambda f: f.update(max=f["deciles"][4]), "needs a finite (or null) min and max around its deciles"),
        (lambda f: f["decile_shares"].__setitem__(0, 0.9), "needs 10 bin shares that add up to 1"),
        (lambda f: f.pop("decile_shares"), "needs 10 bin shares that add up to 1"),
    ],
)
def test_a_profile_that_does_not_add_up_refuses_the_load(iris_artifact: Path, tmp_path: Path, edit, why) -> None:
    client = create_app_for_test({"MODEL_PATH": str(_tampered(iris_artifact, tmp_path, edit))}).test_client()
    response = client.get("/models/iris/drift")
    assert response.status_code == 503
    version = read_manifest(iris_artifact).version
    assert response.get_json()["message"].startswith(
        f"Model 'iris' is not loaded: Manifest of 'iris' version '{version}': the training profile of "
        f"'petal_length' {why}; retrain or restore the manifest."
    )


def test_deciles_are_covered_by_the_signature(artifact: Path, tmp_path: Path) -> None:
    from iris_service.artifacts import load_verified
    from iris_service.artifacts.signing import (
        load_private_key,
        load_trusted_keys,
        sign_artifact,
        write_keypair,
    )
    from iris_service.errors import ArtifactError

    private, public, _ = write_keypair(tmp_path / "k.key")
    sign_artifact(artifact, load_private_key(private))
    trusted = load_trusted_keys([public])
    load_verified(artifact, trusted_keys=trusted)  # signed as written: loads
    data = json.loads(manifest_path(artifact).read_text())
    data["input_schema"][0]["deciles"] = [d + 0.5 for d in data["input_schema"][0]["deciles"]]
    manifest_path(artifact).write_text(json.dumps(data, indent=2, sort_keys=True))
    with pytest.raises(ArtifactError, match="Signature model.joblib.sig does not match model.joblib.json"):
        load_verified(artifact, trusted_keys=trusted)


def test_psi_of_equal_shares_is_zero_and_of_known_shares_is_the_formula() -> None:
    assert psi([0.1] * 10, [0.1] * 10) == 0.0
    assert psi([0.2, 0.8], [0.5, 0.5]) == pytest.approx((0.2 - 0.5) * np.log(0.4) + (0.8 - 0.5) * np.log(1.6))
    assert psi([0.0, 1.0], [0.5, 0.5]) == pytest.approx((1e-4 - 0.5) * np.log(2e-4) + 0.5 * np.log(2))


def test_a_reload_starts_a_fresh_window(iris_artifact: Path) -> None:
    app = create_app_for_test({"MODEL_PATH": str(iris_artifact)})
    client = app.test_client()
    serve(client, drawn_like_training(150))
    assert drift(client)["observed"] == 150
    app.extensions["iris_service"].dataplane.load("iris")
    serve(client, drawn_like_training(20))
    assert (drift(client)["observed"], drift(client)["rows"]) == (20, 20)


@st.composite
def _profile_and_rows(draw):
    """Sorted unique edges (few: compared; many: binary-searched) and rows of any float64, edges included."""
    few, many = (st.lists(st.floats(allow_nan=False), min_size=lo, max_size=hi, unique=True) for lo, hi in
                 ((1, 10), (COMPARED_EDGES + 1, COMPARED_EDGES + 8)))
    edges = sorted(set(draw(st.one_of(few, many))))
    value = st.one_of(st.floats(), st.sampled_from(edges))  # any float64: NaN, infinities, extremes, ties
    rows = draw(st.lists(st.tuples(value, value), min_size=1, max_size=60))
    return edges, np.array(rows, dtype=np.float64)


@settings(max_examples=300, deadline=None)
@given(_profile_and_rows())
def test_each_bin_counts_exactly_the_values_above_that_many_edges(case) -> None:
    """The drift counts, proven on any rows against a plain count: bin k holds values above exactly k edges."""
    edges, x = case
    profiles = tuple(FeatureProfile(name, -1.0, 1.0, tuple(edges), tuple(edges), ()) for name in ("a", "b"))
    tracker = DriftTracker(SimpleNamespace(name="m", version="1"), profiles, 10_000)
    tracker._tally(x)
    for j in range(2):
        expected = [0] * (len(edges) + 1)
        for value in x[:, j].tolist():
            expected[sum(edge < value for edge in edges)] += 1  # NaN is above no edge
        assert tracker._counts[j].tolist() == expected
        assert tracker._outside[j] == sum(v < -1.0 or v > 1.0 for v in x[:, j].tolist())
    assert tracker._count == len(x)
