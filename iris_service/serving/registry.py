"""Named, versioned models and the atomic swap that makes reloads safe.

No Flask here: the registry maps names to loaded models and replaces one with a
single reference assignment under a lock, so a request that already holds the
old model finishes on it while new requests get the new one.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import PICKLE_FORMATS, SUFFIX_FORMATS, manifest_path, read_manifest
from ..artifacts.formats import check_inside, is_hidden, resolves_inside
from ..errors import ArtifactError, IrisServiceError, ModelNotFound, ModelNotReady
from ..runtime import Model

log = logging.getLogger("iris_service.registry")

#: Preference among artifact formats found in one version folder.
FORMAT_PREFERENCE = ("joblib", "pickle", "onnx", "skops")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's artifact comes from: one file, or a folder of versions."""

    name: str
    path: Path | None = None
    model_dir: Path | None = None  # <model_dir>/<version>/<artifact>
    pinned_version: str | None = None
    root: Path | None = None  # the MODEL_DIR holding model_dir: nothing is read from outside it

    def versions(self) -> list[str]:
        """Versions on disk, oldest first (numeric parts compare as numbers)."""
        if self.model_dir is None or not self.model_dir.is_dir() or not resolves_inside(self.root, self.model_dir):
            return []  # a model folder linked elsewhere lists nothing of there; loading it says why
        found = [p.name for p in self.model_dir.iterdir() if p.is_dir() and not is_hidden(p)]
        return sorted(found, key=version_key)

    def resolve(self, version: str | None, pickle_allowed: bool) -> Path:
        """The artifact file to load for ``version`` (default: pinned, else newest)."""
        if self.model_dir is None:
            assert self.path is not None
            return self.path
        path = find_artifact(self.version_folder(version), pickle_allowed)
        what = f"Artifact {path.name} of {self.name!r} version {path.parent.name!r}"
        check_inside(self.root, path, what)
        check_inside(self.root, manifest_path(path), f"{what} has a manifest that")
        return path

    def check_layout(self, path: Path) -> None:
        """In MODEL_DIR, the manifest must name the ``<name>/<version>/`` folders it is in.

        Otherwise ``/models`` would list one version and serve another, and a
        version copied into the wrong folder would answer under a wrong name.
        """
        if self.model_dir is None:
            return
        manifest = read_manifest(path)
        if (manifest.name, manifest.version) != (self.name, path.parent.name):
            raise ArtifactError(
                f"The manifest in {self.name}/{path.parent.name}/ is for {manifest.name!r} version "
                f"{manifest.version!r}; in MODEL_DIR it must match its <name>/<version>/ folders."
            )

    def version_folder(self, version: str | None) -> Path:
        """The folder of ``version`` (default: pinned, else newest); 404 if absent."""
        assert self.model_dir is not None
        check_inside(self.root, self.model_dir, f"The folder of model {self.name!r}")
        available = self.versions()
        wanted = version or self.pinned_version or (available[-1] if available else None)
        if wanted is None:
            raise ArtifactError(f"No versions of {self.name!r} in its model folder.")
        if wanted not in available:
            raise ModelNotFound(
                f"Model {self.name!r} has no version {wanted!r}; "
                f"available: {', '.join(available) or 'none'}."
            )
        folder = self.model_dir / wanted
        check_inside(self.root, folder, f"Version {wanted!r} of {self.name!r}")
        return folder


def _printable(text: str) -> str:
    """``text`` with control characters, non-ASCII and backslashes escaped for a log line.

    The escaping of ``request_log.printable``, kept here so the registry stays free of Flask.
    """
    return text.encode("unicode_escape").decode("ascii")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-_]", version))


def artifacts_in(folder: Path) -> dict[str, Path]:
    """Format -> artifact file, for every file in ``folder`` that has a manifest."""
    found = {}
    for manifest in folder.glob("*.json"):
        if is_hidden(manifest):  # temp files, editors' backups
            continue
        artifact = manifest.with_name(manifest.name[: -len(".json")])
        fmt = SUFFIX_FORMATS.get(artifact.suffix.lower())
        if fmt is not None and artifact.is_file():
            found[fmt] = artifact
    return found


def find_artifact(folder: Path, pickle_allowed: bool = True) -> Path:
    """Pick the artifact in a version folder by its manifest (``<file>.json``)."""
    candidates = artifacts_in(folder)
    for fmt in FORMAT_PREFERENCE:
        if fmt in candidates and (pickle_allowed or fmt not in PICKLE_FORMATS):
            return candidates[fmt]
    # The version folder's name only: the message reaches HTTP clients on reload.
    raise ArtifactError(
        f"No usable artifact with a manifest in version {folder.name!r}"
        + ("" if pickle_allowed else " (pickle artifacts are not allowed; export ONNX or skops)")
        + "."
    )


