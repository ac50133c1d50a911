"""Every setting the config classes define is checked at start: a bad value stops start-up with one line.

The table below is keyed by setting; the first test reads the settings off the
config classes, so a new setting without a bad-value case (and so, in practice,
without a check) fails here instead of turning into a 500 on the first request.
"""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import free_port, serve_args, server_env

from iris_service import create_app
from iris_service.settings import CONFIGS, ConfigError, vars_of

#: Setting -> (a bad value, the one line start-up stops with).
BAD = {
    "ADMIN_TOKEN": (123, "ADMIN_TOKEN must be a string (or unset), not a value of type int."),
    "ALLOW_VERSION_MISMATCH": ("yes", "ALLOW_VERSION_MISMATCH must be true or false, not 'yes'."),
    "API_KEYS": (5, "API_KEYS must be a list of strings or a comma-separated string, not a value of type int."),
    "API_KEYS_PROTECT_DOCS": (1, "API_KEYS_PROTECT_DOCS must be true or false, not 1."),
    "API_KEYS_PROTECT_PROBES": ("no", "API_KEYS_PROTECT_PROBES must be true or false, not 'no'."),
    "API_TITLE": ("", "API_TITLE must be a non-empty string, not ''."),
    "API_VERSION": (2, "API_VERSION must be a non-empty string (in the environment write it as JSON text: "
                       "'\"2\"'), not 2."),
    "BATCHING": ("sometimes", "BATCHING must be one of off, on, auto or a mapping, not 'sometimes'"),
    "COMPRESS_LEVEL": (99, "COMPRESS_LEVEL must be a whole number from 0 to 9, not 99."),
    "COMPRESS_MIN_SIZE": (-1, "COMPRESS_MIN_SIZE must be a whole number of bytes from 0 to 1099511627776 "
                              "(1 TiB), not -1."),
    "COMPRESS_RESPONSES": ("on", "COMPRESS_RESPONSES must be true or false, not 'on'."),
    "CORS_ORIGINS": ("app.example", "CORS_ORIGINS entries are origins like https://app.example (or *), not "
                                    "'app.example'; from the environment write them comma-separated: "
                                    "https://a.example,https://b.example."),
    "DEBUG": ("maybe", "DEBUG must be true or false, not 'maybe'."),
    "DEFAULT_MODEL": ("nope", "DEFAULT_MODEL 'nope' is not configured; configured models: iris."),
    "DRIFT_ENABLED": ("yes", "DRIFT_ENABLED must be true or false, not 'yes'."),
    "DRIFT_WINDOW": (10, "DRIFT_WINDOW must be a whole number of rows from 100 to 1,000,000, not 10."),
    "ENV_NAME": ("staging", "Unknown environment 'staging' (--env, IRIS_SERVICE_ENV or ENV_NAME); choose one of "
                            "development, testing, production."),
    "GC_THRESHOLD": ("fast", "GC_THRESHOLD must be null or one to three positive integers, not 'fast'."),
    "GRPC_MAX_CONCURRENT_RPCS": (0, "GRPC_MAX_CONCURRENT_RPCS must be a whole number from 1 to 1000000, not 0."),
    "GRPC_MAX_MESSAGE_BYTES": (2**31, "GRPC_MAX_MESSAGE_BYTES must be a whole number of bytes from 1 to "
                                      "2147483647 (2 GiB - 1 byte), or null for MAX_CONTENT_LENGTH's, "
                                      "not 2147483648."),
    "PAYLOAD_LOG": ("ftp://x", "PAYLOAD_LOG must be off, a file path in an existing writable folder, or an http:// "
                               "or https:// URL, not 'ftp://x'."),
    "PAYLOAD_LOG_SAMPLE": (0, "PAYLOAD_LOG_SAMPLE must be a number above 0 and at most 1 (the share of requests "
                              "logged), not 0."),
    "PAYLOAD_LOG_MAX_BYTES": (10, "PAYLOAD_LOG_MAX_BYTES must be a whole number from 1024 to 1099511627776 (bytes "
                                  "before the file is rotated), not 10."),
    "PAYLOAD_LOG_BACKUPS": (-1, "PAYLOAD_LOG_BACKUPS must be a whole number from 0 to 1000 (rotated files kept), "
                                "not -1."),
    "PAYLOAD_LOG_QUEUE": (0, "PAYLOAD_LOG_QUEUE must be a whole number from 1 to 10000000 (records waiting for the "
                             "writer), not 0."),
    "GRPC_PORT": (0, "GRPC_PORT must be a whole number from 1 to 65535, or null for no gRPC, not 0."),
    "GRPC_THREADS": (1.5, "GRPC_THREADS must be a whole number from 1 to 1024, or null for 2 (4 with BATCHING on or auto), not 1.5."),
    "INPUT_RANGE_MARGIN": (-0.1, "INPUT_RANGE_MARGIN must be a number >= 0 (a fraction of each range), not -0.1."),
    "INPUT_RANGE_POLICY": ("clip", "INPUT_RANGE_POLICY must be 'allow' or 'reject', not 'clip'."),
    "LOG_FORMAT": ("xml", "LOG_FORMAT must be json or text, not 'xml'."),
    "LOG_LEVEL": ("LOUD", "LOG_LEVEL must be a logging level (DEBUG, INFO, WARNING, ERROR), not 'LOUD'."),
    "MAX_BATCH_SIZE": ("abc", "MAX_BATCH_SIZE must be a whole number from 1 to 1000000000, not 'abc'."),
    "MAX_CONTENT_LENGTH": ("abc", "MAX_CONTENT_LENGTH must be a whole number of bytes from 1 to 1099511627776 "
                                  "(1 TiB), or null for no limit, not 'abc'."),
    "METRICS_ENABLED": ("true", "METRICS_ENABLED must be true or false, not 'true'."),
    "MODELS": ("not json", 'MODELS must map names to strings (JSON {"name": "..."}), not \'not json\'.'),
    "MODEL_DIR": (5, "MODEL_DIR must be a string, not 5."),
    "MODEL_PATH": (["a"], "MODEL_PATH must be a string, not ['a']."),
    "MODEL_VERSIONS": ({"iris": 1}, 'MODEL_VERSIONS must map names to strings (JSON {"name": "..."}), '
                                    "not {'iris': 1}."),
    "OPENAPI_JSON_PATH": (None, "OPENAPI_JSON_PATH must be a non-empty string, not None."),
    "OPENAPI_SWAGGER_UI_PATH": ("docs", "OPENAPI_SWAGGER_UI_PATH must be a path starting with / (or null: off), "
                                        "not 'docs'."),
    "OPENAPI_SWAGGER_UI_URL": ("docs/assets/", "OPENAPI_SWAGGER_UI_URL must be a path starting with / (or null: "
                                               "off), not 'docs/assets/'."),
    "OPENAPI_URL_PREFIX": (7, "OPENAPI_URL_PREFIX must be a non-empty string or null (off) (in the environment "
                              "write it as JSON text: '\"7\"'), not 7."),
    "OPENAPI_VERSION": ("three", "OPENAPI_VERSION must be an OpenAPI version such as 3.0.3, not 'three'."),
    "PICKLE_ALLOWED": (0, "PICKLE_ALLOWED must be true or false, not 0."),
    "SKOPS_TRUSTED_TYPES": (1.5, "SKOPS_TRUSTED_TYPES must be a list of strings or a comma-separated string, "
                                 "not 1.5."),
    "TESTING": ("no", "TESTING must be true or false, not 'no'."),
    "TRACING_ENABLED": (None, "TRACING_ENABLED must be true or false, not None."),
    "TRACING_EXCLUDED_URLS": (123, "TRACING_EXCLUDED_URLS must be regular expressions of URLs not traced, a list "
                                   "of strings or comma-separated text such as '/health,/metrics', not 123."),
    "TRUSTED_KEYS": (5, "TRUSTED_KEYS must be a list of public key files (or 'a.pub,b.pub'), not 5."),
    "UI_ENABLED": ("false", "UI_ENABLED must be true or false, not 'false'."),
}
#: Settings whose value is a secret: the message describes it and never repeats it.
SECRETS = {"ADMIN_TOKEN", "API_KEYS"}


