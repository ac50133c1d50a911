"""``--engine dask``: the same ``score_frame`` over partitions gives the same file, row for row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FEATURES

from iris_service.artifacts import load_verified
from iris_service.offline.files import score_file, score_file_dask
from iris_service.offline.frame import BatchInputError
from iris_service.runtime import from_artifact

pytest.importorskip("distributed")

ROWS = 1_000_000


@pytest.fixture(scope="module")
def model(iris_artifact):
    return from_artifact(load_verified(iris_artifact))


def concat_parts(folder: Path) -> bytes:
    """The parts in order, each one's header dropped after the first."""
    parts = sorted(folder.glob("part.*.csv"))
    lines = [parts[0].read_bytes()]
    for part in parts[1:]:
        lines.append(part.read_bytes().split(b"\n", 1)[1])
    return b"".join(lines)


@pytest.mark.slow
def test_million_rows_dask_matches_single_process_row_for_row(model, tmp_path):
    rng = np.random.default_rng(7)
    lows, highs = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    values = np.round(rng.uniform(lows, highs, size=(ROWS, 4)), 1)
    frame = pd.DataFrame(values, columns=list(FEATURES))
    frame.insert(0, "id", np.arange(ROWS))
    source = tmp_path / "big.csv"
    frame.to_csv(source, index=False)

    local = score_file(source, tmp_path / "local.csv", model, chunk_size=250_000, progress=False)
    dask = score_file_dask(source, tmp_path / "dask_out", model, blocksize="8MB")

    assert local.rows == dask.rows == ROWS
    parts = sorted((tmp_path / "dask_out").glob("part.*.csv"))
    assert len(parts) > 1  # really partitioned
    assert concat_parts(tmp_path / "dask_out") == (tmp_path / "local.csv").read_bytes()


def test_dask_parquet_output_and_bad_cell_error(model, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], columns=list(FEATURES)).to_csv(source, index=False)
    report = score_file_dask(source, tmp_path / "out.parquet", model)
    assert report.rows == 2
    assert list(pd.read_parquet(tmp_path / "out.parquet")["label"]) == ["setosa", "virginica"]

    bad = tmp_path / "bad.csv"
    source.write_text(source.read_text().replace("6.3", ""))
    bad.write_text(source.read_text())
    with pytest.raises(BatchInputError, match=r"Column 'sepal_length', row 2 of partition 0: empty cell\."):
        score_file_dask(bad, tmp_path / "bad_out", model)
    assert not (tmp_path / "bad_out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad_out")]  # temp folder removed

    report = score_file_dask(bad, tmp_path / "skip_out", model, on_error="skip")
    assert (report.rows, report.rejected) == (1, 1)
    rejects = pd.read_csv(next((tmp_path / "skip_out.rejects").glob("*.csv")))
    assert list(rejects["reason"]) == ["column 'sepal_length': empty cell."]


@pytest.mark.slow
def test_dask_applies_the_range_policy(model, tmp_path):
    from iris_service.serving.ranges import RangePolicy

    source = tmp_path / "in.csv"
    pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 9.0]], columns=list(FEATURES)).to_csv(source, index=False)
    reject = RangePolicy("reject")
    with pytest.raises(BatchInputError, match=r"Column 'petal_width', row 2 of partition 0: Must be between 0\.1"):
        score_file_dask(source, tmp_path / "out", model, ranges=reject)
    report = score_file_dask(source, tmp_path / "skip", model, on_error="skip", ranges=reject)
    assert (report.rows, report.rejected) == (1, 1)
    assert score_file_dask(source, tmp_path / "allowed", model, ranges=RangePolicy("allow")).rows == 2


def test_a_real_scheduler_passes_the_handshake_check_and_scores(model, tmp_path):
    from distributed import LocalCluster

    source = tmp_path / "in.csv"
    pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=list(FEATURES)).to_csv(source, index=False)
    # Over TCP on loopback, as a remote scheduler is reached (threads in this process: inproc by default).
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      protocol="tcp://", host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        report = score_file_dask(source, tmp_path / "out.csv", model, scheduler=cluster.scheduler_address)
    assert report.rows == 1
    assert pd.read_csv(tmp_path / "out.csv" / "part.00000.csv")["label"].tolist() == ["setosa"]
