"""The label sets known before any traffic: the app's routes and each loaded model's classes.

Prometheus' ``increase()`` needs two samples of a series; a series born on its
first increment is first scraped with the burst already in it, so that burst
is never counted. The metrics hooks create these series at zero on the app's
first request or scrape (when every route is registered, and Flask allows no
more), and again after a model loads.
"""
from __future__ import annotations

from flask import Flask

from ...errors import IrisServiceError
from ..state import EXTENSION_KEY

#: Methods a route answers that are not worth a series of their own.
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})


def known_routes(app: Flask, skip_endpoints: frozenset[str]) -> list[tuple[str, str]]:
    """``(url rule, method)`` of every route a client calls, but static files and ``skip_endpoints``."""
    return sorted(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in skip_endpoints and rule.endpoint.rpartition(".")[2] != "static"
        for method in (rule.methods or ()) if method not in _IMPLICIT_METHODS
    )


def loaded_classes(app: Flask) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(model, version, class names)`` of each loaded model; ``("",)`` for a regressor, as counted."""
    state = app.extensions.get(EXTENSION_KEY)
    plane = getattr(state, "dataplane", None)
    if plane is None:  # the metrics extension without our models (a host app's own routes)
        return []
    found = []
    for name in plane.names():
        try:
            model = plane.model(name)
        except IrisServiceError:  # not loaded: its series appear when it is
            continue
        found.append((model.name, str(model.version), tuple(model.class_names or ("",))))
    return found