@pytest.fixture(autouse=True)
def _empty_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    for name in list(os.environ):
        if name.startswith("IRIS_SERVICE_") and name != "IRIS_SERVICE_INSTANCE_PATH":
            monkeypatch.delenv(name)


def test_every_setting_of_every_config_class_has_a_bad_value_case():
    defined = set().union(*(vars_of(cls) for cls in CONFIGS.values()))
    assert sorted(defined - set(BAD)) == [], "a setting without a start-up check (add it to checks.py and BAD)"
    assert sorted(set(BAD) - defined) == []


@pytest.mark.parametrize("key", sorted(BAD))
def test_a_bad_value_stops_create_app_with_one_line_naming_the_setting(iris_artifact, key):
    value, message = BAD[key]
    with pytest.raises(ConfigError) as caught:
        create_app({"ENV_NAME": "testing", "MODEL_PATH": str(iris_artifact), key: value})
    text = str(caught.value)
    assert text == message
    assert "\n" not in text
    assert key in text
    if key not in SECRETS:
        assert repr(value) in text or str(value) in text  # the value the operator wrote


@pytest.mark.parametrize("key", sorted(SECRETS))
def test_a_refused_secret_is_not_repeated(iris_artifact, key):
    with pytest.raises(ConfigError) as caught:
        create_app({"ENV_NAME": "testing", "MODEL_PATH": str(iris_artifact), key: 987654})
    assert "987654" not in str(caught.value)


