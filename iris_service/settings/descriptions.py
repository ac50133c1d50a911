"""One line per setting of the config classes: what the documentation's configuration table says.

Kept next to the classes (not in the docs) so that a new setting without a line here fails
``tests/test_docs_settings.py``: the table is generated from this mapping, the classes and
the checks in ``checks.py``, so it cannot drift from the code.
"""
from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "ENV_NAME": "The environment this class is for; a mapping given to `create_app` may name it.",
    "DEBUG": "Flask's debug mode; production forces it off whatever the config says.",
    "TESTING": "Flask's testing mode (the testing environment); the collector is not tuned when it is on.",
    "MODEL_PATH": "One artifact to serve (its `.json` manifest beside it); development defaults to "
                  "`instance/iris_model.joblib`, production has none and refuses to start without a model.",
    "MODELS": "More models, name to artifact path: `{\"forest\": \"instance/forest_model.joblib\"}`.",
    "MODEL_DIR": "A registry folder of `<name>/<version>/model.*`; the newest version of each model is "
                 "served unless pinned in `MODEL_VERSIONS`.",
    "MODEL_VERSIONS": "Pins inside `MODEL_DIR`, name to version: `{\"iris\": \"2\"}`.",
    "DEFAULT_MODEL": "The model `/predict`, `/invocations` and file scoring use (default: the first configured).",
    "PICKLE_ALLOWED": "Serve joblib/pickle artifacts (always hash-verified first); false serves only ONNX "
                      "and skops.",
    "ALLOW_VERSION_MISMATCH": "Serve a pickle saved by another scikit-learn minor version (logged).",
    "SKOPS_TRUSTED_TYPES": "Types trusted in `.skops` artifacts beyond the built-in allow-list.",
    "TRUSTED_KEYS": "Ed25519 public key files; when set, only artifacts signed by one of them load.",
    "MAX_BATCH_SIZE": "Rows per request (and per CSV/Parquet body).",
    "INPUT_RANGE_POLICY": "`allow` or `reject`: with `reject` a value outside the manifest's training "
                          "min/max answers 422 (V1/V2/MLflow: 400) naming the row, feature and range.",
    "INPUT_RANGE_MARGIN": "With `reject`, widen each range by this fraction of its width on both sides.",
    "MAX_CONTENT_LENGTH": "Request body limit in bytes (413 beyond; a larger Content-Length is refused "
                          "before the body is read); null: no limit.",
    "ADMIN_TOKEN": "Bearer token that enables the admin and V2 repository routes (404 while unset).",
    "GRPC_PORT": "Serve gRPC on this port beside HTTP (`serve`; under gunicorn in every worker, one shared "
                 "port); `--grpc-port` wins over it. Null: no gRPC.",
    "GRPC_MAX_MESSAGE_BYTES": "With `--grpc-port`: the largest gRPC message (null: `MAX_CONTENT_LENGTH`).",
    "GRPC_THREADS": "With `--grpc-port`: threads serving gRPC calls.",
    "GRPC_MAX_CONCURRENT_RPCS": "With `--grpc-port`: calls at once before RESOURCE_EXHAUSTED.",
    "API_KEYS": "Keys for every route but the probes and the docs (`X-API-Key` or `Authorization: Bearer`).",
    "API_KEYS_PROTECT_PROBES": "With `API_KEYS`: also require a key on `/health*`, `/ping`, `/v2/health/*` "
                               "and `/metrics`.",
    "API_KEYS_PROTECT_DOCS": "With `API_KEYS`: also require a key on `/openapi.json`, `/docs` and the page.",
    "COMPRESS_RESPONSES": "gzip answers for clients that send `Accept-Encoding: gzip`.",
    "COMPRESS_MIN_SIZE": "Bytes under which an answer is not compressed.",
    "COMPRESS_LEVEL": "gzip level of compressed answers.",
    "METRICS_ENABLED": "Serve `GET /metrics` (Prometheus); false removes the route (404).",
    "LOG_LEVEL": "Level of the request log and the service's own log (a level name or number).",
    "LOG_FORMAT": "`json` (one JSON object a line) or `text` (one readable line) for the request log.",
    "TRACING_ENABLED": "OpenTelemetry spans for requests, decode, predict and encode (extra `otel`).",
    "TRACING_EXCLUDED_URLS": "Regular expressions searched in each request's full URL: a match is not traced "
                             "(default: the probes and `/metrics`); empty traces every request.",
    "UI_ENABLED": "Serve the page at `/` (else `/` answers a JSON index of the API).",
    "BATCHING": "Adaptive micro-batching: `off`, `on`, `auto`, or "
                "`{\"mode\": ..., \"max_batch_size\": ..., \"max_latency_ms\": ...}`.",
    "GC_THRESHOLD": "The garbage collector's thresholds once the models are loaded (not when testing); "
                    "null keeps Python's `[700, 10, 10]`.",
    "CORS_ORIGINS": "Origins allowed to call the API from a browser (`https://app.example` or `*`); "
                    "CORS is off while empty.",
    "API_TITLE": "Title of the OpenAPI document.",
    "API_VERSION": "Version of the OpenAPI document (the API's, not the package's).",
    "OPENAPI_VERSION": "OpenAPI version the document is written in.",
    "OPENAPI_URL_PREFIX": "Where flask-smorest mounts the OpenAPI routes.",
    "OPENAPI_JSON_PATH": "Path of the OpenAPI document under the prefix.",
    "OPENAPI_SWAGGER_UI_PATH": "Path of the Swagger UI.",
    "OPENAPI_SWAGGER_UI_URL": "Where the Swagger UI's assets are served from (locally: `/docs` works offline).",
    "DRIFT_ENABLED": "Track served values against the training deciles in the manifest (histograms, "
                     "out-of-range counts, PSI per feature; `GET /models/<name>/drift`).",
    "DRIFT_WINDOW": "Rows per model in the sliding window the PSI is computed over (100 to 1,000,000).",
    "PAYLOAD_LOG": "Payload logs of answered requests (id, time, model, version, inputs, outputs): `off`, "
                   "a JSON-lines file path, or an `http(s)://` URL receiving KServe-style CloudEvents.",
    "PAYLOAD_LOG_SAMPLE": "Share of answered requests the payload log records (above 0, at most 1).",
    "PAYLOAD_LOG_MAX_BYTES": "Size past which the payload log file is rotated (1024 bytes or more).",
    "PAYLOAD_LOG_BACKUPS": "Rotated payload log files kept (`file.1` newest); 0 starts the file again.",
    "PAYLOAD_LOG_QUEUE": "Payload records waiting for the writer at most; more are dropped and counted.",
}
