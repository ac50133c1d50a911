"""In-process cost of one ``/predict`` row through the whole WSGI app, this checkout against another.

``python -m bench.request_cost --baseline PATH`` times the same request on this
checkout and on the one at PATH (a ``git worktree`` of an earlier commit),
alternating rounds in fresh interpreters, and prints microseconds per request
and their ratio: the figure the architecture issue bounds (at most 5% above).
Both apps run the production config (metrics, request log to a discarded
stderr, security headers, compression), as a server would.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}).encode()


def child(calls: int, batches: int) -> None:
    """Run inside a checkout (cwd): build its app, time ``calls`` requests ``batches`` times."""
    sys.path.insert(0, os.getcwd())
    try:
        from iris_service import training
    except ImportError:  # an earlier layout: training/ was a top-level package
        import training  # type: ignore[no-redef]
    from werkzeug.test import EnvironBuilder

    from iris_service import create_app

    folder = Path(tempfile.mkdtemp())
    training.train(folder / "model.joblib", version="1")
    os.environ["IRIS_SERVICE_INSTANCE_PATH"] = str(folder / "instance")
    try:
        from iris_service.cli.wsgi import create_app as served  # the app as servers run it
        app = served({"ENV_NAME": "production", "MODEL_PATH": str(folder / "model.joblib")})
    except ImportError:
        app = create_app({"ENV_NAME": "production", "MODEL_PATH": str(folder / "model.joblib")})
    environ = EnvironBuilder(path="/predict", method="POST", data=BODY, content_type="application/json").get_environ()

    def once() -> None:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(BODY)
        chunks = app(env, lambda status, headers, exc_info=None: None)
        b"".join(chunks)
        getattr(chunks, "close", lambda: None)()

    for _ in range(200):
        once()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            once()
        times.append((time.perf_counter() - start) / calls * 1e6)
    print(json.dumps({"us_per_request": statistics.median(times)}))


def measure(root: Path, calls: int, batches: int) -> float:
    result = subprocess.run(
        # By path, from the checkout's folder: the child puts that folder first on sys.path.
        [sys.executable, str(Path(__file__).resolve()), "--child", "--calls", str(calls), "--batches", str(batches)],
        cwd=root, capture_output=True, text=True, check=True, timeout=600,
    )
    return float(json.loads(result.stdout.strip().splitlines()[-1])["us_per_request"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="checkout to compare with (e.g. a git worktree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.calls, args.batches)
        return
    roots = {"this checkout": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    results: dict[str, list[float]] = {name: [] for name in roots}
    for _ in range(args.rounds):
        for name, root in roots.items():
            results[name].append(measure(root, args.calls, args.batches))
    print("| checkout | us per /predict row, by round | median |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {' / '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
    if args.baseline:
        ratio = statistics.median(results["this checkout"]) / statistics.median(results["baseline"])
        print(f"\nthis checkout / baseline = {ratio:.3f}")


if __name__ == "__main__":
    main()
