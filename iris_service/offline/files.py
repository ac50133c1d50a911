"""Score CSV and Parquet files in chunks, on one machine or on a Dask cluster.

Both engines run ``frame.score_frame`` on each piece, with the data plane's range policy. Output goes to a
temporary file (or folder) beside the target and is renamed into place only
after the last row is written, so a failed or interrupted run never leaves a
half-written output under the real name.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runtime import Model
from ..serving.ranges import RangePolicy
from .frame import score_frame, split_valid
from .staging import (
    CSV_READ,
    FileScoringError,
    ProgressBar,
    Staged,
    StagedDir,
    Writer,
    commit,
    commit_dir,
    header_only,
    refuse_overwrite,
    row_count,
)

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ENGINES = ("local", "dask")
ON_ERROR = ("fail", "skip")
DEFAULT_CHUNK_SIZE = 100_000


@dataclass(frozen=True)
class ScoreReport:
    """What a run wrote, for the command's last line."""

    output: Path
    rows: int
    rejected: int
    rejects: Path | None
    seconds: float


def file_format(path: Path) -> str:
    """``csv`` or ``parquet`` from the suffix (a folder may be named ``out.parquet``)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FileScoringError(f"Cannot tell the format of {path.name!r}: name it .csv, .parquet or .pq.")
    return fmt


def rejects_path(output: Path) -> Path:
    """``scored.csv`` -> ``scored.rejects.csv`` (rejects are CSV whatever the output)."""
    return output.with_name(output.name.split(".")[0] + ".rejects.csv")


def score_file(
    source: Path,
    output: Path,
    model: Model,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    force: bool = False,
    on_error: str = "fail",
    progress: bool | None = None,
    ranges: RangePolicy | None = None,
    explain: bool = False,
) -> ScoreReport:
    """Stream ``source`` through the model ``chunk_size`` rows at a time into ``output``.

    Memory holds one chunk, never the file. ``progress=None`` shows a bar only
    when stderr is a terminal.
    """
    source, output = Path(source), Path(output)
    in_fmt, out_fmt = file_format(source), file_format(output)
    if not source.is_file():
        raise FileScoringError(f"Input file {source} does not exist.")
    rejects = rejects_path(output) if on_error == "skip" else None
    refuse_overwrite([output, *([rejects] if rejects else [])], force)
    if chunk_size < 1:
        raise FileScoringError("--chunk-size must be at least 1.")
    started = time.perf_counter()
    rows = rejected = 0
    with ExitStack() as stack:
        out_tmp = stack.enter_context(Staged(output))
        rej_tmp = stack.enter_context(Staged(rejects)) if rejects else None
        writer = stack.enter_context(Writer(out_tmp, out_fmt))
        rej_writer = stack.enter_context(Writer(rej_tmp, "csv")) if rej_tmp else None
        bar = stack.enter_context(ProgressBar(progress, row_count(source, in_fmt)))
        for chunk in read_chunks(source, in_fmt, chunk_size):
            if rej_writer is not None:
                scored, bad = split_valid(chunk, model, ranges, explain)
                if len(bad):
                    rej_writer.write(bad)
                    rejected += len(bad)
            else:
                scored = score_frame(chunk, model, ranges=ranges, explain=explain)
            writer.write(scored)
            rows += len(scored)
            bar.update(len(chunk))
        if writer.empty:
            writer.write(score_frame(header_only(source, in_fmt), model, explain=explain))
        if rej_writer is not None and rej_writer.empty:
            rej_tmp = None  # no rejects: no file
        writer.close()
        if rej_writer is not None:
            rej_writer.close()
        commit(out_tmp, output)
        if rej_tmp is not None:
            commit(rej_tmp, rejects)  # type: ignore[arg-type]
    return ScoreReport(output, rows, rejected, rejects if rejected else None, time.perf_counter() - started)


def read_chunks(source: Path, fmt: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The file in frames of at most ``chunk_size`` rows, indexed by row (0-based) in the file."""
    import pandas as pd

    if fmt == "csv":
        with pd.read_csv(source, chunksize=chunk_size, **CSV_READ) as reader:
            yield from reader  # the index keeps counting across chunks
        return
    import pyarrow.parquet as pq

    offset = 0
    with pq.ParquetFile(source) as parquet:
        for batch in parquet.iter_batches(batch_size=chunk_size):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            yield frame


