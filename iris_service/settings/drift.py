"""``DRIFT_ENABLED`` and ``DRIFT_WINDOW``, checked at start: a bad one stops start-up with one line naming it.

Apart from ``checks.py`` so drift's settings travel with the feature: the window
is a numpy buffer of ``DRIFT_WINDOW`` rows per model, so its range is bounded
(below 100 rows the PSI of ten bins is noise; above a million the buffers cost
more memory than the models).
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError

WINDOW_RANGE = (100, 1_000_000)


def check_drift(settings: dict[str, Any]) -> None:
    """Refuse a ``DRIFT_ENABLED`` that is not a boolean or a ``DRIFT_WINDOW`` outside ``WINDOW_RANGE``."""
    enabled = settings.get("DRIFT_ENABLED", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"DRIFT_ENABLED must be true or false, not {enabled!r}.")
    window = settings.get("DRIFT_WINDOW", 1000)
    low, high = WINDOW_RANGE
    if isinstance(window, bool) or not isinstance(window, int) or not low <= window <= high:
        raise ConfigError(f"DRIFT_WINDOW must be a whole number of rows from {low} to {high:,}, not {window!r}.")
