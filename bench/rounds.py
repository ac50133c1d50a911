"""One figure per server and scenario from several rounds: medians, summed errors.

The bench machine's speed drifts by +-20% within minutes, so a single
measurement per server makes the ratios between servers noisy. Each round
measures every server once, so a server's rounds are spread over the whole
run; the median of them is what one fast or slow stretch of the machine
cannot move. Errors are summed instead, so an error in any round still fails
the bench. Every round's raw figures stay in the results under ``rounds``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Per-load figures reported as the median over rounds.
SCENARIO_MEDIANS = (
    "duration_s",
    "requests_per_s",
    "rows_per_s",
    "mean_ms",
    "p50_ms",
    "p99_ms",
    "cpu_us_per_request",
)
#: Per-load counts reported as the total over rounds: any error must show, and
#: requests and server CPU seconds stay a matching pair.
SCENARIO_SUMS = ("requests", "server_cpu_s", "socket_errors", "non_2xx", "errors")
#: Per-load settings, the same in every round.
SCENARIO_SETTINGS = ("tool", "connections", "rows_per_request")
#: Per-server figures reported as the median over rounds.
SERVER_MEDIANS = ("startup_s", "rss_mib", "pss_mib", "rss_after_batches_mib", "pss_after_batches_mib")
#: In-process baselines reported as the median over rounds.
INPROCESS_MEDIANS = (
    "per_row_loop_rows_per_s",
    "floor_rows_per_s",
    "floor_v2_rows_per_s",
    "wsgi_ours_us",
    "wsgi_floor_us",
    "explain_ms",
    "explain_predict_ms",
)
#: Per-server yes/no findings: true only when true in every round (P1's settings check).
SERVER_ALL = ("settings_applied",)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values the rounds have; None when no round has one."""
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def cpu_us_per_request(cpu_s: float, requests: int) -> float | None:
    """Server CPU microseconds per completed request; None when none completed.

    CPU time does not depend on how much of the machine the server got, so it
    stays steadier than req/s when the machine's speed drifts.
    """
    return cpu_s * 1e6 / requests if requests > 0 else None


def combine_loads(loads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several loads of one server in one round as one: totals over the summed time, median latencies.

    A paired spec (bench/run.py's ``_run_pair``) measures each side a few times,
    alternating with its partner; req/s is all requests over all measured seconds.
    """
    first = loads[0]
    out: dict[str, Any] = {k: first[k] for k in SCENARIO_SETTINGS if k in first}
    out.update({k: sum(load.get(k) or 0 for load in loads) for k in SCENARIO_SUMS})
    out["duration_s"] = sum(load["duration_s"] for load in loads)
    out["requests_per_s"] = out["requests"] / out["duration_s"] if out["duration_s"] else 0.0
    out["rows_per_s"] = out["requests_per_s"] * int(first.get("rows_per_request", 1))
    for key in ("mean_ms", "p50_ms", "p99_ms"):
        out[key] = median(load.get(key) for load in loads)
    out["cpu_us_per_request"] = cpu_us_per_request(out["server_cpu_s"], out["requests"])
    out["loads"] = len(loads)
    return out


def _failures(entries: Sequence[Mapping[str, Any]], key: str) -> str:
    return "; ".join(f"round {e['round']}: {e[key]}" for e in entries)


def merge_scenario(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One load's figures over its rounds (each entry carries its ``round`` number).

    A load that failed in any round is reported failed, as with one round,
    and gets no medians: a target must not be judged on the rounds that happened
    to work.
    """
    out: dict[str, Any] = {}
    failed = [e for e in entries if "error" in e]
    if failed:
        out["error"] = _failures(failed, "error")
    else:
        out.update({k: entries[0][k] for k in SCENARIO_SETTINGS if k in entries[0]})
        out.update({k: median(e.get(k) for e in entries) for k in SCENARIO_MEDIANS})
        out.update({k: sum(e.get(k) or 0 for e in entries) for k in SCENARIO_SUMS})
    out["rounds"] = [dict(e) for e in entries]
    return out


def merge_server(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One server's results over its rounds, in the shape a single round has.

    ``entries`` are the per-round results in round order, each with ``round``,
    ``status`` and ``scenarios``. A server that failed in any round is
    reported failed, with every failing round's reason.
    """
    failed = [e for e in entries if e["status"] == "failed"]
    out: dict[str, Any] = {"status": "failed" if failed else "ok"}
    if failed:
        out["reason"] = _failures(failed, "reason")
    out.update({k: entries[0][k] for k in ("what", "command") if k in entries[0]})
    for key in SERVER_MEDIANS:
        value = median(e.get(key) for e in entries)
        if value is not None:
            out[key] = value
    for key in SERVER_ALL:
        if any(key in e for e in entries):
            out[key] = all(e.get(key) for e in entries)
    names = dict.fromkeys(name for e in entries for name in e["scenarios"])
    out["scenarios"] = {
        name: merge_scenario(
            [{"round": e["round"], **e["scenarios"][name]} for e in entries if name in e["scenarios"]]
        )
        for name in names
    }
    out["rounds"] = [
        {k: v for k, v in e.items() if k not in ("scenarios", "what", "command")} for e in entries
    ]
    return out


def merge_inprocess(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The in-process baselines over their rounds: medians, like the HTTP figures they divide.

    Timed once per round next to the HTTP batches rather than once per run, a
    baseline meets the same stretches of the machine as the figures it is
    compared with (one early measurement made T3, now S4, swing by 0.15 between runs).
    """
    out: dict[str, Any] = {k: v for k, v in entries[0].items() if k not in (*INPROCESS_MEDIANS, "round")}
    out.update({k: median(e.get(k) for e in entries) for k in INPROCESS_MEDIANS})
    out["rounds"] = [dict(e) for e in entries]
    return out