def source_artifact(source: ModelSource, version: str | None = None) -> Path:
    """The scikit-learn artifact (joblib, pickle or skops) of a version, to convert from."""
    folder = source.version_folder(version)
    candidates = artifacts_in(folder)
    for fmt in ("joblib", "pickle", "skops"):
        if fmt in candidates:
            return candidates[fmt]
    raise ArtifactError(f"Version {folder.name!r} of {source.name!r} has no scikit-learn artifact to convert.")


@dataclass
class _Slot:
    source: ModelSource
    model: Model | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registry:
    """Every configured model, loaded and verified, by name."""

    def __init__(
        self,
        loader: Callable[[Path], Model],
        *,
        pickle_allowed: bool = True,
        on_load: Callable[[str, Model | None, Exception | None], None] | None = None,
    ) -> None:
        self._loader = loader
        self._pickle_allowed = pickle_allowed
        self._slots: dict[str, _Slot] = {}
        self._on_load = on_load
        self.default: str | None = None

    def add(self, source: ModelSource) -> None:
        self._slots[source.name] = _Slot(source)
        if self.default is None:
            self.default = source.name

    def load_all(self) -> dict[str, str]:
        """Load every model; return ``{name: reason}`` for the ones that failed."""
        failures = {}
        for name in self._slots:
            try:
                self.load(name)
            except IrisServiceError as exc:
                failures[name] = exc.message
        return failures

    def load(self, name: str, version: str | None = None) -> Model:
        """Load, verify and swap in a model; on failure the old one keeps serving."""
        slot = self._slot(name)
        with slot.lock:  # one reload of a model at a time; readers never wait
            try:
                path = slot.source.resolve(version, self._pickle_allowed)
                slot.source.check_layout(path)
                model = self._loader(path)
                if version is not None and model.version != version:  # a MODEL_PATH file has one version
                    raise ModelNotFound(
                        f"Model {name!r} has no version {version!r}; its artifact is version {model.version!r}."
                    )
            except IrisServiceError as exc:
                if slot.model is None:
                    slot.error = exc.message
                # The version comes from a client (the admin reload's query): escaped, as is
                # the message quoting it, so a newline in it cannot write a line of its own.
                log.warning("loading model %s (version %s) failed, %s: %s", _printable(name),
                            _printable(version or "default"),
                            "nothing served" if slot.model is None else "the old version keeps serving",
                            _printable(exc.message))
                self._notify(name, None, exc)
                raise
            slot.model = model
            slot.error = None
        log.info("serving model %s version %s from %s", name, model.version, path.name)
        self._notify(name, model, None)
        return model

    def unload(self, name: str) -> None:
        slot = self._slot(name)
        with slot.lock:
            slot.model = None
            slot.error = "unloaded"

    def get(self, name: str | None = None, version: str | None = None) -> Model:
        """The model serving ``name`` (default model when None); 404/503 otherwise."""
        slot = self._slot(name or self.default)
        model = slot.model
        if model is None:
            raise ModelNotReady(
                f"Model {slot.source.name!r} is not loaded: {(slot.error or 'loading').rstrip('.')}."
            )
        if version is not None and version != model.version:
            raise ModelNotFound(
                f"Model {model.name!r} serves version {model.version!r}, not {version!r}."
            )
        return model

    def names(self) -> list[str]:
        return list(self._slots)

    def source(self, name: str) -> ModelSource:
        return self._slot(name).source

    def status(self) -> dict[str, dict[str, str | None]]:
        """Name -> state, version and error, for health and repository listings."""
        out = {}
        for name, slot in self._slots.items():
            model = slot.model
            out[name] = {
                "state": "READY" if model is not None else "UNAVAILABLE",
                "version": model.version if model is not None else None,
                "reason": slot.error if model is None else None,
            }
        return out

    def ready(self) -> bool:
        return bool(self._slots) and all(s.model is not None for s in self._slots.values())

    def models(self) -> Iterable[Model]:
        return [s.model for s in self._slots.values() if s.model is not None]

    def _slot(self, name: str | None) -> _Slot:
        try:
            return self._slots[name]  # type: ignore[index]
        except KeyError:
            raise ModelNotFound(
                f"No model named {name!r}; known models: {', '.join(self._slots) or 'none'}.",
                errors={"known_models": list(self._slots)},
            ) from None

    def _notify(self, name: str, model: Model | None, error: Exception | None) -> None:
        if self._on_load is not None:
            self._on_load(name, model, error)
