"""``iris-service predict-file``: CSV and Parquet in chunks, the same answers as the API."""
from __future__ import annotations

import os

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import FEATURES, KNOWN_ROWS

from iris_service.artifacts import load_verified
from iris_service.cli import main
from iris_service.offline.frame import BatchInputError, score_frame
from iris_service.runtime import from_artifact

OUTPUT_COLUMNS = ["prediction", "label", "proba_setosa", "proba_versicolor", "proba_virginica"]


@pytest.fixture
def env(iris_artifact, tmp_path) -> dict[str, str]:
    """The same settings a server would read: the model comes from the environment."""
    return {
        "IRIS_SERVICE_ENV": "production",
        "IRIS_SERVICE_MODEL_PATH": str(iris_artifact),
        "IRIS_SERVICE_INSTANCE_PATH": str(tmp_path / "instance"),
    }


@pytest.fixture
def model(iris_artifact):
    return from_artifact(load_verified(iris_artifact))


def predict_file(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, ["predict-file", *args], env=env, catch_exceptions=False)


def known_frame(repeat: int = 1) -> pd.DataFrame:
    """Known rows with the columns shuffled and an extra column to keep."""
    rows = [dict(zip(FEATURES, row, strict=True), id=f"r{i}") for i, (row, _, _) in enumerate(KNOWN_ROWS * repeat)]
    return pd.DataFrame(rows)[["id", "petal_width", "sepal_length", "petal_length", "sepal_width"]]


def test_csv_in_chunks_matches_the_api(env, client, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    known_frame(repeat=4).to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(out), "--chunk-size", "5")
    assert result.exit_code == 0, result.output
    assert "scored 12 rows with iris 1" in result.output
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["id", "petal_width", "sepal_length", "petal_length", "sepal_width",
                                    *OUTPUT_COLUMNS]
    assert list(scored["id"]) == [f"r{i}" for i in range(12)]
    assert list(scored["label"]) == ["setosa", "versicolor", "virginica"] * 4
    for i, (row, index, _label) in enumerate(KNOWN_ROWS):
        api = client.post("/predict", json={"features": row}).get_json()
        assert scored["prediction"][i] == index
        for name, p in api["probabilities"].items():
            assert scored[f"proba_{name}"][i] == pytest.approx(p, rel=1e-12)


def test_parquet_in_and_out(env, tmp_path):
    source, out = tmp_path / "in.parquet", tmp_path / "scored.parquet"
    known_frame(repeat=3).to_parquet(source, index=False)
    result = predict_file(env, str(source), "--out", str(out), "--chunk-size", "2", "--quiet")
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(out)
    assert len(scored) == 9
    assert list(scored["prediction"]) == [0, 1, 2] * 3
    assert scored["sepal_length"].dtype == "float64"  # numbers stay numbers
    assert scored[["proba_setosa", "proba_versicolor", "proba_virginica"]].sum(axis=1).round(9).eq(1).all()


def test_csv_to_parquet(env, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.parquet"
    known_frame().to_csv(source, index=False)
    assert predict_file(env, str(source), "--out", str(out)).exit_code == 0
    assert list(pd.read_parquet(out)["label"]) == ["setosa", "versicolor", "virginica"]


def test_refuses_to_overwrite_without_force(env, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    known_frame().to_csv(source, index=False)
    out.write_text("keep me")
    result = predict_file(env, str(source), "--out", str(out))
    assert result.exit_code == 1
    assert f"Error: {out} already exists; pass --force to replace it." in result.output
    assert out.read_text() == "keep me"
    assert predict_file(env, str(source), "--out", str(out), "--force").exit_code == 0
    assert len(pd.read_csv(out)) == 3


BAD_CELLS = [
    pytest.param("", "Column 'petal_length', row 2: empty cell.", id="empty"),
    pytest.param("abc", "Column 'petal_length', row 2: not a number: 'abc'.", id="text"),
    pytest.param("inf", "Column 'petal_length', row 2: not a finite number: inf.", id="infinite"),
]


@pytest.mark.parametrize(("cell", "message"), BAD_CELLS)
def test_bad_cell_names_column_and_row_and_writes_nothing(env, tmp_path, cell, message):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    frame = known_frame().astype(str)
    frame.loc[1, "petal_length"] = cell
    frame.to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(out))
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no output, no temp file


def test_bad_row_in_a_later_chunk_leaves_no_output(env, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    frame = known_frame(repeat=10).astype(str)
    frame.loc[25, "sepal_width"] = "n/a"
    frame.to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(out), "--chunk-size", "4")
    assert "Error: Column 'sepal_width', row 26: not a number: 'n/a'." in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_missing_column_is_named(env, tmp_path):
    source = tmp_path / "in.csv"
    known_frame().drop(columns=["petal_width"]).to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(tmp_path / "out.csv"))
    assert result.exit_code == 1
    assert "Error: Missing column(s): petal_width. The model 'iris' needs" in result.output


