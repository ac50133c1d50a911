"""The bench's aggregation over rounds, without starting a server.

Medians per figure, errors summed, failures kept, and the server-CPU-per-request
arithmetic, on hand-made round results.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import report, rounds, specs, targets
from bench.servers import stat_cpu_ticks

ROWS = (specs.ROW_C16, specs.ROW_C64)
BATCHES = (specs.BATCH, specs.V2_BATCH)


def _check(target: str, label_start: str) -> targets.Check:
    """The one check of ``target`` whose label starts with ``label_start``."""
    (check,) = [c for c in targets.CHECKS if c.target == target and c.label.startswith(label_start)]
    return check


def _load(rps: float, p99: float, *, requests: int, cpu_s: float, errors: int = 0) -> dict[str, Any]:
    """One round's figures for one load, in the shape bench/run.py records."""
    return {
        "tool": "wrk",
        "connections": 16,
        "rows_per_request": 1,
        "duration_s": 5.0,
        "requests": requests,
        "requests_per_s": rps,
        "rows_per_s": rps,
        "mean_ms": p99 / 2,
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "socket_errors": 0,
        "non_2xx": errors,
        "errors": errors,
        "server_cpu_s": cpu_s,
        "cpu_us_per_request": rounds.cpu_us_per_request(cpu_s, requests),
    }


def _round(n: int, startup_s: float, rss: float, load: dict[str, Any]) -> dict[str, Any]:
    return {
        "round": n,
        "status": "ok",
        "what": "test server",
        "command": "serve",
        "startup_s": startup_s,
        "rss_mib": rss,
        "pss_mib": rss - 10,
        "scenarios": {"row-c16": load},
    }


def test_median_of_odd_and_even_counts_and_missing_values() -> None:
    assert rounds.median([100, 300, 200]) == 200
    assert rounds.median([100.0, 300.0]) == 200.0
    assert rounds.median([None, 7.0, None]) == 7.0
    assert rounds.median([None, None]) is None
    assert rounds.median([]) is None


def test_cpu_us_per_request() -> None:
    assert rounds.cpu_us_per_request(2.5, 5_000) == pytest.approx(500.0)
    assert rounds.cpu_us_per_request(0.0, 10) == 0.0
    assert rounds.cpu_us_per_request(1.0, 0) is None


def test_stat_cpu_ticks_sums_utime_and_stime_after_the_command_name() -> None:
    # A command name with a space and a ")" must not shift the fields.
    stat = "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 8 9 20 0 3 0 100"
    assert stat_cpu_ticks(stat) == 1234 + 567


def test_merge_scenario_takes_medians_and_sums_errors() -> None:
    merged = rounds.merge_scenario(
        [
            {"round": 1, **_load(100.0, 30.0, requests=500, cpu_s=1.0, errors=0)},
            {"round": 2, **_load(300.0, 10.0, requests=1500, cpu_s=1.2, errors=2)},
            {"round": 3, **_load(200.0, 20.0, requests=1000, cpu_s=0.9, errors=1)},
        ]
    )
    assert merged["requests_per_s"] == 200.0
    assert merged["p99_ms"] == 20.0
    assert merged["p50_ms"] == 5.0
    # Median of the per-round ratios 2000, 800 and 900 us, not a ratio of medians.
    assert merged["cpu_us_per_request"] == pytest.approx(900.0)
    assert merged["errors"] == 3
    assert merged["non_2xx"] == 3
    assert merged["requests"] == 3000
    assert merged["server_cpu_s"] == pytest.approx(3.1)
    assert merged["connections"] == 16
    assert [r["round"] for r in merged["rounds"]] == [1, 2, 3]
    assert [r["requests_per_s"] for r in merged["rounds"]] == [100.0, 300.0, 200.0]


def test_merge_scenario_failed_in_one_round_is_failed() -> None:
    merged = rounds.merge_scenario(
        [
            {"round": 1, **_load(100.0, 30.0, requests=500, cpu_s=1.0)},
            {"round": 2, "error": "wrk failed (1): boom"},
        ]
    )
    assert merged["error"] == "round 2: wrk failed (1): boom"
    assert "requests_per_s" not in merged
    assert len(merged["rounds"]) == 2


def test_merge_server_medians_and_raw_rounds() -> None:
    merged = rounds.merge_server(
        [
            _round(1, 1.5, 60.0, _load(100.0, 30.0, requests=500, cpu_s=1.0)),
            _round(2, 1.1, 64.0, _load(300.0, 10.0, requests=1500, cpu_s=1.2)),
            _round(3, 1.3, 62.0, _load(200.0, 20.0, requests=1000, cpu_s=0.9)),
        ]
    )
    assert merged["status"] == "ok"
    assert "reason" not in merged
    assert merged["startup_s"] == 1.3
    assert merged["rss_mib"] == 62.0
    assert merged["pss_mib"] == 52.0
    assert "rss_after_batches_mib" not in merged
    assert merged["scenarios"]["row-c16"]["requests_per_s"] == 200.0
    assert [r["startup_s"] for r in merged["rounds"]] == [1.5, 1.1, 1.3]
    assert "scenarios" not in merged["rounds"][0]


