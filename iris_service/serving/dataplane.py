"""The data plane: every front-end's one way to infer, probe, describe, load and unload models.

REST blueprints, file scoring and any other front-end (gRPC) call this; it
knows no web framework. ``run`` is lookup, decode, row limit and range policy,
predict, encode: a fix here fixes ``/predict``, V1, V2 and MLflow at once, and
the protocol unit is the only part that differs. Its result carries what
metrics and logs need, so the front-end records it in its own hooks.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..artifacts import load_verified
from ..artifacts.profile import read_profile
from ..errors import ConfigError, InvalidInput, IrisServiceError
from ..protocols import Decoded, Limits, Protocol
from ..runtime import Model, Prediction, from_artifact
from ..runtime.batching import BatchedModel, batched
from ..runtime.equivalence import stress_sample
from .drift import DriftMonitor
from .ranges import RangePolicy

if TYPE_CHECKING:
    from .explain import ExplainResult
from .registry import ModelSource, Registry
from .settings import ServingSettings

log = logging.getLogger("iris_service.serving")

#: hook(name, model or None, error or None, reload) after every load attempt.
LoadHook = Callable[[str, Model | None, Exception | None, bool], None]
Span = Callable[[str], AbstractContextManager[Any]]


class InferResult(NamedTuple):
    """One answered request: the protocol's answer and what metrics and logs record about it.

    A named tuple, not a frozen dataclass: it is made once per request, and a
    frozen dataclass's ``__init__`` costs several times as much.
    """

    model: Model
    rows: int
    prediction: Prediction
    answer: Any
    #: The decoded rows the model saw (float64, one row per input): what payload logs record.
    x: Any = None

    def class_counts(self) -> list[tuple[str, int]]:
        """Rows per predicted class name; empty for regressors (and classes without names)."""
        classes, names = self.prediction.classes, self.model.class_names
        if classes is None or not names or classes.ndim != 1 or classes.size == 0:
            return []
        if classes.size == 1:  # the common case: naming one class is cheaper than numpy
            index = int(classes[0])
            return [(names[index], 1)] if 0 <= index < len(names) else []
        if classes.dtype.kind not in "iu" or classes.min() < 0:
            return []
        counts = np.bincount(classes, minlength=len(names))
        return [(names[i], int(c)) for i, c in enumerate(counts[: len(names)]) if c]


class DataPlane:
    """The models of one service and the policies every request goes through."""

    def __init__(self, registry: Registry, settings: ServingSettings, span: Span | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.ranges = RangePolicy(settings.range_policy, settings.range_margin)
        self.limits = Limits(settings.max_batch_size)
        self.drift = DriftMonitor(settings.drift)
        self._span = span or _no_span

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        sources: Sequence[ModelSource],
        settings: ServingSettings,
        *,
        default: str | None = None,
        load_hooks: Sequence[LoadHook] = (),
        span: Span | None = None,
    ) -> DataPlane:
        """Load and verify every source; in production a failure stops start-up (``ConfigError``)."""
        batchers = _Batchers()
        started = False

        def on_load(name: str, model: Model | None, error: Exception | None) -> None:
            if model is not None:
                batchers.swapped(name, model)
            for hook in load_hooks:
                hook(name, model, error, started)

        registry = Registry(_loader(settings), pickle_allowed=settings.load.pickle_allowed, on_load=on_load)
        for source in sources:
            registry.add(source)
        if default:
            registry.default = default
        plane = cls(registry, settings, span)
        plane._batchers = batchers
        failures = registry.load_all()
        started = True
        for name, reason in failures.items():
            log.error("model %s failed to load: %s", name, reason)
        if failures and settings.production:
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
        return plane

    _batchers: _Batchers | None = None

    # -- inference --------------------------------------------------------------------------

    def infer(self, name: str | None, body: Any, protocol: Protocol, version: str | None = None) -> InferResult:
        """Answer one request for model ``name`` (the default model when None) in ``protocol``."""
        return self.run(self.model(name, version), body, protocol)

    def run(self, model: Model, body: Any, protocol: Protocol) -> InferResult:
        """Decode, check, predict and encode one request for an already looked-up ``model``."""
        span = self._span
        with span("decode"):
            decoded = protocol.decode(body, model, self.limits)
        x = decoded.x
        rows = x.shape[0]
        if rows > self.limits.max_rows or self.ranges.rejects:
            self.check_rows(model, x, protocol.INPUT_ERROR, decoded)
        with span("predict"):
            prediction = model.predict(x)
        # One reduction each: a sum is finite when every term is (or, rarely, when huge terms overflow it).
        probabilities, values = prediction.probabilities, prediction.values
        if (probabilities is not None and not math.isfinite(probabilities.sum())) or (
            values is not None and not math.isfinite(values.sum())
        ):
            _check_finite(prediction, protocol.INPUT_ERROR)
        self.drift.observe(model, x)  # a copy into the model's window; statistics are computed on read
        with span("encode"):
            answer = protocol.encode(prediction, model, decoded)
        return InferResult(model, rows, prediction, answer, x)

    def explain(self, model: Model, body: Any, protocol: Protocol, *, named: bool = True) -> ExplainResult:
        """Each feature's contribution to each class's score for one request (``serving/explain.py``)."""
        from .explain import explain

        return explain(self, model, body, protocol, named=named)

    def check_rows(
        self, model: Model, x: Any, error: type[IrisServiceError] = InvalidInput, decoded: Decoded | None = None
    ) -> None:
        """The row limit and the range policy, as every request and file chunk gets them."""
        rows = x.shape[0]
        limit = self.settings.max_batch_size
        if rows > limit:
            raise error(f"At most {limit} rows per request; got {rows}.")
        if self.ranges.rejects:
            location = decoded.location if decoded is not None else ()
            self.ranges.check(x, model, error, location, decoded.single if decoded is not None else False)

    # -- models -----------------------------------------------------------------------------

    def model(self, name: str | None = None, version: str | None = None) -> Model:
        """The model serving ``name`` (the default when None); 404 unknown, 503 not loaded."""
        return self.registry.get(name, version)

    @property
    def default(self) -> str | None:
        return self.registry.default

    def max_features(self) -> int:
        """The widest loaded model's feature count (0 with none): what bounds a body before its model is known."""
        return max((m.n_features for m in self.registry.models()), default=0)

    def names(self) -> list[str]:
        return self.registry.names()

    def versions(self, name: str) -> list[str]:
        """Versions on disk, or the one served for a single-file model."""
        found = self.registry.source(name).versions()
        if found:
            return found
        version = self.registry.status().get(name, {}).get("version")
        return [version] if version else []

    def status(self) -> dict[str, dict[str, str | None]]:
        return self.registry.status()

    def unready(self) -> dict[str, str | None]:
        """Model name -> why it is not served, for every configured model that is not (empty: ready)."""
        return {n: s["reason"] for n, s in self.registry.status().items() if s["state"] != "READY"}

    def ready(self) -> bool:
        return self.registry.ready()

    def load(self, name: str, version: str | None = None) -> Model:
        """Load, verify and swap in a model; on failure the old one keeps serving."""
        return self.registry.load(name, version)

    def unload(self, name: str) -> None:
        self.registry.unload(name)

    def batched_models(self) -> list[BatchedModel]:
        return self._batchers.batched() if self._batchers is not None else []

    def close(self) -> None:
        """Drain and stop every micro-batcher (shut-down)."""
        if self._batchers is not None:
            self._batchers.close()


