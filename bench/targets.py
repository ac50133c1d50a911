"""The performance targets as ratios between numbers from the same run.

Ratios from one run on one machine cancel out how fast the machine is, which
absolute numbers would not. Each check names two values in the results by
path, a comparison and a threshold; change a goal here and nowhere else.
The thresholds are issue 7's targets T1-T7, unchanged. The values are the
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


@dataclass(frozen=True)
class Check:
    """``value(numerator) / value(denominator)`` compared with ``threshold``."""

    target: str
    label: str
    numerator: Path
    denominator: Path
    at_least: bool
    threshold: float


CHECKS: tuple[Check, ...] = (
    Check(
        "T1",
        "req/s c=16: ours waitress / tutorial waitress",
        _rps("ours-waitress", "row-c16"),
        _rps("tutorial-waitress", "row-c16"),
        True,
        1.2,
    ),
    Check(
        "T1",
        "p99 c=16: ours waitress / tutorial waitress",
        _p99("ours-waitress", "row-c16"),
        _p99("tutorial-waitress", "row-c16"),
        False,
        1.0,
    ),
    Check(
        "T2",
        "req/s c=16: ours waitress / tutorial flask dev server",
        _rps("ours-waitress", "row-c16"),
        _rps("tutorial-flask-dev", "row-c16"),
        True,
        2.0,
    ),
    Check(
        "T3",
        "rows/s: ours 10k-row batch / tutorial per-row loop (in-process)",
        _rows("ours-waitress", "batch-10000"),
        ("inprocess", "per_row_loop_rows_per_s"),
        True,
        50.0,
    ),
    Check(
        "T3",
        "rows/s: ours 10k-row batch on /predict / in-process floor on the same body",
        _rows("ours-waitress", "batch-10000"),
        ("inprocess", "floor_rows_per_s"),
        True,
        0.5,
    ),
    Check(
        "T3",
        "rows/s: ours 10k-row batch on V2 / in-process floor on the same V2 body",
        _rows("ours-waitress", "batch-10000-v2"),
        ("inprocess", "floor_v2_rows_per_s"),
        True,
        0.5,
    ),
    Check(
        "T4",
        "req/s c=64 random forest: batching on / off",
        _rps("ours-rf-batching-on", "row-c64"),
        _rps("ours-rf-batching-off", "row-c64"),
        True,
        5.0,
    ),
    Check(
        "T4",
        "p99 c=64 random forest: batching on / off",
        _p99("ours-rf-batching-on", "row-c64"),
        _p99("ours-rf-batching-off", "row-c64"),
        False,
        1.0,
    ),
    Check(
        "T5",
        "req/s c=64: ours gunicorn -w 2 / ours waitress",
        _rps("ours-gunicorn", "row-c64"),
        _rps("ours-waitress", "row-c64"),
        True,
        1.8,
    ),
    Check(
        "T6",
        "req/s c=16: ours waitress / fastapi+uvicorn",
        _rps("ours-waitress", "row-c16"),
        _rps("fastapi-uvicorn", "row-c16"),
        True,
        1.0,
    ),
    Check(
        "T7",
        "RSS after the single-row loads: ours waitress / tutorial waitress",
        ("servers", "ours-waitress", "rss_mib"),
        ("servers", "tutorial-waitress", "rss_mib"),
        False,
        1.3,
    ),
    Check(
        "T7",
        "start-up to ready: ours waitress / tutorial waitress",
        ("servers", "ours-waitress", "startup_s"),
        ("servers", "tutorial-waitress", "startup_s"),
        False,
        1.5,
    ),
)


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
        if ratio is None:
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