def test_on_error_skip_writes_rejects_with_reasons(env, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    frame = known_frame(repeat=2).astype(str)
    frame.loc[1, "sepal_length"] = ""
    frame.loc[4, "petal_width"] = "x"
    frame.to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(out), "--on-error", "skip", "--chunk-size", "3")
    assert result.exit_code == 0, result.output
    assert "scored 4 rows" in result.output and "rejected 2 rows" in result.output
    scored = pd.read_csv(out)
    assert list(scored["id"]) == ["r0", "r2", "r3", "r5"]
    assert list(scored["label"]) == ["setosa", "virginica", "setosa", "virginica"]
    rejects = pd.read_csv(tmp_path / "scored.rejects.csv", keep_default_na=False)
    assert list(rejects["id"]) == ["r1", "r4"]
    assert list(rejects["row"]) == [2, 5]
    assert list(rejects["reason"]) == ["column 'sepal_length': empty cell.", "column 'petal_width': not a number: 'x'."]


def test_unknown_model_and_format_are_clear_errors(env, tmp_path):
    source = tmp_path / "in.csv"
    known_frame().to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(tmp_path / "o.csv"), "--model", "nope")
    assert "Error: No model named 'nope'; known models: iris." in result.output
    result = predict_file(env, str(source), "--out", str(tmp_path / "o.xlsx"))
    assert "Error: Cannot tell the format of 'o.xlsx': name it .csv, .parquet or .pq." in result.output
    result = predict_file(env, str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.csv"))
    assert "does not exist" in result.output and result.exit_code == 1


def test_score_frame_is_pandas_in_pandas_out(model):
    frame = known_frame()
    scored = score_frame(frame, model)
    assert list(scored.columns) == [*frame.columns, *OUTPUT_COLUMNS]
    assert list(scored["label"]) == ["setosa", "versicolor", "virginica"]
    assert list(frame.columns) == ["id", "petal_width", "sepal_length", "petal_length", "sepal_width"]  # input untouched
    with pytest.raises(BatchInputError, match=r"Column 'sepal_width', row 1: empty cell\."):
        score_frame(frame.assign(sepal_width=[None, 3.2, 3.3]), model)
    assert score_frame(frame.iloc[0:0], model).columns.tolist()[-5:] == OUTPUT_COLUMNS


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal is POSIX-only")
def test_progress_bar_on_a_terminal_only(env, tmp_path):
    import pty
    import subprocess
    import sys

    source = tmp_path / "in.csv"
    known_frame(repeat=50).to_csv(source, index=False)
    args = [sys.executable, "-m", "iris_service.cli", "predict-file", str(source), "--chunk-size", "10"]
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([*args, "--out", str(tmp_path / "tty.csv")], env={**os.environ, **env},
                              stdin=follower, stdout=follower, stderr=follower, timeout=60)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        tty_output = b"".join(chunks).decode(errors="replace")
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert "150/? [" in tty_output or "rows/s" in tty_output
    piped = subprocess.run([*args, "--out", str(tmp_path / "piped.csv")], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0
    assert "rows/s]" not in piped.stderr  # no bar when not a terminal
    assert "scored 150 rows" in piped.stdout


def test_range_policy_reject_applies_to_files_as_to_requests(env, tmp_path, client):
    """INPUT_RANGE_POLICY=reject: an out-of-range cell stops the run with the API's own message, or is a reject."""
    env = {**env, "IRIS_SERVICE_INPUT_RANGE_POLICY": "reject"}
    source, out = tmp_path / "in.csv", tmp_path / "scored.csv"
    frame = known_frame(repeat=2)
    frame.loc[2, "petal_width"] = 9.0
    frame.to_csv(source, index=False)
    result = predict_file(env, str(source), "--out", str(out))
    assert result.exit_code == 1
    assert "Error: Column 'petal_width', row 3: Must be between 0.1 and 2.5 (the training range); got 9." in result.output
    assert not out.exists()

    result = predict_file(env, str(source), "--out", str(out), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out)["id"]) == ["r0", "r1", "r3", "r4", "r5"]
    rejects = pd.read_csv(tmp_path / "scored.rejects.csv")
    assert list(rejects["id"]) == ["r2"]
    assert list(rejects["reason"]) == ["column 'petal_width': Must be between 0.1 and 2.5 (the training range); got 9."]
    # The default policy serves the extrapolation, as the API does.
    assert predict_file({**env, "IRIS_SERVICE_INPUT_RANGE_POLICY": "allow"}, str(source), "--out",
                        str(tmp_path / "allowed.csv")).exit_code == 0
