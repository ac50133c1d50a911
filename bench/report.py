"""Markdown tables for the terminal and the results JSON file.

Every figure in the tables is a median over the run's rounds and every
error count a total (bench/rounds.py); each round's own figures are only in
the JSON file, under ``rounds``, except the targets' ratios, which the
targets table also gives round by round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _title(meta: Mapping[str, Any]) -> str:
    """Mode, load tool, threads, rounds and per-round durations: what the figures mean."""
    n = meta.get("rounds", 1)  # results written before rounds existed had one
    rounds = "1 round of" if n == 1 else f"{n} rounds (medians, errors summed) of"
    return (
        f"## iris-service bench ({'quick' if meta['quick'] else 'full'}, load by {meta['tool']}, "
        f"{meta['threads']} server threads, {rounds} "
        f"{meta['warmup_s']} s warm-up + {meta['duration_s']} s per load)"
    )


def markdown(results: Mapping[str, Any]) -> str:
    """The whole report: runs, servers, in-process baselines, targets."""
    out = [_title(results["meta"]), ""]
    runs = []
    servers = []
    for name, server in results["servers"].items():
        servers.append(
            [
                name,
                server.get("what", ""),
                server["status"] + (f": {server['reason']}" if server.get("reason") else ""),
                _num(server.get("startup_s"), 2),
                _num(server.get("rss_mib"), 1),
                _num(server.get("pss_mib"), 1),
                _num(server.get("rss_after_batches_mib"), 1),
            ]
        )
        for scenario, m in server.get("scenarios", {}).items():
            if "error" in m:
                runs.append([name, scenario, "-", "-", "-", "-", "-", "-", "-", "-", f"failed: {m['error']}"])
                continue
            runs.append(
                [
                    name,
                    scenario,
                    str(m["connections"]),
                    str(m["rows_per_request"]),
                    by_round(m),
                    _num(m["requests_per_s"]),
                    _num(m["rows_per_s"]),
                    _num(m["p50_ms"], 2),
                    _num(m["p99_ms"], 2),
                    _num(m.get("cpu_us_per_request")),
                    str(m["errors"]),
                ]
            )
    load = ["server", "scenario", "conc", "rows/req", "req/s by round", "req/s", "rows/s", "p50 ms", "p99 ms"]
    out += _table([*load, "CPU us/req", "errors"], runs)
    out += ["", *_table(["server", "what", "status", "start-up s", "RSS MiB", "PSS MiB", "RSS after batches MiB"], servers)]
    inproc = results.get("inprocess") or {}
    if inproc:
        out += [
            "",
            "In-process (medians over rounds, each timed just before ours' batches): "
            f"tutorial per-row loop {_num(inproc['per_row_loop_rows_per_s'])} rows/s; "
            f"floor for a {inproc['floor_rows']:,}-row batch (orjson + asarray + predict_proba + orjson, "
            f"{inproc['floor_model']}) {_num(inproc['floor_rows_per_s'])} rows/s on the `instances` body, "
            f"{_num(inproc.get('floor_v2_rows_per_s'))} rows/s on the V2 tensor body. "
            f"One /predict row through the WSGI callable: ours (production config) "
            f"{_num(inproc.get('wsgi_ours_us'), 1)} us, the Flask constant floor {_num(inproc.get('wsgi_floor_us'), 1)} us. "
            f"A 1,000-row batch of the logistic model: /explain {_num(inproc.get('explain_ms'), 2)} ms, "
            f"/predict {_num(inproc.get('explain_predict_ms'), 2)} ms.",
        ]
    out += notes(results)
    targets = [
        [
            t["target"],
            t["label"],
            _num(t["numerator"], 2),
            _num(t["denominator"], 2),
            "-" if t["ratio"] is None else f"{t['ratio']:.2f}x",
            t["goal"],
            t["status"],
            _per_round(t),
        ]
        for t in results["targets"]
    ]
    header = ["target", "comparison", "value", "baseline", "ratio", "goal", "status", "each round (met)"]
    out += ["", *_table(header, targets)]
    return "\n".join(out) + "\n"


def by_round(m: Mapping[str, Any]) -> str:
    """``1,200 / 1,350 / 1,100``: the load's req/s in each round (the median is the next column)."""
    values = [r.get("requests_per_s") for r in m.get("rounds") or ()]
    return " / ".join(_num(v) for v in values) if values else "-"


def notes(results: Mapping[str, Any]) -> list[str]:
    """One line per server that was skipped or ignored its settings, so no reader takes n/a for a miss."""
    lines = []
    for name, server in results["servers"].items():
        if server.get("status") == "skipped":
            lines.append(f"- {name} skipped: {server.get('reason') or 'not selected'}")
        if server.get("settings_applied") is False:
            statuses = sorted({str(r.get("probe_status")) for r in server.get("rounds") or ()})
            lines.append(
                f"- {name}: GET of its probe answered {'/'.join(statuses)}: the server ignores the settings "
                "passed (not merged yet?), so its figures are those of the settings off"
            )
    return ["", "Notes:", *lines] if lines else []


def _per_round(target: Mapping[str, Any]) -> str:
    """``1.05 / 1.31 / 1.22 (2/3)``: each round's ratio and in how many rounds the goal was met."""
    ratios = target.get("round_ratios") or []
    if not ratios:
        return "-"
    return " / ".join(f"{r:.2f}" for r in ratios) + f" ({target['rounds_met']}/{len(ratios)})"


def write_json(results: Mapping[str, Any], path: Path) -> None:
    """Write the results, creating bench/results/ if it is not there yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