def test_merge_server_failed_in_one_round_is_reported_failed() -> None:
    failed = {
        "round": 2,
        "status": "failed",
        "reason": "x exited before it was ready",
        "what": "test server",
        "command": "serve",
        "scenarios": {},
    }
    merged = rounds.merge_server(
        [
            _round(1, 1.5, 60.0, _load(100.0, 30.0, requests=500, cpu_s=1.0)),
            failed,
            _round(3, 1.3, 62.0, _load(200.0, 20.0, requests=1000, cpu_s=0.9)),
        ]
    )
    assert merged["status"] == "failed"
    assert merged["reason"] == "round 2: x exited before it was ready"
    assert merged["startup_s"] == pytest.approx(1.4)
    assert [r["round"] for r in merged["scenarios"]["row-c16"]["rounds"]] == [1, 3]


def _c16_server(*per_round: tuple[float, float, float, float] | None) -> dict[str, Any]:
    """A server merged over rounds of (start-up s, RSS MiB, req/s, p99 ms) at c=16; None: a failed round."""
    entries = []
    for n, figures in enumerate(per_round, start=1):
        if figures is None:
            entries.append({"round": n, "status": "failed", "reason": "x", "scenarios": {}})
            continue
        startup, rss, rps, p99 = figures
        entries.append(_round(n, startup, rss, _load(rps, p99, requests=int(rps * 5), cpu_s=1.0)))
    return rounds.merge_server(entries)


def _full_run(ours: dict[str, Any], tutorial: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": {"quick": False, "tool": "wrk", "threads": 8, "rounds": 3, "warmup_s": 2, "duration_s": 5},
        # FastAPI measured as the tutorial was: S1 reads it, S7 and S8 read the tutorial.
        "servers": {"ours-waitress": ours, "tutorial-waitress": tutorial, "fastapi-uvicorn": tutorial},
    }


def test_targets_and_report_read_the_medians() -> None:
    results = _full_run(
        _c16_server((1.0, 60.0, 400.0, 10.0), (1.0, 60.0, 900.0, 10.0), (1.0, 60.0, 500.0, 10.0)),
        _c16_server((1.0, 60.0, 250.0, 10.0), (1.0, 60.0, 100.0, 10.0), (1.0, 60.0, 200.0, 10.0)),
    )
    t1 = targets.evaluate(results, (_check("S7", "T1 req/s"),))[0]
    assert t1["ratio"] == pytest.approx(500.0 / 200.0)
    assert t1["status"] == "met"
    assert t1["round_ratios"] == [pytest.approx(1.6), pytest.approx(9.0), pytest.approx(2.5)]
    assert t1["rounds_met"] == 3
    results["targets"] = [t1]
    text = report.markdown(results)
    assert "3 rounds (medians, errors summed) of 2 s warm-up + 5 s per load" in text
    assert "| CPU us/req | errors |" in text
    # ours' row: median 500 req/s and the median CPU of 500, 222 and 400 us/req.
    assert "| ours-waitress | row-c16 | 16 | 1 | 400 / 900 / 500 | 500 | 500 | 2.50 | 10.00 | 400 | 0 |" in text
    assert "| S7 | T1 req/s row c=16: ours waitress / tutorial waitress | 500.00 | 200.00 | 2.50x | >= 1.2x | met " \
        "| 1.60 / 9.00 / 2.50 (3/3) |" in text


def test_each_rounds_ratio_pairs_figures_from_the_same_round() -> None:
    """A median ratio can be met while some rounds miss; the report shows which."""
    # The tutorial failed its second round: only rounds 1 and 3 pair up.
    results = _full_run(
        _c16_server((1.6, 70.0, 400.0, 12.0), (1.4, 90.0, 900.0, 10.0), (1.5, 80.0, 500.0, 9.0)),
        _c16_server((1.0, 60.0, 350.0, 10.0), None, (1.0, 40.0, 200.0, 10.0)),
    )
    picked = (_check("S7", "T1 req/s"), _check("S1", "p99"), _check("S8", "RSS"))
    rps, p99, rss = targets.evaluate(results, picked)
    assert rps["round_ratios"] == [pytest.approx(400 / 350), pytest.approx(2.5)]
    assert rps["rounds_met"] == 1  # 1.14x misses the 1.2x goal
    assert p99["round_ratios"] == [pytest.approx(1.2), pytest.approx(0.9)]
    assert p99["rounds_met"] == 0  # 1.2x and 0.9x: both above S1's 0.8x
    # Server-level figures (RSS) pair up by round too.
    assert rss["round_ratios"] == [pytest.approx(70 / 60), pytest.approx(2.0)]
    assert rss["rounds_met"] == 1
    results["targets"] = [rps]
    assert "| 1.14 / 2.50 (1/2) |" in report.markdown(results)