def _loader(settings: ServingSettings) -> Callable[[Path], Model]:
    options = settings.load

    def load(path: Path) -> Model:
        artifact = load_verified(
            path,
            pickle_allowed=options.pickle_allowed,
            allow_version_mismatch=options.allow_version_mismatch,
            skops_trusted_types=options.skops_trusted_types,
            trusted_keys=options.trusted_keys,
        )
        read_profile(artifact.manifest)  # a training profile that does not add up refuses the load
        model = from_artifact(artifact)
        sample = stress_sample(model.manifest)[:64] if settings.batching.mode == "auto" else None
        return batched(model, settings.batching, sample)

    return load


def _check_finite(prediction: Prediction, error: type[IrisServiceError]) -> None:
    """A served answer never holds NaN or infinity: such a row is the client's to fix, named."""
    for part in (prediction.probabilities, prediction.values):
        if part is not None and not np.isfinite(part).all():
            bad = np.flatnonzero(~np.isfinite(part.reshape(len(part), -1)).all(axis=1))
            raise error(f"Row {int(bad[0])}: the values are too large for this model to give finite {_what(prediction)}.")


def _what(prediction: Prediction) -> str:
    return "probabilities" if prediction.probabilities is not None else "values"


class _Batchers:
    """The micro-batched models of one data plane, each closed when a reload replaces it.

    The registry swaps models; this closes the batcher of the replaced model
    (after the swap, so no new request reaches it; one that already holds it
    predicts directly).
    """

    def __init__(self) -> None:
        self._current: dict[str, Model] = {}

    def swapped(self, name: str, model: Model) -> None:
        old = self._current.get(name)
        self._current[name] = model
        if isinstance(old, BatchedModel) and old is not model:
            old.close()

    def batched(self) -> list[BatchedModel]:
        return [m for m in self._current.values() if isinstance(m, BatchedModel)]

    def close(self) -> None:
        for model in self.batched():
            model.close()


#: Stateless and reusable: one no-op context serves every step of every request.
_NO_SPAN: nullcontext[None] = nullcontext()


def _no_span(name: str) -> nullcontext[None]:
    return _NO_SPAN
