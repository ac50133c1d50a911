"""Property: any JSON value (or any bytes) sent to any POST route answers 2xx or 4xx JSON.

The routes come from the app's own url_map, so a new protocol blueprint is
fuzzed the day it is registered. ``FUZZ_EXAMPLES`` raises the example count
(``make fuzz``).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from conftest import FEATURES, create_app_for_test
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iris_service.protocols.v2 import DTYPES

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    # The suite replays the same examples on every run (a red CI is always
    # reproducible); `make fuzz` sets FUZZ_EXAMPLES and explores new ones.
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Leaves biased toward what the schemas look for, so examples get past the first check.
_numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 5.1, 1e308, -1e308, 2**63, -(2**63) - 1, 10**30]),
)
_keys = st.one_of(st.sampled_from(["features", "instances", "inputs", "dataframe_split", "dataframe_records",
                                   "columns", "data", "index", "name", "shape", "datatype", "parameters",
                                   *FEATURES]), st.text(max_size=8))
_leaves = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=16))
JSON_VALUES = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(_keys, children, max_size=5),
    ),
    max_leaves=40,
)
#: Bodies shaped like the protocols' requests, with fuzzed parts.
SHAPED = st.dictionaries(_keys, JSON_VALUES, min_size=1, max_size=3)

#: Path values: the real model or any text but "/" (a "%2F" is a path separator to the router).
#: Surrogates are excluded: a URL carries UTF-8, which cannot encode them.
PATH_VALUES = {"name": st.one_of(st.just("iris"), st.text(
    st.characters(exclude_characters="/", exclude_categories=("Cs",)), min_size=1, max_size=12))}


@pytest.fixture(scope="module")
def fuzz_app(iris_artifact, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path_factory.mktemp("instance")))
        yield create_app_for_test({"MODEL_PATH": str(iris_artifact)})


def post_routes(app) -> Iterator[str]:
    """Every rule that accepts POST, as a path template."""
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or ()):
            yield rule.rule


def fill(template: str, data: st.DataObject) -> str:
    """Put a drawn value into every ``<converter:name>`` of a rule."""

    def value(match: re.Match[str]) -> str:
        drawn = data.draw(PATH_VALUES.get(match.group(2), st.just("iris")))
        return quote(drawn, safe="") or "x"

    return re.sub(r"<(?:(\w+):)?(\w+)>", value, template)


def assert_json_answer(response, route: str = "") -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    assert isinstance(response.get_json(), dict)


def test_post_routes_are_discovered(fuzz_app):
    routes = set(post_routes(fuzz_app))
    assert {"/predict", "/models/<name>/predict"} <= routes


def test_any_json_to_any_post_route_is_2xx_or_4xx_json(fuzz_app):
    client = fuzz_app.test_client()

    @FUZZ_SETTINGS
    @given(route=st.sampled_from(sorted(post_routes(fuzz_app))), body=st.one_of(JSON_VALUES, SHAPED),
           data=st.data())
    def check(route: str, body: object, data: st.DataObject) -> None:
        # The standard library writes integers of any size; the server must refuse them cleanly.
        response = client.post(fill(route, data), data=json.dumps(body), content_type="application/json")
        assert_json_answer(response, route)

    check()


def test_any_bytes_to_any_post_route_is_2xx_or_4xx_json(fuzz_app):
    client = fuzz_app.test_client()

    @FUZZ_SETTINGS
    @given(route=st.sampled_from(sorted(post_routes(fuzz_app))), body=st.binary(max_size=256),
           content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream",
                                         "text/csv", "application/json; charset=latin-1", "",
                                         "application/vnd.apache.parquet"]),
           gzipped=st.booleans(), data=st.data())
    def check(route: str, body: bytes, content_type: str, gzipped: bool, data: st.DataObject) -> None:
        headers = {"Content-Encoding": "gzip"} if gzipped else {}
        response = client.post(fill(route, data), data=body, content_type=content_type or None, headers=headers)
        assert_json_answer(response, route)

    check()


def test_valid_rows_always_predict(fuzz_app):
    """Any four finite numbers are a valid row: 200 and a known label."""
    client = fuzz_app.test_client()
    finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)

    @FUZZ_SETTINGS
    @given(rows=st.lists(st.lists(finite, min_size=4, max_size=4), min_size=1, max_size=20))
    def check(rows: list[list[float]]) -> None:
        response = client.post("/predict", json={"instances": rows})
        assert response.status_code == 200, response.get_json()
        labels = [p["label"] for p in response.get_json()["predictions"]]
        assert len(labels) == len(rows)
        assert set(labels) <= {"setosa", "versicolor", "virginica"}

    check()


def test_mutated_parquet_bodies_are_2xx_or_4xx_json(fuzz_app):
    """A real Parquet file with bytes changed or cut: pyarrow's refusals are 400s, never a 500."""
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]] * 4, columns=list(FEATURES)).to_parquet(buffer)
    original = buffer.getvalue()
    client = fuzz_app.test_client()

    @FUZZ_SETTINGS
    @given(changes=st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), min_size=1,
                            max_size=4),
           cut=st.one_of(st.none(), st.integers(0, len(original) - 8)))
    def check(changes: list[tuple[int, int]], cut: int | None) -> None:
        body = bytearray(original)
        for at, value in changes:
            body[at] = value
        if cut is not None:  # drop the middle, keep the footer's magic bytes
            body = body[:cut] + body[-8:]
        response = client.post("/invocations", data=bytes(body), content_type="application/vnd.apache.parquet")
        assert_json_answer(response, "/invocations")

    check()


