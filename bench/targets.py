"""The performance targets as ratios between numbers from the same run.

Ratios from one run on one machine cancel out how fast the machine is, which
absolute numbers would not. Each check names two values in the results by
path, a comparison and a threshold; change a goal here and nowhere else.
The thresholds are issue 18's S1-S8 (S7 keeps issue 7's T1 and T2), issue
19's G1-G2 and issue 20's P1-P2. The values are the
medians over the run's rounds (bench/rounds.py), so one slow or fast round
does not decide a ratio. Each round's own ratio (both values from that round)
is reported next to it: a target met in one round and missed in the next is
within the machine's noise, one missed in every round is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]


def _rps(server: str, scenario: str) -> Path:
    return ("servers", server, "scenarios", scenario, "requests_per_s")


def _rows(server: str, scenario: str) -> Path:
    return ("servers", server, "scenarios", scenario, "rows_per_s")


def _p99(server: str, scenario: str) -> Path:
    return ("servers", server, "scenarios", scenario, "p99_ms")


def _server(server: str, key: str) -> Path:
    return ("servers", server, key)


@dataclass(frozen=True)
class Check:
    """``value(numerator) / value(denominator)`` compared with ``threshold``.

    ``requires`` names a value that must be true for the check to mean
    anything (P1: the server applied the settings it was given); when it is
    not, the check is ``n/a`` with ``requires_note`` whatever the ratio.
    """

    target: str
    label: str
    numerator: Path
    denominator: Path
    at_least: bool
    threshold: float
    requires: Path | None = None
    requires_note: str = ""


#: The spec names the checks read; "ours on the default server" is passed in (bench/specs.py).
TUTORIAL = "tutorial-waitress"
FASTAPI, FASTAPI_W2 = "fastapi-uvicorn", "fastapi-uvicorn-w2"
OURS_WAITRESS, OURS_TWO_PROCESSES = "ours-waitress", "ours-granian-w2"
PAYLOAD_DRIFT, MONITORING_OFF = "ours-payload-drift", "ours-monitoring-off"
GRPC, MLSERVER = "ours-grpc", "mlserver"


def checks(default: str = OURS_WAITRESS) -> tuple[Check, ...]:
    """Issue 18's S1-S8, issue 19's G1-G2 and issue 20's P1-P2, with ``default`` as ours' default server."""
    on = f"ours default ({default})"
    return (
        Check("S1", f"req/s row c=16: {on} / fastapi+uvicorn", _rps(default, "row-c16"), _rps(FASTAPI, "row-c16"),
              True, 1.5),
        Check("S1", f"p99 row c=16: {on} / fastapi+uvicorn", _p99(default, "row-c16"), _p99(FASTAPI, "row-c16"),
              False, 0.8),
        Check("S2", "req/s row c=64: ours granian -w 2 / uvicorn --workers 2",
              _rps(OURS_TWO_PROCESSES, "row-c64"), _rps(FASTAPI_W2, "row-c64"), True, 1.5),
        Check("S3", f"req/s V2 row c=16: {on} / MLServer", _rps(default, "v2-row-c16"), _rps(MLSERVER, "v2-row-c16"),
              True, 3.0),
        Check("S3", f"p99 V2 row c=16: {on} / MLServer", _p99(default, "v2-row-c16"), _p99(MLSERVER, "v2-row-c16"),
              False, 0.5),
        Check("S4", "rows/s 10k batch on /predict: ours over HTTP / in-process floor, same body",
              _rows(default, "batch-10000"), ("inprocess", "floor_rows_per_s"), True, 0.6),
        Check("S4", "rows/s 10k batch on V2: ours over HTTP / in-process floor, same body",
              _rows(default, "batch-10000-v2"), ("inprocess", "floor_v2_rows_per_s"), True, 0.6),
        Check("S5", "req/s c=64 200-tree forest: batching on / off", _rps("ours-rf-batching-on", "row-c64"),
              _rps("ours-rf-batching-off", "row-c64"), True, 5.0),
        Check("S5", "p99 c=64 200-tree forest: batching on / off", _p99("ours-rf-batching-on", "row-c64"),
              _p99("ours-rf-batching-off", "row-c64"), False, 1.0),
        Check("S6", "us per /predict row in-process: ours, everything on / Flask constant floor",
              ("inprocess", "wsgi_ours_us"), ("inprocess", "wsgi_floor_us"), False, 2.0),
        Check("S7", "T1 req/s row c=16: ours waitress / tutorial waitress", _rps(OURS_WAITRESS, "row-c16"),
              _rps(TUTORIAL, "row-c16"), True, 1.2),
        Check("S7", "T2 req/s row c=16: ours waitress / tutorial flask dev server", _rps(OURS_WAITRESS, "row-c16"),
              _rps("tutorial-flask-dev", "row-c16"), True, 2.0),
        Check("S8", f"RSS after the single-row loads: {on} / tutorial waitress", _server(default, "rss_mib"),
              _server(TUTORIAL, "rss_mib"), False, 1.3),
        Check("S8", f"start-up to ready: {on} / tutorial waitress", _server(default, "startup_s"),
              _server(TUTORIAL, "startup_s"), False, 1.5),
        Check("G1", "req/s gRPC row c=16: ours / MLServer", _rps(GRPC, "grpc-row-c16"), _rps(MLSERVER, "grpc-row-c16"),
              True, 2.0),
        Check("G2", "rows/s 10k batch: ours gRPC / ours REST binary V2", _rows(GRPC, "grpc-batch-10000"),
              _rows(GRPC, "batch-10000-v2-binary"), True, 1.0),
        Check("P1", f"req/s row c=16: payload log 100% + drift on / both off ({default})",
              _rps(PAYLOAD_DRIFT, "row-c16"), _rps(MONITORING_OFF, "row-c16"), True, 0.9,
              requires=_server(PAYLOAD_DRIFT, "settings_applied"),
              requires_note="the server ignored IRIS_SERVICE_PAYLOAD_LOG / DRIFT_ENABLED"),
        Check("P2", "ms per 1,000-row batch in-process, logistic model: /explain / /predict",
              ("inprocess", "explain_ms"), ("inprocess", "explain_predict_ms"), False, 3.0),
    )


CHECKS: tuple[Check, ...] = checks()


def _at(node: Any, keys: Path) -> Any:
    """What ``keys`` lead to through nested mappings; None when one is missing."""
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _value(results: Mapping[str, Any], path: Path) -> float | None:
    return _number(_at(results, path))


def _round_values(results: Mapping[str, Any], path: Path) -> dict[int, float]:
    """The value at ``path`` in each round, by round number.

    bench/rounds.py keeps every round's figures in a ``rounds`` list next to
    the medians, so the value named ``path[-1]`` is found in the entries of
    ``path[:-1]``'s ``rounds``; results without rounds give none.
    """
    values = {}
    for entry in _at(results, (*path[:-1], "rounds")) or ():
        value = _number(_at(entry, path[-1:]))
        if value is not None and "round" in entry:  # a number found: entry is a mapping
            values[int(entry["round"])] = value
    return values


def round_ratios(results: Mapping[str, Any], check: Check) -> list[float]:
    """The check's ratio in each round that measured both values, in round order."""
    num, den = _round_values(results, check.numerator), _round_values(results, check.denominator)
    return [num[r] / den[r] for r in sorted(num.keys() & den.keys()) if den[r]]


