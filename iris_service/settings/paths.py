"""Where the model settings point, checked before anything loads: one line naming the setting and the path.

Why before the data plane: a missing file found while loading is reported by
the registry (logged), by the data plane (logged) and by the command (its
error), and those messages name the file only, because they also reach HTTP
clients through readiness and reload answers. At start-up the operator is the
reader, so this message names the setting and the absolute path looked at.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def model_file_problem(settings: Mapping[str, Any], development_default: Path | None = None) -> str | None:
    """The first configured model path that cannot be what it should be, as one line; None when all can.

    ``development_default`` is the instance folder's model, which the development
    environment points ``MODEL_PATH`` at when nothing else is configured.
    """
    path = settings.get("MODEL_PATH")
    if path:
        default = development_default is not None and Path(path) == development_default
        problem = _artifact_problem("MODEL_PATH", Path(path), default)
        if problem:
            return problem
    for name, entry in (settings.get("MODELS") or {}).items():
        problem = _artifact_problem(f"MODELS[{name!r}]", Path(entry), False)
        if problem:
            return problem
    folder = settings.get("MODEL_DIR")
    if folder:
        shown = Path(folder).absolute()
        if not shown.exists():
            return f"MODEL_DIR points at {shown}, which does not exist; create it (iris-service train --model-dir " \
                   f"{shown}) or fix MODEL_DIR."
        if not shown.is_dir():
            return f"MODEL_DIR points at {shown}, which is a file; MODEL_DIR is a folder of <name>/<version>/ " \
                   "folders (for one file, set MODEL_PATH)."
    return None


def _artifact_problem(setting: str, path: Path, development_default: bool) -> str | None:
    shown = path.absolute()
    if shown.is_file():
        return None
    if shown.is_dir():
        return (f"{setting} points at {shown}, which is a folder; name the artifact file in it "
                f"(e.g. {shown / 'model.joblib'}), or set MODEL_DIR for a folder of <name>/<version>/ folders.")
    if development_default:
        return (f"{setting} is the development model {shown} (nothing else is configured), which does not "
                "exist yet; train it with 'iris-service train' or set IRIS_SERVICE_MODEL_PATH.")
    return (f"{setting} points at {shown}, which does not exist; train one there with "
            f"'iris-service train --out {shown}' or fix the setting.")
