"""The app class: Flask's behaviour, with coroutine checks remembered."""
from __future__ import annotations

from flask.views import MethodView

from iris_service.rest.app import IrisFlask


def test_async_views_still_run_and_sync_ones_are_passed_through():
    app = IrisFlask("t")

    @app.get("/async")
    async def async_view():
        return {"kind": "async"}

    @app.get("/sync")
    def sync_view():
        return {"kind": "sync"}

    class Resource(MethodView):
        def get(self):
            return {"kind": "method"}

    app.add_url_rule("/method", view_func=Resource.as_view("method"))
    client = app.test_client()
    for _ in range(3):
        assert client.get("/async").get_json() == {"kind": "async"}
        assert client.get("/sync").get_json() == {"kind": "sync"}
        assert client.get("/method").get_json() == {"kind": "method"}
    assert app.ensure_sync(sync_view) is sync_view
    # One entry per function, however many requests (bound methods share their function).
    assert len(app._is_coroutine) == len({getattr(f, "__func__", f) for f in app._is_coroutine})
    assert Resource.get in app._is_coroutine


def test_the_factory_builds_it(app):
    assert isinstance(app, IrisFlask)