def test_results_without_rounds_have_no_round_ratios() -> None:
    """Results written before rounds existed: the medians' ratio alone, and a dash for the rounds."""
    results: dict[str, Any] = {
        "meta": {"quick": True, "tool": "wrk", "threads": 8, "warmup_s": 1, "duration_s": 2},
        "servers": {
            "ours-waitress": {"status": "ok", "scenarios": {"row-c16": {"requests_per_s": 300.0}}},
            "tutorial-waitress": {"status": "ok", "scenarios": {"row-c16": {"requests_per_s": 200.0}}},
        },
    }
    (t1,) = targets.evaluate(results, (_check("S7", "T1 req/s"),))
    assert (t1["ratio"], t1["round_ratios"], t1["rounds_met"]) == (pytest.approx(1.5), [], 0)
    results["servers"] = {}
    results["targets"] = [t1]
    assert report.markdown(results).rstrip().endswith("| 1.50x | >= 1.2x | met | - |")


def test_inprocess_baselines_are_medians_over_rounds_and_feed_s4() -> None:
    def baseline(n: int, loop: float, floor: float, floor_v2: float) -> dict[str, Any]:
        return {"round": n, "per_row_loop_rows_per_s": loop, "floor_rows": 10_000, "floor_rows_per_s": floor,
                "floor_model": "ours' artifact", "floor_v2_rows_per_s": floor_v2}

    merged = rounds.merge_inprocess(
        [baseline(1, 9_000.0, 2.0e6, 3.0e6), baseline(2, 7_000.0, 1.4e6, 2.2e6), baseline(3, 8_000.0, 1.8e6, 3.2e6)]
    )
    assert (merged["per_row_loop_rows_per_s"], merged["floor_rows_per_s"], merged["floor_v2_rows_per_s"]) == (
        8_000.0, 1.8e6, 3.0e6)
    assert (merged["floor_rows"], merged["floor_model"]) == (10_000, "ours' artifact")
    assert [r["floor_rows_per_s"] for r in merged["rounds"]] == [2.0e6, 1.4e6, 1.8e6]
    batch = {"scenarios": {"batch-10000": {"rows_per_s": 0.9e6}, "batch-10000-v2": {"rows_per_s": 1.65e6}}}
    s4 = tuple(c for c in targets.CHECKS if c.target == "S4")
    rows = targets.evaluate({"servers": {"ours-waitress": batch}, "inprocess": merged}, s4)
    assert [(r["ratio"], r["status"]) for r in rows] == [
        (pytest.approx(0.5), "NOT MET"), (pytest.approx(0.55), "NOT MET")]  # the goal is 0.6x
    # Round by round, each baseline round is paired with ours' batch of the same round.
    batch["scenarios"]["batch-10000"]["rounds"] = [{"round": n, "rows_per_s": 0.9e6} for n in (1, 2, 3)]
    (floor, _) = targets.evaluate({"servers": {"ours-waitress": batch}, "inprocess": merged}, s4)
    assert floor["round_ratios"] == [pytest.approx(0.45), pytest.approx(0.9 / 1.4), pytest.approx(0.5)]
    assert floor["rounds_met"] == 1


