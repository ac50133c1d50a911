"""The page at ``/``: try a model in the browser; a JSON index when the UI is off.

The page is rendered from the model's manifest (features, training ranges,
classes, model card) and calls the public JSON API with ``fetch``, so it shows
exactly what any client would get. With ``UI_ENABLED`` off (production's
default) ``/`` still answers: a JSON index of the API's links. When the
predict route needs an API key the page asks the person for one
(``rest/static/ui.js`` keeps it in ``sessionStorage`` and sends it as
``X-API-Key``); the key is never rendered into the page or put in a URL.

The index carries ``"status": "alive"``: KServe's SDK checks a V1 server's
liveness with ``GET /`` and reads that field. With the UI on, ``/`` is
negotiated: browsers name ``text/html`` in ``Accept`` and get the page; a
client that prefers JSON or accepts anything (``*/*``: curl, requests, httpx
and so KServe's SDK) gets the index. A request with no ``Accept`` at all gets
the page, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, make_response, render_template, request
from flask.typing import ResponseReturnValue

from ...errors import IrisServiceError
from ...runtime import Model
from ...version import __version__
from ..json import json_response
from ..middleware.security import needs_api_key
from ..state import dataplane, state_of

blp = Blueprint("ui", __name__)

#: Rows 0, 50 and 100 of the Iris data set: one typical flower of each class.
IRIS_EXAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [7.0, 3.2, 4.7, 1.4],
    "virginica": [6.3, 3.3, 6.0, 2.5],
}
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
#: The endpoint the page's form posts to.
PREDICT_ENDPOINT = "models.ModelPredict"

#: Index links, in order, shown only when the route exists in this app.
_LINKS = (
    ("docs", "/docs"),
    ("openapi", "/openapi.json"),
    ("health", "/health"),
    ("models", "/models"),
    ("predict", "/predict"),
    ("metrics", "/metrics"),
    ("v2", "/v2"),
    ("mlflow", "/invocations"),
)


@dataclass(frozen=True)
class Example:
    """A button that fills the form with one row."""

    label: str
    values: dict[str, float]


#: What ``/`` can answer when the UI is on, JSON first: it wins a tie such as ``*/*``.
_REPRESENTATIONS = ("application/json", "text/html")


@blp.get("/")
def index() -> ResponseReturnValue:
    """The demo page, or the JSON index of links when ``UI_ENABLED`` is off or JSON is preferred."""
    if not current_app.config.get("UI_ENABLED"):
        return api_index()
    if request.accept_mimetypes.best_match(_REPRESENTATIONS) == "application/json":
        response = json_response(api_index(ui=True))
        response.vary.add("Accept")
        return response
    response = make_response(_page())
    response.vary.add("Accept")
    return response


def _page() -> str:
    """The demo page for ``?model=`` (default: the default model)."""
    models = dataplane()
    names = models.names()
    selected = request.args.get("model") or models.default
    model: Model | None = None
    problem = None
    try:
        model = models.model(selected)
    except IrisServiceError as exc:
        if exc.status == 404:
            raise  # an unknown ?model= is the client's mistake: JSON 404
        problem = exc.message
    return render_template(
        "index.html",
        names=names,
        selected=selected,
        model=model,
        problem=problem,
        features=features_of(model) if model else [],
        examples=examples_for(model) if model else [],
        card=model_card(model) if model else {},
        range_policy=models.settings.range_policy,
        api_key_needed=api_key_needed(),
        version=__version__,
    )


def api_key_needed() -> bool:
    """Whether the form's endpoint answers 401 without a key: then the page shows its key field.

    The security hook's own predicate decides, so the field appears exactly when
    Predict would be refused without it.
    """
    security = state_of(current_app).security
    if security is None:
        return False  # a host app that mounted the page without our Security extension
    try:
        rules = current_app.url_map.iter_rules(PREDICT_ENDPOINT)
    except KeyError:
        return False
    blueprint = PREDICT_ENDPOINT.partition(".")[0]
    return any(needs_api_key(security, rule.rule, blueprint) for rule in rules)


def api_index(ui: bool = False) -> dict[str, Any]:
    """Where to go from ``/`` without the page: liveness as KServe V1 reads it, and the API's own links."""
    rules = {rule.rule for rule in current_app.url_map.iter_rules()}
    links = {key: path for key, path in _LINKS if path in rules}
    note = ("The demo page is served here to browsers (Accept: text/html)." if ui
            else "The demo page is off here; set IRIS_SERVICE_UI_ENABLED=true to serve it.")
    return {"name": "iris-service", "version": __version__, "status": "alive", "links": links, "ui": note}


def features_of(model: Model) -> list[dict[str, Any]]:
    """Name, min and max of each feature, in the model's order."""
    ranges = {item.get("name"): item for item in model.manifest.input_schema}
    out = []
    for name in model.feature_names:
        item = ranges.get(name, {})
        out.append({"name": name, "label": name.replace("_", " "), "min": item.get("min"), "max": item.get("max")})
    return out


def examples_for(model: Model) -> list[Example]:
    """Rows for the fill-in buttons: the manifest's, Iris's, or the ranges' midpoint.

    A manifest may carry ``training["examples"]`` (class -> row, as a list in
    feature order or an object keyed by feature). Iris rows are known; any
    other model gets one row in the middle of its training ranges.
    """
    names = model.feature_names
    given = model.manifest.training.get("examples")
    if isinstance(given, dict) and given:
        out = []
        for label, row in given.items():
            values = dict(zip(names, row, strict=False)) if isinstance(row, list) else dict(row)
            if set(values) == set(names):
                out.append(Example(str(label), {n: float(values[n]) for n in names}))
        if out:
            return out
    if names == IRIS_FEATURES and set(model.class_names or ()) == set(IRIS_EXAMPLES):
        return [Example(label, dict(zip(names, row, strict=True))) for label, row in IRIS_EXAMPLES.items()]
    features = features_of(model)
    if all(f["min"] is not None and f["max"] is not None for f in features):
        middle = {f["name"]: round((float(f["min"]) + float(f["max"])) / 2, 4) for f in features}
        return [Example("typical row (middle of the training ranges)", middle)]
    return []


def model_card(model: Model) -> dict[str, Any]:
    """What a person wants to know before trusting an answer."""
    manifest = model.manifest
    accuracy = manifest.metrics.get("accuracy")
    return {
        "Name": manifest.name,
        "Version": manifest.version,
        "Estimator": manifest.estimator.rsplit(".", 1)[-1],
        "Task": manifest.task,
        "Accuracy": f"{accuracy:.1%}" if isinstance(accuracy, int | float) else "not recorded",
        "Trained": manifest.created_at or "not recorded",
        "scikit-learn": manifest.versions.get("scikit-learn", "not recorded"),
    }