#: V2 dimensions: small, zero, the row limit's edge, and past anything a request may declare (and below zero).
_DIMENSIONS = st.one_of(st.integers(0, 5), st.sampled_from([4, 10_000, 10_001, 2**31, 2**53 + 1, 2**63 - 1, 2**64]),
                        st.integers(-2, 2**70))
#: Shapes of any rank from none to 100 dimensions.
V2_SHAPES = st.one_of(st.lists(_DIMENSIONS, max_size=3), st.lists(_DIMENSIONS, max_size=100))
_DATATYPES = st.sampled_from([*DTYPES, "BYTES", "BOOL"])


def _tensor_data(shape: list[int], data: st.DataObject) -> object:
    """Data that fits the shape when it is small (flat or nested as the shape says), else any JSON."""
    count = math.prod(shape) if all(type(d) is int and d >= 0 for d in shape) else -1
    if 0 <= count <= 64 and data.draw(st.booleans()):
        flat = data.draw(st.lists(_numbers, min_size=count, max_size=count))
        if len(shape) == 2 and shape[1] and data.draw(st.booleans()):
            return [flat[i:i + shape[1]] for i in range(0, count, shape[1])]
        return flat
    return data.draw(st.one_of(JSON_VALUES, st.lists(st.lists(_numbers, max_size=5), max_size=5)))


def test_any_v2_shape_is_2xx_or_4xx(fuzz_app):
    """Shapes of 0-100 dimensions, huge or negative, as JSON data or binary tensors: never a 5xx."""
    client = fuzz_app.test_client()

    @FUZZ_SETTINGS
    @given(shape=V2_SHAPES, datatype=_DATATYPES, binary=st.booleans(), name=st.sampled_from(["input-0", *FEATURES]),
           data=st.data())
    def check(shape: list[int], datatype: str, binary: bool, name: str, data: st.DataObject) -> None:
        spec: dict[str, object] = {"name": name, "shape": shape, "datatype": datatype}
        if not binary:
            spec["data"] = _tensor_data(shape, data)
            response = client.post("/v2/models/iris/infer", data=json.dumps({"inputs": [spec]}),
                                   content_type="application/json")
        else:
            itemsize = DTYPES[datatype].itemsize if datatype in DTYPES else 1
            needed = math.prod(shape) * itemsize if all(type(d) is int and d >= 0 for d in shape) else 0
            size = data.draw(st.one_of(st.just(needed), st.integers(-1, 4096)))
            spec["parameters"] = {"binary_data_size": size}
            tail = bytes(min(max(size + data.draw(st.integers(-1, 1)), 0), 4096))
            head = json.dumps({"inputs": [spec]}).encode()
            response = client.post("/v2/models/iris/infer", data=head + tail, content_type="application/octet-stream",
                                   headers={"Inference-Header-Content-Length": str(len(head))})
        assert_json_answer(response)

    check()


#: CSV cells: numbers, non-numbers, quoting, fields over 1,024 characters and over csv's own 131,072.
_CELLS = st.one_of(
    st.sampled_from(["5.1", "0", "-1e308", "1e999", "nan", "inf", "", " 1 ", '"1"', '"a,b"', '"1\n2"', "\x00"]),
    st.text(max_size=8),
    st.sampled_from(["1" * 2000, "x" * 70_000, '"' + "y" * 140_000 + '"', '"' + "z\n" * 70_000 + '"']),
)
_CSV_LINES = st.lists(_CELLS, max_size=70).map(",".join)


def test_any_csv_body_is_2xx_or_4xx(fuzz_app):
    """CSV bodies: many lines (past the row limit, blank ones), wide lines, long fields, any line ending."""
    client = fuzz_app.test_client()

    @FUZZ_SETTINGS
    @given(header=st.one_of(st.just(",".join(FEATURES)), _CSV_LINES), lines=st.lists(_CSV_LINES, max_size=4),
           repeat=st.sampled_from([1, 2, 10_000, 10_001, 20_003]), blank=st.sampled_from([0, 1, 20_003]),
           ending=st.sampled_from(["\n", "\r\n", "\r"]))
    def check(header: str, lines: list[str], repeat: int, blank: int, ending: str) -> None:
        rows = ending.join(lines) + ending if lines else ""
        body = header + ending + rows * (repeat if len(rows) * repeat < 1 << 20 else 1) + ending * blank
        response = client.post("/invocations", data=body.encode("utf-8", "surrogatepass"), content_type="text/csv")
        assert_json_answer(response)

    check()
