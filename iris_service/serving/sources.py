"""Where models come from: ``MODEL_PATH``, ``MODELS`` and ``MODEL_DIR`` turned into registry sources."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..artifacts import read_manifest
from ..artifacts.formats import is_hidden
from ..errors import ArtifactError, ConfigError
from .registry import ModelSource


def model_sources(config: Mapping[str, Any]) -> list[ModelSource]:
    """One source per configured model, in the order the default is chosen from.

    ``MODEL_PATH`` names its model after the manifest (``iris`` by default), so
    the single-file setup of the tutorial keeps working next to the registry.
    """
    sources: list[ModelSource] = []
    if config.get("MODEL_PATH"):
        path = Path(config["MODEL_PATH"])
        sources.append(ModelSource(name=_name_from_manifest(path), path=path))
    for name, path in (config.get("MODELS") or {}).items():
        sources.append(ModelSource(name=name, path=Path(path)))
    if config.get("MODEL_DIR"):
        root = Path(config["MODEL_DIR"])
        pins = config.get("MODEL_VERSIONS") or {}
        # .git, .ipynb_checkpoints and the like are not models.
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p)) if root.is_dir() else []
        if not names:
            raise ConfigError(f"MODEL_DIR {root} holds no <name>/<version>/ folders.")
        sources.extend(
            ModelSource(name=n, model_dir=root / n, pinned_version=pins.get(n), root=root) for n in names
        )
    if not sources:
        raise ConfigError(
            "No model configured: set IRIS_SERVICE_MODEL_PATH (or MODELS / MODEL_DIR)."
        )
    return sources


def _name_from_manifest(path: Path) -> str:
    try:
        return read_manifest(path).name
    except ArtifactError:
        return path.parent.name if path.stem == "model" else path.stem
