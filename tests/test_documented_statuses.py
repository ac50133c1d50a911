"""Every status code /openapi.json documents is one a real request produces.

schemathesis (test_schemathesis.py) checks the other direction: each answer's
status is documented. Here a table holds, for every documented (method, path,
status), a request that produces exactly that status, in the documented shape.
A status added to the docs without a row here fails
``test_every_documented_status_has_a_request``; one that no request can
produce must leave the docs instead.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import FEATURES, KNOWN_ROWS, create_app_for_test
from werkzeug.http import HTTP_STATUS_CODES

from iris_service import __version__

TOKEN = "documented-statuses-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRONG_AUTH = {"Authorization": "Bearer not-the-token"}
#: Small, so a 413 costs 20 kB rather than the production default of 16 MiB.
MAX_CONTENT_LENGTH = 16 * 1024
TOO_LARGE = b'{"features": [5.1, 3.5, 1.4, 0.2]}' + b" " * (MAX_CONTENT_LENGTH + 1)
ROW = KNOWN_ROWS[0][0]
#: The V1, V2 and MLflow protocols answer {"error": "..."}; native routes flask-smorest's shape.
PLAIN_ERROR_PREFIXES = ("/v1/", "/v2", "/invocations", "/ping", "/version")
#: MLflow's routes add its error_code and message to {"error": "..."}.
MLFLOW_PATHS = ("/invocations", "/ping", "/version")


def tensor(rows: list[list[float]]) -> dict[str, Any]:
    """One V2 input tensor holding ``rows``."""
    return {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}


@dataclass(frozen=True)
class Call:
    """A request that produces ``status``, after unloading ``unload`` or tampering with forest's artifact."""

    method: str
    path: str
    status: int
    says: str  # a part of the body users rely on (the message, for errors)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    unload: str | None = None
    tamper: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path} {self.status} {self.says[:40]}"


def _json_routes(path: str, ok: str, *, unknown: str, unload: str, body: dict[str, Any], ok_says: str,
                 invalid: dict[str, Any], invalid_status: int, invalid_says: str) -> list[Call]:
    """The statuses every JSON prediction route shares: 200, 400, 413, 415, 4xx invalid, 503."""
    calls = [
        Call("POST", path.format(name=ok), 200, ok_says, {"json": body}),
        Call("POST", path.format(name=ok), 400, "Malformed JSON",
             {"data": b'{"features": [', "content_type": "application/json"}),
        Call("POST", path.format(name=ok), 413, f"larger than the limit of {MAX_CONTENT_LENGTH} bytes",
             {"data": TOO_LARGE, "content_type": "application/json"}),
        Call("POST", path.format(name=ok), 415, "got text/plain", {"data": b"5.1,3.5", "content_type": "text/plain"}),
        Call("POST", path.format(name=ok), invalid_status, invalid_says, {"json": invalid}),
        Call("POST", path.format(name=unload), 503, f"Model {unload!r} is not loaded: unloaded",
             {"json": body}, unload=unload),
    ]
    if "{name}" in path:
        calls.append(Call("POST", path.format(name=unknown), 404, "No model named 'nope'", {"json": body}))
    return calls


def _v2_reads(path: str) -> list[Call]:
    """GET routes of one model (metadata, readiness): 200, 404, 503."""
    return [
        Call("GET", path.format(name="forest", version="1"), 200, '"forest"'),
        Call("GET", path.format(name="nope", version="1"), 404, "No model named 'nope'"),
        Call("GET", path.format(name="forest", version="1"), 503, "Model 'forest' is not loaded", unload="forest"),
    ]


def _v2_infer(path: str) -> list[Call]:
    single = {"inputs": [tensor([ROW])]}
    return [
        *_json_routes(path.replace("{version}", "1"), "forest", unknown="nope", unload="forest", body=single,
                      ok_says='"model_name":"forest"', invalid={"inputs": [{**tensor([ROW]), "shape": [1, 2]}]},
                      invalid_status=400, invalid_says="has shape [1, 2] (2 values) but its data holds 4"),
        Call("POST", path.format(name="forest", version="1"), 200, '"binary_data_size"',
             {"json": {**single, "parameters": {"binary_data_output": True}}}),
    ]


