"""Drift tracking: served values against each feature's training deciles, per model.

The data plane hands every answered request's float rows to ``DriftMonitor.observe``.
A request only appends its rows to the model's queue, with no lock: under
granian's threads a lock taken by every request became a convoy (threads
parked on it cost 5% of single-row req/s). Once a window's worth of rows is
queued, or when someone reads (a scrape, ``GET /models/<name>/drift``), one
thread drains the queue under the lock: binning into the histogram and
out-of-range counts in bulk, numpy-vectorised, and the last ``DRIFT_WINDOW``
rows into the ring buffer. The population stability index is computed from
the window on read, never per request.

State is kept per model object (weakly, as the range policy's bounds): a
reload starts a fresh window for the new version. No web framework and no
metrics library here: the REST metrics read ``snapshot()``.
"""
from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt

from ..artifacts.profile import FeatureProfile, read_profile
from ..runtime import Model

DEFAULT_WINDOW = 1000
#: The PSI of ten bins over fewer rows is noise (and an alert on it a false one): null until then.
MIN_ROWS = 100
#: Shares are floored at this before the logarithm: an empty bin gives a large, finite PSI.
EPSILON = 1e-4
NO_PROFILE = "has no training profile in its manifest (a registered estimator: no training rows were given)"
DISABLED = "Drift tracking is off (DRIFT_ENABLED is false)."


@dataclass(frozen=True)
class DriftSettings:
    """``DRIFT_ENABLED`` and ``DRIFT_WINDOW``, checked by ``settings.drift`` before they get here."""

    enabled: bool = True
    window: int = DEFAULT_WINDOW

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DriftSettings:
        return cls(bool(config.get("DRIFT_ENABLED", True)), int(config.get("DRIFT_WINDOW", DEFAULT_WINDOW)))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature at one moment: the window's PSI and out-of-range share, and the counts since start."""

    name: str
    psi: float | None  # None while the window holds fewer than MIN_ROWS rows
    out_of_range_share: float | None
    buckets: tuple[tuple[float, int], ...]  # (upper bound, cumulative count), the last bound +inf
    total: float
    out_of_range: int


@dataclass(frozen=True)
class DriftSnapshot:
    model: str
    version: str
    window: int
    rows: int  # rows in the window now (at most ``window``)
    count: int  # rows observed since the model was loaded
    features: tuple[FeatureDrift, ...]


#: Up to this many edges a feature's values are compared with each edge; past it, binary-searched.
COMPARED_EDGES = 32