def score_file_dask(
    source: Path | str,
    output: Path,
    model: Model,
    *,
    scheduler: str | None = None,
    blocksize: str | int = "64MB",
    force: bool = False,
    on_error: str = "fail",
    workers: int = 1,
    threads: int = 2,
    ranges: RangePolicy | None = None,
    explain: bool = False,
) -> ScoreReport:
    """Run ``score_frame`` over the partitions of ``source`` with ``dask.dataframe``.

    ``source`` is a file, a glob or a Parquet folder; ``output`` is a folder of
    parts (``part.00000.csv``...), CSV unless it is named ``*.parquet`` or the
    input is Parquet. Without ``scheduler`` a ``LocalCluster`` runs in this
    process (threads: the model is not copied and the GIL is released in numpy
    and scikit-learn).
    """
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    output = Path(output)
    in_fmt = file_format(Path(str(source)))
    out_fmt = FORMATS.get(output.suffix.lower(), in_fmt)
    rejects = output.with_name(output.name.split(".")[0] + ".rejects") if on_error == "skip" else None
    refuse_overwrite([output, *([rejects] if rejects else [])], force)
    started = time.perf_counter()
    with ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler, set_as_default=False))
        else:
            cluster = stack.enter_context(
                LocalCluster(n_workers=workers, threads_per_worker=threads, processes=False,
                             dashboard_address=None, silence_logs=logging.CRITICAL)
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
        if in_fmt == "csv":
            frame = dd.read_csv(str(source), blocksize=blocksize, **CSV_READ)
        else:
            frame = dd.read_parquet(str(source))
        out_tmp = stack.enter_context(StagedDir(output))
        rej_tmp = stack.enter_context(StagedDir(rejects)) if rejects else None
        # Each partition scores and writes its own part, then reports its counts:
        # one pass over the data and one small result back to the client.
        counts = frame.map_partitions(
            _score_part, model, out_tmp, out_fmt, rej_tmp, ranges, explain,
            meta={"rows": "int64", "rejected": "int64"}, enforce_metadata=False,
        ).compute(scheduler=client.get)
        rows, rejected = int(counts["rows"].sum()), int(counts["rejected"].sum())
        commit_dir(out_tmp, output)
        if rejects is not None and rej_tmp is not None and rejected:
            commit_dir(rej_tmp, rejects)
    return ScoreReport(output, rows, rejected, rejects if rejected else None, time.perf_counter() - started)


def _part_name(i: int) -> str:
    """Zero-padded, so the parts sort in the input's order by name."""
    return f"{i:05d}"


def _score_part(
    frame: pd.DataFrame,
    model: Model,
    out_dir: Path,
    fmt: str,
    rejects_dir: Path | None,
    ranges: RangePolicy | None,
    explain: bool = False,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score one partition, write ``part.<n>`` (and its rejects), return the counts."""
    import pandas as pd

    number = int((partition_info or {}).get("number") or 0)
    name = f"part.{_part_name(number)}"
    if rejects_dir is None:
        scored = score_frame(frame, model, where=f"of partition {number}", ranges=ranges, explain=explain)
        bad = frame.iloc[0:0]
    else:
        scored, bad = split_valid(frame, model, ranges, explain)
        if len(bad):
            with Writer(rejects_dir / f"{name}.csv", "csv") as writer:
                writer.write(bad)
    with Writer(out_dir / f"{name}.{fmt}", fmt) as writer:
        writer.write(scored)
    return pd.DataFrame({"rows": [len(scored)], "rejected": [len(bad)]})
