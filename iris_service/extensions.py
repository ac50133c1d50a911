"""The Flask extension that owns the models of one app.

``ModelStore().init_app(app)`` builds a ``Registry`` from the app's config,
loads and verifies every model once, and keeps the registry in
``app.extensions["iris_service"]``; views reach it only through there.
"""
from __future__ import annotations

import atexit
import gc
import logging
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .artifacts import load_verified
from .auth import as_list
from .batching import BatchedModel, BatchingSettings, batched
from .config import Config, ConfigError
from .registry import ModelSource, Registry
from .runtime import Model, from_artifact

if TYPE_CHECKING:
    from .signing import TrustedKey

log = logging.getLogger(__name__)

EXTENSION_KEY = "iris_service"
BATCHERS_KEY = "iris_batchers"


#: Process-wide settings a host app that mounts our blueprints only gets if it sets them.
_HOST_OWNED = frozenset({"GC_THRESHOLD"})


class ModelStore:
    """Flask extension: the app's model registry."""

    def __init__(self, app: Flask | None = None) -> None:
        #: Called as hook(app, name, model_or_None, error_or_None, reload) after each
        #: load; ``reload`` is False for the loads made while the app starts.
        self.load_hooks: list[Callable[[Flask, str, Model | None, Exception | None, bool], None]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Registry:
        """Load every configured model; in production a failure stops startup."""
        for key in dir(Config):
            if key.isupper() and not key.startswith(("API_", "OPENAPI_")) and key not in _HOST_OWNED:
                app.config.setdefault(key, getattr(Config, key))
        config = app.config
        pickle_allowed = bool(config["PICKLE_ALLOWED"])
        try:
            batching = BatchingSettings.parse(config["BATCHING"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        trusted_keys = read_trusted_keys(config["TRUSTED_KEYS"])
        batchers = Batchers()
        app.extensions[BATCHERS_KEY] = batchers

        def load(path: Path) -> Model:
            artifact = load_verified(
                path,
                pickle_allowed=pickle_allowed,
                allow_version_mismatch=bool(config["ALLOW_VERSION_MISMATCH"]),
                skops_trusted_types=as_list(config["SKOPS_TRUSTED_TYPES"]),
                trusted_keys=trusted_keys,
            )
            model = from_artifact(artifact)
            if batching.mode == "auto":
                from .linear import check_sample

                return batched(model, batching, check_sample(model)[:64])
            return batched(model, batching)

        def on_load(name: str, model: Model | None, error: Exception | None) -> None:
            if model is not None:
                batchers.swapped(name, model)
            self._notify(app, name, model, error, started)

        registry = Registry(load, pickle_allowed=pickle_allowed, on_load=on_load)
        for source in model_sources(config):
            registry.add(source)
        if config.get("DEFAULT_MODEL"):
            registry.default = config["DEFAULT_MODEL"]
        app.extensions[EXTENSION_KEY] = registry
        started = False
        failures = registry.load_all()
        started = True
        for name, reason in failures.items():
            log.error("model %s failed to load: %s", name, reason)
        if failures and config.get("ENV_NAME") == "production":
            raise ConfigError(
                "Refusing to start: "
                + "; ".join(f"model {n!r}: {r}" for n, r in failures.items())
                + " (check IRIS_SERVICE_MODEL_PATH / MODELS / MODEL_DIR)."
            )
        if registry.default not in registry.names():
            raise ConfigError(
                f"DEFAULT_MODEL {registry.default!r} is not configured; "
                f"configured models: {', '.join(registry.names()) or 'none'}."
            )
        if not app.testing:
            settle_heap(config.get("GC_THRESHOLD"))
        return registry

    def _notify(
        self, app: Flask, name: str, model: Model | None, error: Exception | None, reload: bool
    ) -> None:
        for hook in self.load_hooks:
            hook(app, name, model, error, reload)


class Batchers:
    """The micro-batched models of one app, closed when replaced and at exit.

    Lives in ``app.extensions["iris_batchers"]``; the registry swaps models, this
    closes the batcher of the model a reload replaced (after the swap, so no new
    request reaches it; one that already holds it predicts directly).
    """

    def __init__(self) -> None:
        self._current: dict[str, Model] = {}
        atexit.register(_close_at_exit, weakref.ref(self))

    def swapped(self, name: str, model: Model) -> None:
        old = self._current.get(name)
        self._current[name] = model
        if isinstance(old, BatchedModel) and old is not model:
            old.close()

    def batched(self) -> list[BatchedModel]:
        """The models currently served through a batcher."""
        return [m for m in self._current.values() if isinstance(m, BatchedModel)]

    def close(self) -> None:
        """Drain and stop every batcher (shut-down)."""
        for model in self.batched():
            model.close()


def _close_at_exit(ref: weakref.ref[Batchers]) -> None:
    batchers = ref()
    if batchers is not None:
        batchers.close()


def read_trusted_keys(paths: Any) -> tuple[TrustedKey, ...]:
    """``TRUSTED_KEYS``' files, read once at start; a missing or bad one stops start-up.

    Reloads check signatures with the keys read here: a key file changed on
    disk later is not picked up by a running server.
    """
    if not as_list(paths):
        return ()
    from .signing import KeyFileError, load_trusted_keys  # cryptography is imported only when needed

    try:
        keys = load_trusted_keys(as_list(paths))
    except KeyFileError as exc:
        raise ConfigError(f"TRUSTED_KEYS: {exc}") from None
    for key in keys:
        log.info("artifacts must be signed: trusting key %s from %s", key.key_id[:16], key.source)
    return keys


def model_sources(config: Any) -> list[ModelSource]:
    """Turn ``MODEL_PATH``, ``MODELS`` and ``MODEL_DIR`` into registry sources.

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
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not names:
            raise ConfigError(f"MODEL_DIR {root} holds no <name>/<version>/ folders.")
        sources.extend(
            ModelSource(name=n, model_dir=root / n, pinned_version=pins.get(n)) for n in names
        )
    if not sources:
        raise ConfigError(
            "No model configured: set IRIS_SERVICE_MODEL_PATH (or MODELS / MODEL_DIR)."
        )
    return sources


def _name_from_manifest(path: Path) -> str:
    from .artifacts import read_manifest
    from .errors import ArtifactError

    try:
        return read_manifest(path).name
    except ArtifactError:
        return path.parent.name if path.stem == "model" else path.stem


def registry() -> Registry:
    """The registry of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]


def settle_heap(threshold: Sequence[int] | None) -> None:
    """Freeze what start-up loaded out of the collector, then apply ``GC_THRESHOLD``.

    What is loaded now lives as long as the process: frozen, a 10,000-row
    request's lists no longer trigger full collections that rescan scikit-learn's
    objects (3x faster batches), and forked gunicorn workers keep sharing these
    pages. A request makes garbage that reference counting frees, not cycles, yet
    Python's default first threshold (700 allocations) still runs a collection
    every few dozen rows of a batch: about 12% of a 10,000-row request. A
    threshold of 50,000 keeps that under 2%, for at most a few megabytes of
    cyclic garbage waiting a little longer. ``None`` keeps Python's thresholds.
    """
    gc.collect()
    gc.freeze()
    if threshold:
        gc.set_threshold(*threshold)