class ModelDrift:
    """One model version's ring buffer of recent rows and its cumulative per-feature counts."""

    def __init__(self, model: Model, profiles: tuple[FeatureProfile, ...], size: int) -> None:
        self.model_name, self.version = model.name, str(model.version)
        self.profiles = profiles
        features = len(profiles)
        width = max(len(p.edges) for p in profiles)
        self._edge_arrays = [np.asarray(p.edges, dtype=np.float64) for p in profiles]
        self._bins = width + 1
        self._low = np.array([p.low for p in profiles])
        self._high = np.array([p.high for p in profiles])
        self._size = size
        self._ring = np.empty((size, features))
        self._pos = self._filled = self._count = 0
        #: Rows not counted yet, in arrival order; ``_queued`` their number, a hint that may lag
        #: (``+=`` from several threads can lose an update), so a drain comes a few rows late at worst.
        self._queue: deque[npt.NDArray[np.float64]] = deque()
        self._queued = 0
        self._counts = np.zeros((features, self._bins), dtype=np.int64)
        self._sums = np.zeros(features)
        self._outside = np.zeros(features, dtype=np.int64)
        self._lock = threading.Lock()

    def observe(self, x: npt.NDArray[np.float64]) -> None:
        """Queue a copy of ``x`` (rows ordered by the model's features); count in bulk, a window at a time.

        ``deque.append`` needs no lock. The thread whose rows fill a window drains
        the queue, unless another is draining already (it takes these rows too).
        """
        self._queue.append(np.array(x, dtype=np.float64))  # a copy: the caller's buffer may be reused
        self._queued += x.shape[0]
        if self._queued >= self._size and self._lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._lock.release()

    def snapshot(self) -> DriftSnapshot:
        """Counts since load and the window's PSI and out-of-range share per feature."""
        with self._lock:
            self._drain()
            window = self._ring[: self._filled].copy()
            counts, sums, outside, count = self._counts.copy(), self._sums.copy(), self._outside.copy(), self._count
        observed = self._histogram(window) if len(window) >= MIN_ROWS else None
        window_outside = ((window < self._low) | (window > self._high)).mean(axis=0) if len(window) else None
        features = []
        for j, p in enumerate(self.profiles):
            bins = len(p.edges) + 1
            cumulative = np.cumsum(counts[j, :bins])
            features.append(FeatureDrift(
                name=p.name,
                psi=psi(observed[j, :bins] / len(window), p.shares) if observed is not None else None,
                out_of_range_share=float(window_outside[j]) if window_outside is not None else None,
                buckets=tuple(zip((*p.edges, float("inf")), (int(c) for c in cumulative), strict=True)),
                total=float(sums[j]),
                out_of_range=int(outside[j]),
            ))
        return DriftSnapshot(self.model_name, self.version, self._size, len(window), count, tuple(features))

    def _histogram(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Rows per (feature, bin): bin k holds values above k edges (``le`` buckets, closed on the right)."""
        return self._histogram_of(np.ascontiguousarray(x.T), x.shape[0])

    def _histogram_of(self, columns: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.int64]:
        """``_histogram`` of the rows' transpose (one contiguous row per feature).

        A profile's edges are few and sorted (a feature's unique deciles), so each
        feature's values are compared with every edge at once and counted per edge:
        ``above[k]`` values exceed edge k, and bin k holds ``above[k-1] - above[k]``
        (the values above exactly k edges). On a 10,000-row batch that is a quarter
        of a binary search per value (``searchsorted``), which is kept for a profile
        of many edges. NaN exceeds no edge and lands in bin 0.
        """
        counts = np.zeros(self._counts.shape, dtype=np.int64)
        for j, edges in enumerate(self._edge_arrays):
            column, m = columns[j], len(edges)
            if m <= COMPARED_EDGES:
                above = np.count_nonzero(column > edges[:, None], axis=1)
                counts[j, : m + 1] = -np.diff(np.concatenate(([n], above, [0])))
                continue
            bins = np.searchsorted(edges, column, side="left")
            nan = np.isnan(column)
            if nan.any():
                bins[nan] = 0
            counts[j, : m + 1] = np.bincount(bins, minlength=m + 1)
        return counts

    def _tally(self, x: npt.NDArray[np.float64]) -> None:
        # Per-feature work reads contiguous rows of the transpose: numpy's reductions along
        # the short axis of an (n, features) array cost ten times as much.
        columns = np.ascontiguousarray(x.T)
        self._counts += self._histogram_of(columns, x.shape[0])
        # float64 sums, as Prometheus keeps a histogram's _sum: past 1.8e308 the total is +Inf
        # (NaN once +Inf and -Inf meet), a value, never a warning on every scrape.
        with np.errstate(over="ignore", invalid="ignore"):
            self._sums += columns.sum(axis=1)
        self._outside += np.count_nonzero((columns < self._low[:, None]) | (columns > self._high[:, None]), axis=1)
        self._count += x.shape[0]

    def _drain(self) -> None:
        """Count every queued row and keep the last ``size`` of them in the ring (the lock held)."""
        self._queued = 0
        queue, taken = self._queue, []
        while queue:
            taken.append(queue.popleft())  # appends racing this loop are taken too, or by the next drain
        if not taken:
            return
        rows = taken[0] if len(taken) == 1 else np.concatenate(taken)
        self._tally(rows)
        n, size = rows.shape[0], self._size
        if n >= size:
            self._ring[:] = rows[-size:]
            self._pos, self._filled = 0, size
            return
        pos, end = self._pos, self._pos + n
        if end <= size:
            self._ring[pos:end] = rows
        else:
            self._ring[pos:] = rows[: size - pos]
            self._ring[: end - size] = rows[size - pos:]
        self._pos = end % size
        self._filled = min(size, self._filled + n)


def psi(observed: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """Population stability index of observed against expected bin shares: sum (o - e) ln(o / e)."""
    o = np.maximum(np.asarray(observed, dtype=np.float64), EPSILON)
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    return float(np.sum((o - e) * np.log(o / e)))


class DriftMonitor:
    """The drift state of every model a data plane serves; ``observe`` is its one per-request call."""

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self._models: WeakKeyDictionary[Any, ModelDrift | None] = WeakKeyDictionary()
        self._lock = threading.Lock()
        #: The last model observed (weakly) and its state: one model serves most requests, and a
        #: ``WeakKeyDictionary`` lookup makes a new weak reference each time. One tuple, swapped whole.
        self._last: tuple[Any, ModelDrift | None] = (lambda: None, None)

    def observe(self, model: Model, x: npt.NDArray[np.float64]) -> None:
        """Note one answered request's rows (cheap: a lookup and a copy)."""
        if not self.settings.enabled:
            return
        last, state = self._last
        if last() is not model:
            try:
                state = self._models.get(model, _UNKNOWN)
                if state is _UNKNOWN:
                    state = self.tracker(model)
                self._last = (weakref.ref(model), state)
            except TypeError:  # an unhashable (or unreferenceable) model wrapper: not tracked rather than failed
                return
        if state is not None:
            state.observe(x)

    def tracker(self, model: Model) -> ModelDrift | None:
        """``model``'s drift state, created on first use; None when drift is off or it has no profile."""
        if not self.settings.enabled:
            return None
        with self._lock:
            try:
                state = self._models.get(model, _UNKNOWN)
                if state is _UNKNOWN:
                    profiles = read_profile(model.manifest)
                    state = self._models[model] = (
                        ModelDrift(model, profiles, self.settings.window) if profiles else None
                    )
            except TypeError:
                return None
        return state  # type: ignore[return-value]

    def why_untracked(self, model: Model) -> str | None:
        """Why ``model``'s drift is not tracked, as one line for a client; None when it is."""
        if not self.settings.enabled:
            return DISABLED
        if self.tracker(model) is None:
            return (
                f"Model {model.name!r} version {model.version!r} {NO_PROFILE}; train it with "
                "'iris-service train' or register it again with --background FILE (a CSV of its training rows)."
            )
        return None


_UNKNOWN: Any = object()
