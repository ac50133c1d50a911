"""In-process cost of one ``/predict`` row: ours with everything on against the Flask constant-answer floor.

``python -m bench.wsgi_floor --model PATH`` builds both WSGI apps in one fresh
interpreter (ours as a server runs it, production config: metrics, request
log to a discarded stderr, security headers, compression; the floor is
bench/reference/floor.py, Flask answering a constant) and times the same
one-row request through each callable, alternating batches so both meet the
same stretches of a drifting machine. It prints one JSON line of median
microseconds per request; run.py calls it once a round for target S6. No
socket is opened: this is the app's cost without the server's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.models import ONE_ROW

BODY = json.dumps({"features": ONE_ROW}).encode()
WARMUP_CALLS = 200


def _caller(app: Any) -> Callable[[], None]:
    """One POST /predict of BODY through ``app``'s WSGI callable, its answer read and closed."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/predict", method="POST", data=BODY, content_type="application/json").get_environ()

    def once() -> None:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(BODY)
        chunks = app(env, lambda status, headers, exc_info=None: None)
        b"".join(chunks)
        getattr(chunks, "close", lambda: None)()

    return once


def _us_per_call(once: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        once()
    return (time.perf_counter() - start) / calls * 1e6


def measure(model_path: str, calls: int, batches: int) -> dict[str, float]:
    """Median us per request of ours and of the floor, ``batches`` alternating batches of ``calls``."""
    os.environ.setdefault("IRIS_SERVICE_INSTANCE_PATH", tempfile.mkdtemp(prefix="iris-bench-instance-"))
    from bench.reference.floor import app as floor_app
    from iris_service.cli.wsgi import create_app

    ours = _caller(create_app({"ENV_NAME": "production", "MODEL_PATH": model_path}))
    floor = _caller(floor_app)
    for _ in range(WARMUP_CALLS):
        ours()
        floor()
    ours_us, floor_us = [], []
    for _ in range(batches):
        ours_us.append(_us_per_call(ours, calls))
        floor_us.append(_us_per_call(floor, calls))
    return {"wsgi_ours_us": statistics.median(ours_us), "wsgi_floor_us": statistics.median(floor_us)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ours' artifact (python -m training --out PATH)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, args.calls, args.batches)), flush=True)


if __name__ == "__main__":
    main()