def test_inprocess_baselines_are_timed_by_ours_just_before_its_first_batch_each_round() -> None:
    """The floor S4 divides by is timed seconds before the batches, not before the row loads."""
    from bench import run as bench_run
    from bench.servers import ServerSpec

    events: list[tuple[Any, ...]] = []
    specs = [
        ServerSpec("tutorial", ("t",), ROWS),
        ServerSpec("ours", ("o",), (*ROWS, *BATCHES)),
    ]

    def run_server(spec: ServerSpec, *, round_no: int, before_batches: Any, **kwargs: Any) -> dict[str, Any]:
        """A server that honours the hook, except ours in round 2, which fails before its batches."""
        if spec.name == "ours" and round_no == 2:
            events.append((round_no, spec.name, "failed"))
            return {"round": round_no, "status": "failed", "reason": "x", "scenarios": {}}
        for scenario in bench_run.each_scenario(spec.scenarios, before_batches):  # as _run_server walks them
            events.append((round_no, spec.name, scenario.name))
        return {"round": round_no, "status": "ok", "scenarios": {}}

    def measure() -> dict[str, Any]:
        events.append(("baselines",))
        return {"per_row_loop_rows_per_s": 9.0e3, "floor_rows": 10_000, "floor_rows_per_s": 1.8e6,
                "floor_model": "m", "floor_v2_rows_per_s": 2.9e6}

    merged, inproc = bench_run._run_rounds(specs, 2, measure, run_server=run_server)
    assert events == [
        *[(1, "tutorial", s.name) for s in ROWS],
        *[(1, "ours", s.name) for s in ROWS],
        ("baselines",),
        *[(1, "ours", s.name) for s in BATCHES],
        *[(2, "tutorial", s.name) for s in ROWS],
        (2, "ours", "failed"),
        ("baselines",),  # still one per round
    ]
    assert [r["round"] for r in inproc["rounds"]] == [1, 2]
    assert merged["ours"]["status"] == "failed" and merged["tutorial"]["status"] == "ok"


def test_a_paired_spec_runs_beside_its_partner_once_a_round_and_each_side_keeps_its_figures() -> None:
    """P1's two servers run together (``run_pair``), never again on their own."""
    from bench import run as bench_run
    from bench.servers import ServerSpec

    calls: list[tuple[Any, ...]] = []
    built = [
        ServerSpec("tutorial", ("t",), (specs.ROW_C16,)),
        ServerSpec("off", ("o",), (specs.ROW_C16,), paired_with="on"),
        ServerSpec("on", ("o",), (specs.ROW_C16,)),
    ]

    def run_server(spec: ServerSpec, *, round_no: int, **kwargs: Any) -> dict[str, Any]:
        calls.append((round_no, spec.name))
        return _round(round_no, 1.0, 100.0, _load(1000.0, 10.0, requests=5000, cpu_s=2.5))

    def run_pair(first: ServerSpec, second: ServerSpec, *, round_no: int, **kwargs: Any) -> tuple[Any, Any]:
        calls.append((round_no, first.name, second.name))
        return (_round(round_no, 1.0, 100.0, _load(1000.0, 10.0, requests=5000, cpu_s=2.5)),
                _round(round_no, 1.0, 100.0, _load(900.0 + round_no, 10.0, requests=4500, cpu_s=2.5)))

    merged, _ = bench_run._run_rounds(built, 2, lambda: {}, run_server=run_server, run_pair=run_pair)
    assert calls == [(1, "tutorial"), (1, "off", "on"), (2, "tutorial"), (2, "off", "on")]
    assert merged["on"]["scenarios"]["row-c16"]["requests_per_s"] == pytest.approx(901.5)
    assert merged["off"]["scenarios"]["row-c16"]["requests_per_s"] == pytest.approx(1000.0)


def test_combined_loads_are_all_requests_over_all_seconds() -> None:
    loads = [_load(1000.0, 10.0, requests=5000, cpu_s=2.0), _load(800.0, 30.0, requests=4000, cpu_s=2.5, errors=1)]
    combined = rounds.combine_loads(loads)
    assert combined["requests"] == 9000 and combined["duration_s"] == 10.0
    assert combined["requests_per_s"] == pytest.approx(900.0) and combined["rows_per_s"] == pytest.approx(900.0)
    assert combined["p99_ms"] == pytest.approx(20.0)  # the median of the loads' p99s
    assert combined["errors"] == 1 and combined["loads"] == 2
    assert combined["cpu_us_per_request"] == pytest.approx(4.5 * 1e6 / 9000)


def test_a_run_of_the_pair_alone_still_times_the_baselines_once_a_round() -> None:
    from bench import run as bench_run
    from bench.servers import ServerSpec

    timed: list[int] = []
    pair = [ServerSpec("off", ("o",), (specs.ROW_C16,), paired_with="on"), ServerSpec("on", ("o",), (specs.ROW_C16,))]

    def run_pair(first: ServerSpec, second: ServerSpec, *, round_no: int, **kwargs: Any) -> tuple[Any, Any]:
        load = _load(1000.0, 10.0, requests=5000, cpu_s=2.5)
        return _round(round_no, 1.0, 100.0, load), _round(round_no, 1.0, 100.0, load)

    def measure() -> dict[str, Any]:
        timed.append(1)
        return {"floor_rows_per_s": 1.0e6}

    merged, inproc = bench_run._run_rounds(pair, 3, measure, run_pair=run_pair)
    assert len(timed) == 3 and [r["round"] for r in inproc["rounds"]] == [1, 2, 3]
    assert merged["on"]["status"] == merged["off"]["status"] == "ok"
