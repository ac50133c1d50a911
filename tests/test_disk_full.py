"""A full disk while training writes an artifact never leaves a half-written one behind."""
from __future__ import annotations

import errno
import os

from click.testing import CliRunner

from iris_service import training
from iris_service.artifacts import files as artifacts
from iris_service.artifacts import load_verified, manifest_path
from iris_service.cli import main


class _FullDisk:
    """A file whose writes stop half-way with ENOSPC, as on a full file system."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def fill_disk(monkeypatch) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(artifacts.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode)))


def test_disk_full_keeps_the_previous_artifact_whole(tmp_path, monkeypatch):
    out = tmp_path / "model.joblib"
    training.train(out, version="1")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    fill_disk(monkeypatch)
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--out", str(out), "--version", "2", "--force"])
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    assert "Traceback" not in result.output

    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files, nothing changed
    assert load_verified(out).manifest.version == "1"


def test_disk_full_on_a_new_artifact_leaves_nothing_loadable(tmp_path, monkeypatch):
    out = tmp_path / "iris" / "3" / "model.joblib"
    fill_disk(monkeypatch)
    result = CliRunner().invoke(main, ["train", "--out", str(out), "--version", "3"])
    assert result.exit_code == 1
    monkeypatch.undo()
    assert not out.exists()
    assert not manifest_path(out).exists()
    assert list(out.parent.iterdir()) == []
