"""schemathesis against our own ``/openapi.json`` on a real waitress server.

Every documented operation gets generated requests, valid and invalid; each
answer must not be a 5xx, must have a documented status code and must match
the documented schema and content type. ``FUZZ_EXAMPLES`` (``make fuzz``)
raises the examples per operation and mode from the quick default.
"""
from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from conftest import free_port, run_server, serve_args, server_env
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server_url(iris_artifact, tmp_path_factory):
    # live_server is function-scoped; one server for the module keeps this test quick.
    tmp = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    with run_server(serve_args(port), server_env(iris_artifact, tmp), port, output=tmp / "server.log") as (base, _):
        yield base


@pytest.fixture(scope="module")
def schema(server_url):
    return schemathesis.openapi.from_url(f"{server_url}/openapi.json", timeout=10)


def operations(schema):
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())  # an invalid operation in our own schema fails here
    return ops


def test_schema_lists_the_prediction_operations(schema):
    labels = {op.label for op in operations(schema)}
    assert {"POST /predict", "POST /models/{name}/predict", "GET /health"} <= labels


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_every_operation_conforms_to_the_schema(schema, server_url, mode):
    session = requests.Session()
    failures: list[str] = []
    for operation in operations(schema):

        # Replayed identically in the suite; `make fuzz` (FUZZ_EXAMPLES) explores.
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  derandomize="FUZZ_EXAMPLES" not in os.environ,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            case.call_and_validate(base_url=server_url, session=session, checks=CHECKS, timeout=20)

        try:
            check()
        except Unsatisfiable:
            # Nothing to negate: no body or query, and any string is a valid path value.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