CALLS: list[Call] = [
    # The tutorial's endpoint and the named-model one.
    *_json_routes("/predict", "iris", unknown="nope", unload="iris", body={"features": ROW}, ok_says='"setosa"',
                  invalid={"features": [1, 2]}, invalid_status=422, invalid_says="Expected 4 features"),
    *_json_routes("/models/{name}/predict", "forest", unknown="nope", unload="forest", body={"features": ROW},
                  ok_says='"model":"forest"', invalid={"features": [1, 2]}, invalid_status=422, invalid_says="Expected 4 features"),
    *_json_routes("/models/{name}/explain", "forest", unknown="nope", unload="forest", body={"features": ROW},
                  ok_says='"method":"tree_path_dependent"', invalid={"features": [1, 2]}, invalid_status=422,
                  invalid_says="Expected 4 features"),
    Call("POST", "/models/bare/explain", 501, "Model 'bare' 1 has no explanation data", {"json": {"features": ROW}}),
    Call("GET", "/health", 200, "API is running!"),
    Call("GET", "/health/live", 200, "alive"),
    Call("GET", "/health/ready", 200, '"ready"'),
    Call("GET", "/health/ready", 503, "Not ready: forest: unloaded", unload="forest"),
    Call("GET", "/models", 200, '"forest"'),
    Call("GET", "/models/forest", 200, '"available_versions"'),
    Call("GET", "/models/nope", 404, "No model named 'nope'"),
    Call("GET", "/models/forest", 503, "Model 'forest' is not loaded", unload="forest"),
    Call("GET", "/models/forest/drift", 200, '"tracked":true'),
    Call("GET", "/models/nope/drift", 404, "No model named 'nope'"),
    Call("GET", "/models/forest/drift", 503, "Model 'forest' is not loaded", unload="forest"),
    # Admin.
    Call("POST", "/admin/models/forest/reload", 200, '"previous_version"', {"headers": AUTH}),
    Call("POST", "/admin/models/forest/reload", 401, "Missing or wrong bearer token", {"headers": WRONG_AUTH}),
    Call("POST", "/admin/models/nope/reload", 404, "No model named 'nope'", {"headers": AUTH}),
    Call("POST", "/admin/models/forest/reload", 409, "SHA-256 mismatch", {"headers": AUTH}, tamper=True),
    Call("POST", "/admin/models/forest/reload", 422, "Shorter than minimum length 1",
         {"headers": AUTH, "query_string": {"version": ""}}),
    # V1.
    *_json_routes("/v1/models/{name}:predict", "forest", unknown="nope", unload="forest",
                  body={"instances": [ROW]}, ok_says='"predictions"', invalid={"instances": [[1, 2]]}, invalid_status=400,
                  invalid_says="Expected 4 features"),
    Call("GET", "/v1/models/forest", 200, '"ready":true'),
    Call("GET", "/v1/models/nope", 404, "No model named 'nope'"),
    Call("GET", "/v1/models/forest", 503, "Model 'forest' is not loaded", unload="forest"),
    *_json_routes("/v1/models/{name}:explain", "forest", unknown="nope", unload="forest",
                  body={"instances": [ROW]}, ok_says='"explanations"', invalid={"instances": [[1, 2]]},
                  invalid_status=400, invalid_says="Expected 4 features"),
    Call("POST", "/v1/models/bare:explain", 501, "Model 'bare' 1 has no explanation data",
         {"json": {"instances": [ROW]}}),
    # V2 (Open Inference Protocol).
    Call("GET", "/v2", 200, '"model_repository"'),
    Call("GET", "/v2/", 200, '"model_repository"'),
    Call("GET", "/v2/health/live", 200, '"live":true'),
    Call("GET", "/v2/health/ready", 200, '"ready":true'),
    Call("GET", "/v2/health/ready", 503, "Not ready: model(s) forest not loaded.", unload="forest"),
    *_v2_reads("/v2/models/{name}"),
    *_v2_reads("/v2/models/{name}/ready"),
    *_v2_reads("/v2/models/{name}/versions/{version}"),
    *_v2_reads("/v2/models/{name}/versions/{version}/ready"),
    Call("GET", "/v2/models/forest/versions/9", 404, "serves version '1', not '9'"),
    *_v2_infer("/v2/models/{name}/infer"),
    *_v2_infer("/v2/models/{name}/versions/{version}/infer"),
    Call("POST", "/v2/repository/index", 200, '"READY"', {"headers": AUTH, "json": {"ready": True}}),
    Call("POST", "/v2/repository/index", 400, "json.ready: Not a valid boolean.",
         {"headers": AUTH, "json": {"ready": "perhaps"}}),
    Call("POST", "/v2/repository/index", 401, "Missing or wrong bearer token", {"json": {}}),
    Call("POST", "/v2/repository/index", 404, "No route for POST /v2/repository/index",
         {"headers": AUTH, "json": {}}, config={"ADMIN_TOKEN": None}),
    Call("POST", "/v2/repository/index", 413, "larger than the limit",
         {"headers": AUTH, "data": TOO_LARGE, "content_type": "application/json"}),
    Call("POST", "/v2/repository/index", 415, "got text/plain",
         {"headers": AUTH, "data": b"ready", "content_type": "text/plain"}),
    Call("POST", "/v2/repository/models/forest/load", 200, '"READY"', {"headers": AUTH}),
    Call("POST", "/v2/repository/models/forest/load", 401, "Missing or wrong bearer token"),
    Call("POST", "/v2/repository/models/nope/load", 404, "No model named 'nope'", {"headers": AUTH}),
    Call("POST", "/v2/repository/models/forest/load", 409, "SHA-256 mismatch", {"headers": AUTH}, tamper=True),
    Call("POST", "/v2/repository/models/forest/unload", 200, '"UNAVAILABLE"', {"headers": AUTH}),
    Call("POST", "/v2/repository/models/forest/unload", 401, "Missing or wrong bearer token",
         {"headers": WRONG_AUTH}),
    Call("POST", "/v2/repository/models/nope/unload", 404, "No model named 'nope'", {"headers": AUTH}),
    # MLflow.
    *_json_routes("/invocations", "iris", unknown="nope", unload="iris",
                  body={"dataframe_split": {"columns": list(FEATURES), "data": [ROW]}}, ok_says='"predictions":[0]',
                  invalid={"dataframe_split": {"columns": ["colour"], "data": [[1.0]]}},
                  invalid_status=400, invalid_says="colour"),
    Call("GET", "/ping", 200, '"ready"'),
    Call("GET", "/ping", 503, "Model 'iris' is not loaded", unload="iris"),
    Call("GET", "/version", 200, __version__),
]


