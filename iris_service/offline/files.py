"""Score CSV and Parquet files in chunks, on one machine or on a Dask cluster.

Both engines run ``batch.score_frame`` on each piece. Output goes to a
temporary file (or folder) beside the target and is renamed into place only
after the last row is written, so a failed or interrupted run never leaves a
half-written output under the real name.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .batch import score_frame, split_valid
from .errors import BadRequest
from .runtime import Model

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ENGINES = ("local", "dask")
ON_ERROR = ("fail", "skip")
DEFAULT_CHUNK_SIZE = 100_000
#: CSV cells are read as text: other columns come out exactly as they went in,
#: and an empty cell stays visible (pandas would turn it, and "NA", into NaN).
_CSV_READ = {"dtype": str, "keep_default_na": False, "na_filter": False}


class FileScoringError(BadRequest):
    """The command line asked for something that cannot be done (no traceback shown)."""


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
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise FileScoringError(
            f"Cannot tell the format of {path.name!r}: name it .csv, .parquet or .pq."
        ) from None


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
    _refuse_overwrite([output, *([rejects] if rejects else [])], force)
    if chunk_size < 1:
        raise FileScoringError("--chunk-size must be at least 1.")
    started = time.perf_counter()
    rows = rejected = 0
    with ExitStack() as stack:
        out_tmp = stack.enter_context(_staged(output))
        rej_tmp = stack.enter_context(_staged(rejects)) if rejects else None
        writer = stack.enter_context(_Writer(out_tmp, out_fmt))
        rej_writer = stack.enter_context(_Writer(rej_tmp, "csv")) if rej_tmp else None
        bar = stack.enter_context(_progress(progress, _row_count(source, in_fmt)))
        for chunk in read_chunks(source, in_fmt, chunk_size):
            if rej_writer is not None:
                scored, bad = split_valid(chunk, model)
                if len(bad):
                    rej_writer.write(bad)
                    rejected += len(bad)
            else:
                scored = score_frame(chunk, model)
            writer.write(scored)
            rows += len(scored)
            bar.update(len(chunk))
        if writer.empty:
            writer.write(score_frame(_header_only(source, in_fmt), model))
        if rej_writer is not None and rej_writer.empty:
            rej_tmp = None  # no rejects: no file
        writer.close()
        if rej_writer is not None:
            rej_writer.close()
        _commit(out_tmp, output)
        if rej_tmp is not None:
            _commit(rej_tmp, rejects)  # type: ignore[arg-type]
    return ScoreReport(output, rows, rejected, rejects if rejected else None, time.perf_counter() - started)


def read_chunks(source: Path, fmt: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The file in frames of at most ``chunk_size`` rows, indexed by row (0-based) in the file."""
    import pandas as pd

    if fmt == "csv":
        with pd.read_csv(source, chunksize=chunk_size, **_CSV_READ) as reader:
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
    _refuse_overwrite([output, *([rejects] if rejects else [])], force)
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
            frame = dd.read_csv(str(source), blocksize=blocksize, **_CSV_READ)
        else:
            frame = dd.read_parquet(str(source))
        out_tmp = stack.enter_context(_staged_dir(output))
        rej_tmp = stack.enter_context(_staged_dir(rejects)) if rejects else None
        # Each partition scores and writes its own part, then reports its counts:
        # one pass over the data and one small result back to the client.
        counts = frame.map_partitions(
            _score_part, model, out_tmp, out_fmt, rej_tmp,
            meta={"rows": "int64", "rejected": "int64"}, enforce_metadata=False,
        ).compute(scheduler=client.get)
        rows, rejected = int(counts["rows"].sum()), int(counts["rejected"].sum())
        _commit_dir(out_tmp, output)
        if rejects is not None and rej_tmp is not None and rejected:
            _commit_dir(rej_tmp, rejects)
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
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score one partition, write ``part.<n>`` (and its rejects), return the counts."""
    import pandas as pd

    number = int((partition_info or {}).get("number") or 0)
    name = f"part.{_part_name(number)}"
    if rejects_dir is None:
        scored, bad = score_frame(frame, model, where=f"of partition {number}"), frame.iloc[0:0]
    else:
        scored, bad = split_valid(frame, model)
        if len(bad):
            with _Writer(rejects_dir / f"{name}.csv", "csv") as writer:
                writer.write(bad)
    with _Writer(out_dir / f"{name}.{fmt}", fmt) as writer:
        writer.write(scored)
    return pd.DataFrame({"rows": [len(scored)], "rejected": [len(bad)]})


class _Writer:
    """Appends frames to one CSV or Parquet file, schema fixed by the first frame."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.empty = True
        self._parquet: Any = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            frame.to_csv(self.path, mode="w" if self.empty else "a", header=self.empty, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            else:
                table = pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)
            self._parquet.write_table(table)
        self.empty = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


def _header_only(source: Path, fmt: str) -> pd.DataFrame:
    import pandas as pd

    if fmt == "csv":
        return pd.read_csv(source, nrows=0, **_CSV_READ)
    import pyarrow.parquet as pq

    return pq.read_schema(source).empty_table().to_pandas()


def _row_count(source: Path, fmt: str) -> int | None:
    if fmt != "parquet":
        return None  # counting CSV rows would read the file twice
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(source).metadata.num_rows)


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.exists() and not force:
            raise FileScoringError(f"{path} already exists; pass --force to replace it.")


class _staged:
    """A temp file beside ``target``; removed on error, renamed by ``_commit``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
        os.close(fd)
        self.path = Path(name)
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _commit(tmp: Path, target: Path) -> None:
    if target.is_dir():
        raise FileScoringError(f"{target} is a folder; give a file name for --out.")
    os.replace(tmp, target)


class _staged_dir(_staged):
    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _commit_dir(tmp: Path, target: Path) -> None:
    """Swap the finished folder in; an old one (``--force``) is removed only afterwards."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


class _progress:
    """tqdm on a terminal (rows and rows/s); nothing otherwise."""

    def __init__(self, show: bool | None, total: int | None) -> None:
        self.show = sys.stderr.isatty() if show is None else show
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> _progress:
        if self.show:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)
        return self

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
