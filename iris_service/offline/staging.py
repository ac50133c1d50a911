"""Output that appears whole or not at all: temp files and folders renamed into place, CSV/Parquet writers."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest

if TYPE_CHECKING:
    import pandas as pd


#: CSV cells are read as text: other columns come out exactly as they went in,
#: and an empty cell stays visible (pandas would turn it, and "NA", into NaN).
CSV_READ = {"dtype": str, "keep_default_na": False, "na_filter": False}


class FileScoringError(BadRequest):
    """The command line asked for something that cannot be done (no traceback shown)."""


class Writer:
    """Appends frames to one CSV or Parquet file, schema fixed by the first frame."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.empty = True
        self._parquet: Any = None

    def __enter__(self) -> Writer:
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


def header_only(source: Path, fmt: str) -> pd.DataFrame:
    import pandas as pd

    if fmt == "csv":
        return pd.read_csv(source, nrows=0, **CSV_READ)
    import pyarrow.parquet as pq

    return pq.read_schema(source).empty_table().to_pandas()


def row_count(source: Path, fmt: str) -> int | None:
    if fmt != "parquet":
        return None  # counting CSV rows would read the file twice
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(source).metadata.num_rows)


def refuse_overwrite(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.exists() and not force:
            raise FileScoringError(f"{path} already exists; pass --force to replace it.")


class Staged:
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


def commit(tmp: Path, target: Path) -> None:
    if target.is_dir():
        raise FileScoringError(f"{target} is a folder; give a file name for --out.")
    os.replace(tmp, target)


class StagedDir(Staged):
    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def commit_dir(tmp: Path, target: Path) -> None:
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


class ProgressBar:
    """tqdm on a terminal (rows and rows/s); nothing otherwise."""

    def __init__(self, show: bool | None, total: int | None) -> None:
        self.show = sys.stderr.isatty() if show is None else show
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> ProgressBar:
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
