"""In-process cost of explaining a 1,000-row batch of the logistic model, against predicting it.

``python -m bench.explain_cost`` trains the default model, builds the app as
servers run it (production config: metrics, request log to a discarded
stderr, security headers, compression) and times the same 1,000-row body
through the whole WSGI app on ``/models/iris/predict`` and
``/models/iris/explain``, alternating in each round. It prints milliseconds
per request by round, their medians and the ratio explain / predict: the
figure issue 20 bounds (at most 3). ``--json`` prints the medians as one line: ``make bench``
runs it once a round for target P2.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROWS = 1000


def body(rows: int) -> bytes:
    """``rows`` Iris rows (the data set repeated), as the native ``instances`` body."""
    from sklearn.datasets import load_iris

    data = load_iris().data.tolist()
    return json.dumps({"instances": [data[i % len(data)] for i in range(rows)]}).encode()


def caller(app: object, path: str, data: bytes) -> Callable[[], None]:
    """One POST of ``data`` to ``path`` through the WSGI app, answer read whole; 200 or it stops."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, method="POST", data=data, content_type="application/json").get_environ()

    def once() -> None:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(data)
        status: list[str] = []
        chunks = app(env, lambda s, headers, exc_info=None: status.append(s))  # type: ignore[operator]
        b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
        if not status[0].startswith("200"):
            raise SystemExit(f"{path} answered {status[0]}")

    return once


def per_call_ms(once: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        once()
    return (time.perf_counter() - start) / calls * 1e3


def measure(model_path: str, rows: int = ROWS, calls: int = 50, rounds: int = 7) -> dict[str, Any]:
    """Median ms per request of ``/models/iris/predict`` and ``/explain`` on one ``rows``-row body, by round."""
    os.environ.setdefault("IRIS_SERVICE_INSTANCE_PATH", tempfile.mkdtemp(prefix="iris-bench-instance-"))
    from iris_service.cli.wsgi import create_app

    app = create_app({"ENV_NAME": "production", "MODEL_PATH": model_path})
    data = body(rows)
    predict, explain = caller(app, "/models/iris/predict", data), caller(app, "/models/iris/explain", data)
    for once in (predict, explain):  # warm: the explainer is built on first use, caches fill
        per_call_ms(once, 5)
    times: dict[str, list[float]] = {"predict": [], "explain": []}
    for _ in range(rounds):
        times["predict"].append(per_call_ms(predict, calls))
        times["explain"].append(per_call_ms(explain, calls))
    return {"explain_ms": statistics.median(times["explain"]), "explain_predict_ms": statistics.median(times["predict"]),
            "by_round": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ours' artifact (python -m training --out PATH); trained here when absent")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50, help="requests per route per round")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--json", action="store_true", help="one JSON line of the medians (make bench's P2)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    model = args.model
    if model is None:
        from iris_service import training

        trained = Path(tempfile.mkdtemp()) / "model.joblib"
        training.train(trained, version="1")
        model = str(trained)
    real_stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the request log goes nowhere for the whole run
    try:
        result = measure(model, args.rows, args.calls, args.rounds)
    finally:
        sys.stderr = real_stderr
    times = result.pop("by_round")
    if args.json:
        print(json.dumps(result), flush=True)
        return
    print(f"| {args.rows}-row batch, logistic model | ms per request, by round | median |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| /models/iris/{name} | {' / '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")
    ratio = result["explain_ms"] / result["explain_predict_ms"]
    print(f"\nexplain / predict = {ratio:.2f} (bound: 3)")


if __name__ == "__main__":
    main()