def _meets(check: Check, ratio: float) -> bool:
    return ratio >= check.threshold if check.at_least else ratio <= check.threshold


def evaluate(results: Mapping[str, Any], checks: tuple[Check, ...] = CHECKS) -> list[dict[str, Any]]:
    """One row per check: both values, the ratio, the goal, met / not met / n/a, and each round's ratio."""
    rows = []
    for check in checks:
        num, den = _value(results, check.numerator), _value(results, check.denominator)
        ratio = num / den if num is not None and den else None
        # A server that ran (its entry is there) but did not apply its settings: the ratio means nothing.
        if check.requires is not None and _at(results, check.requires[:-1]) and not _at(results, check.requires):
            status = f"n/a: {check.requires_note}"
        elif ratio is None:
            status = "n/a"
        elif _meets(check, ratio):
            status = "met"
        else:
            status = "NOT MET"
        per_round = round_ratios(results, check)
        rows.append(
            {
                "target": check.target,
                "label": check.label,
                "numerator": num,
                "denominator": den,
                "ratio": ratio,
                "goal": f"{'>=' if check.at_least else '<='} {check.threshold:g}x",
                "status": status,
                "round_ratios": per_round,
                "rounds_met": sum(_meets(check, r) for r in per_round),
            }
        )
    return rows
