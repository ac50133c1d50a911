"""N one-row ``/predict`` requests through a checkout's WSGI app: what ``valgrind --tool=callgrind`` counts.

``python bench/request_loop.py CHECKOUT N`` builds the app of the checkout at
CHECKOUT as a server runs it and sends N requests; run it for two values of N
under callgrind and the difference of the instruction totals, divided by the
difference of N, is the instructions one request costs (start-up cancels out).
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path


def main(root: str, calls: int) -> None:
    os.chdir(root)
    sys.path.insert(0, root)
    try:
        from iris_service import training
    except ImportError:  # an earlier layout: training/ was a top-level package
        import training  # type: ignore[no-redef]
    from werkzeug.test import EnvironBuilder

    folder = Path(tempfile.mkdtemp())
    training.train(folder / "model.joblib", version="1")
    os.environ["IRIS_SERVICE_INSTANCE_PATH"] = str(folder / "instance")
    config = {"ENV_NAME": "production", "MODEL_PATH": str(folder / "model.joblib")}
    try:
        from iris_service.cli.wsgi import create_app  # the app as servers run it
    except ImportError:
        from iris_service import create_app
    app = create_app(config)
    body = b'{"features": [5.1, 3.5, 1.4, 0.2]}'
    environ = EnvironBuilder(path="/predict", method="POST", data=body, content_type="application/json").get_environ()
    for _ in range(calls):
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        chunks = app(env, lambda status, headers, exc_info=None: None)
        b"".join(chunks)
        getattr(chunks, "close", lambda: None)()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
