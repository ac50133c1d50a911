"""Run every server spec one at a time, then print and save the report.

``python -m bench [--quick] [--rounds N]`` from the repository root. Servers
bind free 127.0.0.1 ports, are loaded for fixed durations after a warm-up, and
are stopped (their own process group only) before the next one starts, so no
two measurements share the machine. Each round runs every server once and
the report gives medians over rounds (bench/rounds.py), so a slow or fast
stretch of a drifting machine moves one round of a server, not its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import joblib

from bench import inprocess, mlserver, models, report, rounds, specs, targets, v2bodies
from bench.load import Measurement, default_tool, run_load
from bench.servers import Scenario, ServerFailed, ServerSpec, get_status, running, tree_cpu_s, tree_memory_mib

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"
MLSERVER_VENV = RESULTS / "venvs" / "mlserver"
BATCH_SIZES = (specs.BATCH_ROWS,)
V2_BATCH_SIZE = specs.BATCH_ROWS
DEFAULT_THREADS = 8
#: (warm-up s, measured s) of every load in one round. Full mode runs 3 rounds of
#: 2 + 5 s rather than one of 3 + 10 s: shorter loads, spread over the run so
#: that the median sees the machine's drift.
QUICK_DURATIONS_S = (1, 2)
FULL_DURATIONS_S = (2, 5)
QUICK_ROUNDS = 1
FULL_ROUNDS = 3
#: The in-process S6 timing: (calls per batch, batches), quick and full.
QUICK_WSGI_CALLS = (300, 3)
FULL_WSGI_CALLS = (1000, 5)
#: The in-process P2 timing (bench/explain_cost.py): (requests per route per batch, batches), quick and full.
QUICK_EXPLAIN_CALLS = (5, 3)
FULL_EXPLAIN_CALLS = (20, 5)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _base_env() -> dict[str, str]:
    """The children's environment: ours' settings come from the specs only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS_SERVICE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _timed_in_child(module: str, what: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    """``python -m <module> <args>`` in a fresh interpreter; its last stdout line is the JSON of medians."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        _say(f"  {what} failed: {done.stderr.strip().splitlines()[-1:]}")
        return {}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _wsgi_floor(ours_model: Path | None, env: dict[str, str], quick: bool) -> dict[str, float]:
    """S6's in-process timing (bench/wsgi_floor.py); empty when ours is absent."""
    if ours_model is None:
        return {}
    calls, batches = QUICK_WSGI_CALLS if quick else FULL_WSGI_CALLS
    return _timed_in_child("bench.wsgi_floor", "in-process /predict timing",
                           ["--model", str(ours_model), "--calls", str(calls), "--batches", str(batches)], env)


def _explain_cost(ours_model: Path | None, env: dict[str, str], quick: bool) -> dict[str, float]:
    """P2's in-process timing (bench/explain_cost.py): a 1,000-row batch explained and predicted."""
    if ours_model is None:
        return {}
    calls, batches = QUICK_EXPLAIN_CALLS if quick else FULL_EXPLAIN_CALLS
    return _timed_in_child("bench.explain_cost", "in-process explain timing",
                           ["--json", "--model", str(ours_model), "--calls", str(calls), "--rounds", str(batches)],
                           env)


def _inprocess_baselines(
    ref_model: Path, ours_model: Path | None, body: Path, v2_body: Path, quick: bool, env: dict[str, str]
) -> Callable[[], dict[str, Any]]:
    """Load the models and read the bodies once; the returned call times the baselines (once a round)."""
    tutorial = joblib.load(ref_model)
    floor_model, floor_name = tutorial, "tutorial's LogisticRegression"
    if ours_model is not None:
        try:
            candidate = joblib.load(ours_model)
        except Exception as exc:  # the core's artifact format is its own business
            _say(f"  floor: cannot joblib.load ours' artifact ({exc}); using the tutorial's model")
        else:
            if hasattr(candidate, "predict_proba"):
                floor_model, floor_name = candidate, "ours' artifact"
    rows = models.iris_rows(150).tolist()
    instances, tensor = body.read_bytes(), v2_body.read_bytes()
    repeats = 5 if quick else 20

    def measure() -> dict[str, Any]:
        loop = inprocess.per_row_loop(tutorial, rows, budget_s=1.0 if quick else 1.5)
        floor_rows, floor = inprocess.batch_floor(floor_model, instances, repeats)
        _, floor_v2 = inprocess.batch_floor(floor_model, tensor, repeats, inprocess.v2_matrix)
        timed = dataclasses.asdict(inprocess.InProcess(loop, floor_rows, floor, floor_name, floor_v2))
        return {**timed, **_wsgi_floor(ours_model, env, quick), **_explain_cost(ours_model, env, quick)}

    return measure


def _measured_load(
    tool: str, pid: int, port: int, body: Path, *, duration_s: int, **kwargs: Any
) -> dict[str, Any]:
    """One measured load and the CPU the server's process tree spent on it."""
    cpu_before = tree_cpu_s(pid)
    m: Measurement = run_load(tool, port, body, duration_s=duration_s, **kwargs)
    cpu_s = tree_cpu_s(pid) - cpu_before
    return {
        **m.to_dict(),
        "server_cpu_s": cpu_s,
        "cpu_us_per_request": rounds.cpu_us_per_request(cpu_s, m.requests),
    }


def _load_options(scenario: Scenario, env: dict[str, str]) -> dict[str, Any]:
    """What ``run_load`` needs of ``scenario`` besides the tool, port, body and duration."""
    return {"connections": scenario.connections, "rows_per_request": scenario.rows, "env": env, "cwd": REPO_ROOT,
            "path": scenario.path}


def each_scenario(scenarios: Iterable[Scenario], before_batches: Callable[[], None] | None) -> Iterator[Scenario]:
    """``scenarios`` in order, calling ``before_batches`` (if any) once, just before the first batch."""
    for scenario in scenarios:
        if before_batches is not None and scenario.is_batch:
            before_batches()
            before_batches = None
        yield scenario


def _run_server(
    spec: ServerSpec,
    context: Mapping[str, object],
    bodies: Mapping[str, Path],
    *,
    round_no: int,
    tool: str,
    warmup_s: int,
    duration_s: int,
    env: dict[str, str],
    log_dir: Path,
    before_batches: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One round of one server: start, warm up and measure each scenario, read memory, stop.

    ``before_batches`` runs once, just before the first batch scenario (the
    in-process baselines those batches are divided by).
    """
    out: dict[str, Any] = {
        "round": round_no,
        "status": "ok",
        "what": spec.note,
        "command": " ".join(spec.command),
        "scenarios": {},
    }
    log_path = log_dir / f"{spec.name}.log"
    if round_no == 1:  # later rounds append, so the log covers the whole run
        log_path.unlink(missing_ok=True)
    try:
        with running(spec, context, cwd=REPO_ROOT, base_env=env, log_path=log_path) as server:
            out["startup_s"] = server.startup_s
            _say(f"  ready in {server.startup_s:.2f} s on port {server.port}")
            for scenario in each_scenario(spec.scenarios, before_batches):
                body = bodies.get(scenario.body)
                if body is None:  # the gRPC bodies need protobuf (iris-service's grpc extra)
                    out["scenarios"][scenario.name] = {"error": f"no {scenario.body} body (pip install -e '.[grpc]')"}
                    _say(f"  {scenario.name}: FAILED, no {scenario.body} body")
                    continue
                grpc = scenario.protocol == "grpc"
                load_tool, port = ("grpc", server.grpc_port) if grpc else (tool, server.port)
                kwargs = _load_options(scenario, env)
                try:
                    run_load(load_tool, port, body, duration_s=warmup_s, **kwargs)  # type: ignore[arg-type]
                    m = _measured_load(load_tool, server.pid, port, body, duration_s=duration_s, **kwargs)
                except (RuntimeError, OSError) as exc:
                    out["scenarios"][scenario.name] = {"error": str(exc)}
                    _say(f"  {scenario.name}: FAILED {exc}")
                    continue
                out["scenarios"][scenario.name] = m
                cpu = m["cpu_us_per_request"]
                _say(
                    f"  {scenario.name}: {m['requests_per_s']:,.0f} req/s {m['rows_per_s']:,.0f} rows/s "
                    f"p50 {m['p50_ms']:.2f} ms p99 {m['p99_ms']:.2f} ms "
                    f"CPU {'-' if cpu is None else f'{cpu:,.0f}'} us/req errors {m['errors']}"
                )
                # Memory is read after the single-row loads, which every server runs, and
                # again after ours' batch scenarios, which only ours runs: S8 compares
                # like with like, and what a 10,000-row batch costs is reported apart.
                if not scenario.is_batch:
                    out["rss_mib"], out["pss_mib"] = tree_memory_mib(server.pid)
            if any(s.is_batch for s in spec.scenarios):
                out["rss_after_batches_mib"], out["pss_after_batches_mib"] = tree_memory_mib(server.pid)
            if "rss_mib" not in out:
                out["rss_mib"], out["pss_mib"] = tree_memory_mib(server.pid)
            _probe(spec, server.port, out)
    except ServerFailed as exc:
        out["status"], out["reason"] = "failed", str(exc)
        _say(f"  FAILED: {exc}")
    return out


def _probe(spec: ServerSpec, port: int, out: dict[str, Any]) -> None:
    """Record whether the server applied the spec's settings (its probe path answered 200)."""
    if spec.probe_path:
        out["probe_status"] = get_status(port, spec.probe_path)
        out["settings_applied"] = out["probe_status"] == 200
        if not out["settings_applied"]:
            _say(f"  GET {spec.probe_path} answered {out['probe_status']}: "
                 "this server ignores the settings the spec passes")


#: Measured loads per side and round in a paired run, alternating A B / B A.
PAIR_LOADS = 6


def _run_pair(
    first: ServerSpec,
    second: ServerSpec,
    context: Mapping[str, object],
    bodies: Mapping[str, Path],
    *,
    round_no: int,
    tool: str,
    warmup_s: int,
    duration_s: int,
    env: dict[str, str],
    log_dir: Path,
    before_batches: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One round of two single-row servers run at once, their loads alternating (A B B A ...).

    A ratio of two servers measured one after the other carries the machine's
    drift between them (issue 20's P1 moved from 0.81x to 1.05x by round); side
    by side, each side meets the same stretches. The idle one costs the loaded one nothing.
    """
    del before_batches  # the pair runs single-row loads only
    pair = (first, second)
    outs = {s.name: {"round": round_no, "status": "ok", "what": s.note, "command": " ".join(s.command),
                     "scenarios": {}} for s in pair}
    paths = {s.name: log_dir / f"{s.name}.log" for s in pair}
    if round_no == 1:
        for path in paths.values():
            path.unlink(missing_ok=True)
    try:
        with running(first, context, cwd=REPO_ROOT, base_env=env, log_path=paths[first.name]) as a, \
                running(second, context, cwd=REPO_ROOT, base_env=env, log_path=paths[second.name]) as b:
            servers = {first.name: a, second.name: b}
            for spec in pair:
                outs[spec.name]["startup_s"] = servers[spec.name].startup_s
            for scenario in first.scenarios:
                body = bodies[scenario.body]
                kwargs = _load_options(scenario, env)
                loads: dict[str, list[dict[str, Any]]] = {s.name: [] for s in pair}
                try:
                    for spec in pair:
                        run_load(tool, servers[spec.name].port, body, duration_s=warmup_s, **kwargs)
                    for k in range(PAIR_LOADS):
                        for spec in pair if k % 2 == 0 else pair[::-1]:
                            server = servers[spec.name]
                            loads[spec.name].append(
                                _measured_load(tool, server.pid, server.port, body, duration_s=duration_s, **kwargs))
                except (RuntimeError, OSError) as exc:
                    for spec in pair:
                        outs[spec.name]["scenarios"][scenario.name] = {"error": str(exc)}
                    _say(f"  {scenario.name}: FAILED {exc}")
                    continue
                for spec in pair:
                    m = outs[spec.name]["scenarios"][scenario.name] = rounds.combine_loads(loads[spec.name])
                    each = " / ".join(f"{load['requests_per_s']:,.0f}" for load in loads[spec.name])
                    _say(f"  {spec.name} {scenario.name}: {m['requests_per_s']:,.0f} req/s over {PAIR_LOADS} loads "
                         f"({each}) errors {m['errors']}")
            for spec in pair:
                server = servers[spec.name]
                outs[spec.name]["rss_mib"], outs[spec.name]["pss_mib"] = tree_memory_mib(server.pid)
                _probe(spec, server.port, outs[spec.name])
    except ServerFailed as exc:
        for out in outs.values():
            out["status"], out["reason"] = "failed", str(exc)
        _say(f"  FAILED: {exc}")
    return outs[first.name], outs[second.name]


def _positive_int(text: str) -> int:
    """argparse type for --rounds: a round count below 1 would measure nothing."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _run_rounds(
    specs: list[ServerSpec],
    n_rounds: int,
    measure_inprocess: Callable[[], dict[str, Any]],
    run_server: Callable[..., dict[str, Any]] = _run_server,
    run_pair: Callable[..., tuple[dict[str, Any], dict[str, Any]]] = _run_pair,
    **kwargs: Any,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every spec once per round, in spec order; each server's results merged over rounds.

    A spec with ``paired_with`` runs beside that partner (``run_pair``), loads alternating.

    Round after round rather than server after server, so each server's
    measurements are spread over the whole run and meet the machine's slow
    and fast stretches alike. The in-process baselines are timed in every
    round by the first server with batch scenarios (ours), just before its
    first batch: the figures they are divided by follow within seconds, where
    timing them before the server's single-row loads left half a minute of the
    machine's drift between the two sides of S4 (issue 7's T3). They too are medians over
    rounds. A round whose server failed before its batches times them after.
    """
    anchor = next((s for s in specs if any(sc.is_batch for sc in s.scenarios)), specs[0])
    per_server: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in specs}
    inprocess_rounds: list[dict[str, Any]] = []

    def baselines() -> None:
        round_no = len(inprocess_rounds) + 1
        _say(f"in-process baselines (round {round_no}/{n_rounds}) ...")
        inprocess_rounds.append({"round": round_no, **measure_inprocess()})

    by_name = {spec.name: spec for spec in specs}
    for round_no in range(1, n_rounds + 1):
        done: set[str] = set()
        for spec in specs:
            if spec.name in done:  # ran beside its partner
                continue
            partner = by_name.get(spec.paired_with)
            if partner is not None:
                _say(f"{spec.name} beside {partner.name} (round {round_no}/{n_rounds}): {' '.join(spec.command)}")
                pair = run_pair(spec, partner, round_no=round_no, **kwargs)
                for side, entry in zip((spec, partner), pair, strict=True):
                    per_server[side.name].append(entry)
                done.add(partner.name)
                if spec is anchor and len(inprocess_rounds) < round_no:  # only the pair selected
                    baselines()
                continue
            _say(f"{spec.name} (round {round_no}/{n_rounds}): {' '.join(spec.command)}")
            hook = baselines if spec is anchor else None
            per_server[spec.name].append(run_server(spec, round_no=round_no, before_batches=hook, **kwargs))
            if spec is anchor and len(inprocess_rounds) < round_no:
                baselines()
    merged = {name: rounds.merge_server(entries) for name, entries in per_server.items()}
    return merged, rounds.merge_inprocess(inprocess_rounds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark iris-service against reference servers."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("QUICK", "") not in ("", "0"),
        help="one round of short loads (3-5 minutes); also QUICK=1",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("BENCH_THREADS", DEFAULT_THREADS)),
        help="server threads, the same for every server (default %(default)s)",
    )
    parser.add_argument(
        "--tool",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator (auto: wrk when on PATH); gRPC loads use bench/grpcload.py",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=os.environ.get("BENCH_ROUNDS") or None,  # a string default goes through type
        help=f"rounds over all servers; figures are medians over rounds (default {FULL_ROUNDS}, "
        f"{QUICK_ROUNDS} with --quick; also BENCH_ROUNDS)",
    )
    parser.add_argument("--only", default="", help="comma-separated server names to run")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    return parser


def _prepare_ours(
    context: dict[str, object], tmp: Path, env: dict[str, str], wanted: bool
) -> tuple[models.OursCheck, str]:
    """Check ours imports and train its models into ``context``; (the check, why ours cannot run or '')."""
    ours = models.check_ours(REPO_ROOT, env)
    if not ours.available:
        _say(f"skipping ours: iris_service cannot be imported ({ours.reason})")
        return ours, f"iris_service cannot be imported ({ours.reason})"
    if not wanted:
        return ours, ""
    _say("training ours' models with python -m training ...")
    try:
        context["ours_model"] = models.train_ours(tmp / "ours-logreg.joblib", REPO_ROOT, env)
        context["ours_rf_model"] = models.train_ours(
            tmp / "ours-rf.joblib", REPO_ROOT, env, "--model", "random_forest", "--n-estimators", "200"
        )
    except (RuntimeError, OSError) as exc:
        return ours, str(exc)
    context["payload_log"] = str(tmp / "payload-log.jsonl")
    return ours, ""


def _prepare_mlserver(context: dict[str, object], tmp: Path) -> str:
    """MLServer's venv (installed once) and model repository into ``context``; why not, or ''."""
    prepared = mlserver.prepare(MLSERVER_VENV, tmp / "mlserver", say=_say)
    if prepared.executable is None:
        _say(f"skipping MLServer: {prepared.reason}")
        return prepared.reason
    context["mlserver"], context["mlserver_repository"] = str(prepared.executable), str(prepared.repository)
    return ""


def _why_not(spec: ServerSpec, ours_failure: str, missing: Mapping[str, str]) -> str:
    """Why ``spec`` cannot run here ('' when it can)."""
    if spec.needs_ours and ours_failure:
        return ours_failure
    return next((missing[k] for k in spec.needs if k in missing), "")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    tool = default_tool() if args.tool == "auto" else args.tool
    warmup_s, duration_s = QUICK_DURATIONS_S if args.quick else FULL_DURATIONS_S
    n_rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    env = _base_env()
    serve = specs.serve_servers(REPO_ROOT, env)
    all_specs = specs.build(serve)
    default_name = specs.default_spec_name(serve)
    only = {s for s in args.only.split(",") if s}
    unknown = only - {s.name for s in all_specs}
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    selected = [s for s in all_specs if not only or s.name in only]
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    results: dict[str, Any] = {
        "meta": {
            "quick": args.quick,
            "tool": tool,
            "threads": args.threads,
            "rounds": n_rounds,
            "warmup_s": warmup_s,
            "duration_s": duration_s,
            "default_server": serve.default,
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "servers": {},
    }
    _say(f"ours' default server (iris-service serve): {serve.default} -> {default_name}")
    if args.tool == "auto" and tool == "python":
        _say("wrk not on PATH: using bench/loadgen.py (apt-get install -y wrk for better numbers)")

    with tempfile.TemporaryDirectory(prefix="iris-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bodies = models.write_bodies(tmp, BATCH_SIZES, (V2_BATCH_SIZE,))
        bodies.update(v2bodies.write(tmp, models.ONE_ROW, models.iris_rows(V2_BATCH_SIZE)))
        context: dict[str, object] = {
            "python": sys.executable,
            "threads": args.threads,
            "ref_model": models.train_reference(tmp / "reference-logreg.joblib"),
        }
        ours, ours_failure = _prepare_ours(context, tmp, env, any(s.needs_ours for s in selected))
        missing: dict[str, str] = {}
        if any("mlserver" in s.needs for s in selected):
            reason = _prepare_mlserver(context, tmp)
            if reason:
                missing["mlserver"] = reason

        ours_model = context.get("ours_model")
        measure_inprocess = _inprocess_baselines(
            context["ref_model"],  # type: ignore[arg-type]
            ours_model if isinstance(ours_model, Path) else None,
            bodies[f"instances-{V2_BATCH_SIZE}"],
            bodies[f"v2-{V2_BATCH_SIZE}"],
            args.quick,
            env,
        )
        runnable = [s for s in selected if not _why_not(s, ours_failure, missing)]
        if runnable:
            measured, results["inprocess"] = _run_rounds(
                runnable,
                n_rounds,
                measure_inprocess,
                context=context,
                bodies=bodies,
                tool=tool,
                warmup_s=warmup_s,
                duration_s=duration_s,
                env=env,
                log_dir=log_dir,
            )
        else:  # nothing can run here: the baselines alone
            measured, results["inprocess"] = {}, rounds.merge_inprocess([{"round": 1, **measure_inprocess()}])
        for spec in selected:  # in spec order, skipped ones included
            reason = _why_not(spec, ours_failure, missing)
            results["servers"][spec.name] = measured.get(spec.name) or {
                "what": spec.note,
                "status": "skipped" if (spec.needs_ours and not ours.available) or spec.needs else "failed",
                "reason": reason,
                "scenarios": {},
            }

    results["targets"] = targets.evaluate(results, targets.checks(default_name))
    results["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    report.write_json(results, args.out)
    print(report.markdown(results), flush=True)
    _say(f"wrote {args.out} in {results['meta']['elapsed_s']} s")

    failed = any(s["status"] == "failed" for s in results["servers"].values())
    errors = any(
        m.get("error") or m.get("errors")
        for s in results["servers"].values()
        for m in s["scenarios"].values()
    )
    return 1 if failed or errors else 0