@pytest.fixture
def app_config(iris_artifact: Path, forest_artifact: Path, tmp_path: Path) -> dict[str, object]:
    # forest's own copy: the 409 rows spoil it, and the session's artifact must stay sound.
    forest = tmp_path / "forest" / "model.joblib"
    forest.parent.mkdir()
    shutil.copy(forest_artifact, forest)
    shutil.copy(forest_artifact.with_name(forest_artifact.name + ".json"), forest.with_name(forest.name + ".json"))
    # bare: forest without the explanation data its manifest holds (a model registered without --background).
    bare = tmp_path / "bare" / "model.joblib"
    bare.parent.mkdir()
    shutil.copy(forest_artifact, bare)
    manifest = json.loads(forest_artifact.with_name(forest_artifact.name + ".json").read_bytes())
    del manifest["explain"]
    manifest["name"] = "bare"
    bare.with_name(bare.name + ".json").write_text(json.dumps(manifest))
    return {
        "TESTING": True,
        "MODEL_PATH": str(iris_artifact),
        "MODELS": {"forest": str(forest), "bare": str(bare)},
        "ADMIN_TOKEN": TOKEN,
        "MAX_CONTENT_LENGTH": MAX_CONTENT_LENGTH,
    }


def documented(spec: dict[str, Any]) -> set[tuple[str, str, int]]:
    """Every (method, path, status) in the document, ``default`` aside."""
    return {
        (method.upper(), path, int(status))
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
        for status in operation["responses"]
        if status != "default"
    }


def template_of(app: Any, call: Call) -> str:
    """The documented path the request's URL rule stands for, e.g. ``/v2/models/{name}/infer``."""
    rule, _ = app.url_map.bind("localhost").match(call.path, method=call.method, return_rule=True)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)


def documented_response(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def test_every_documented_status_has_a_request(app, client):
    spec = client.get("/openapi.json").get_json()
    covered = {(c.method, template_of(app, c), c.status) for c in CALLS}
    assert covered == documented(spec), (
        "documented but no request in CALLS produces it: "
        f"{sorted(documented(spec) - covered)}; in CALLS but not documented: {sorted(covered - documented(spec))}"
    )


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.id)
def test_documented_status_is_produced(app, app_config, call):
    if call.config:
        app = create_app_for_test({**app_config, **call.config})
    client = app.test_client()
    if call.unload:
        assert client.post(f"/v2/repository/models/{call.unload}/unload", headers=AUTH).status_code == 200
    if call.tamper:
        artifact = Path(app_config["MODELS"]["forest"])  # type: ignore[index]
        artifact.write_bytes(artifact.read_bytes() + b"tampered")

    response = client.open(call.path, method=call.method, **call.kwargs)

    assert response.status_code == call.status, response.get_data(as_text=True)
    path = template_of(app, call)
    spec = client.get("/openapi.json").get_json()
    content = documented_response(spec, call.method, path, call.status)["content"]
    assert response.mimetype in content, f"{response.mimetype} is not documented for {call.id}"
    if call.status < 400:
        assert call.says.encode() in response.get_data()
        if response.mimetype == "application/json":
            assert response.get_json() is not None
        return
    body = response.get_json()
    name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = spec["components"]["schemas"][name]
    assert set(schema["required"]) <= set(body) <= set(schema["properties"]), f"{body} is not a {name}"
    # Server errors carry the request id, so a user can quote it when reporting them.
    assert body.get("request_id") == (response.headers["X-Request-ID"] if call.status >= 500 else None)
    if call.path.startswith(MLFLOW_PATHS):
        assert name == "MlflowError"
        assert call.says in body["error"] and body["message"] == body["error"]
        assert body["error_code"] == {400: "BAD_REQUEST", 413: "BAD_REQUEST", 415: "BAD_REQUEST",
                                      503: "TEMPORARILY_UNAVAILABLE"}[call.status]
    elif call.path.startswith(PLAIN_ERROR_PREFIXES):
        assert name == "PlainError"
        assert call.says in body["error"]
    else:
        assert name == "Error"
        assert body["code"] == call.status
        assert body["status"] == HTTP_STATUS_CODES[call.status]
        assert call.says in body["message"] or call.says in str(body.get("errors"))