def test_the_default_settings_of_every_environment_pass_their_checks(iris_artifact):
    for name in CONFIGS:
        app = create_app({"ENV_NAME": name, "MODEL_PATH": str(iris_artifact)})
        assert app.config["ENV_NAME"] == name


#: The issue's examples and a sample of the rest, as the environment gives them to ``iris-service serve``.
SERVE_CASES = [
    ("MAX_BATCH_SIZE", "abc", BAD["MAX_BATCH_SIZE"][1]),
    ("MAX_CONTENT_LENGTH", "abc", BAD["MAX_CONTENT_LENGTH"][1]),
    ("COMPRESS_LEVEL", "99", BAD["COMPRESS_LEVEL"][1]),
    ("LOG_FORMAT", "xml", BAD["LOG_FORMAT"][1]),
    ("LOG_LEVEL", "LOUD", BAD["LOG_LEVEL"][1]),
    ("MODELS", "not json", BAD["MODELS"][1]),
    ("BATCHING", "sometimes", BAD["BATCHING"][1]),
    ("API_VERSION", "2", BAD["API_VERSION"][1]),
    ("DEBUG", "maybe", BAD["DEBUG"][1]),
    ("GRPC_THREADS", "0", "GRPC_THREADS must be a whole number from 1 to 1024, or null for 2 (4 with BATCHING on or auto), not 0."),
    ("TRACING_EXCLUDED_URLS", "/health,/v2/(models", "TRACING_EXCLUDED_URLS entry '/v2/(models' is not a regular "
     "expression (missing ), unterminated subpattern at position 4); write one per URL pattern, comma-separated, "
     "such as '/health,/metrics'."),
]


PICKLE_WARNING = "PICKLE_ALLOWED is on without TRUSTED_KEYS"


@pytest.mark.parametrize(("key", "value", "message"), SERVE_CASES, ids=[case[0] for case in SERVE_CASES])
def test_a_bad_setting_stops_serve_with_one_line_and_no_traceback(iris_artifact, tmp_path, key, value, message):
    env = {**os.environ, **server_env(iris_artifact, tmp_path, **{f"IRIS_SERVICE_{key}": value})}
    result = subprocess.run(serve_args(free_port()), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # BATCHING is read when the data plane starts, after production's warning about pickles without keys.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(PICKLE_WARNING)]
    assert lines == [f"Error: {message}"]
    assert result.stdout == ""


def test_excluded_urls_from_the_environment_are_comma_separated_text(iris_artifact, monkeypatch):
    # The IRIS_SERVICE_TRACING_EXCLUDED_URLS=123 was read as the JSON number 123 and ended in a
    # traceback from inside OpenTelemetry; as a list setting it is the pattern '123'.
    monkeypatch.setenv("IRIS_SERVICE_TRACING_EXCLUDED_URLS", "123, /metrics")
    app = create_app({"ENV_NAME": "testing", "MODEL_PATH": str(iris_artifact)})
    assert app.config["TRACING_EXCLUDED_URLS"] == ["123", "/metrics"]
