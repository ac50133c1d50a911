"""Admin routes: hot reload of a model, guarded by ``ADMIN_TOKEN``.

With no token configured the routes do not exist (404), so a forgotten
setting never leaves them open. The token is accepted only as
``Authorization: Bearer <ADMIN_TOKEN>``, never as ``X-API-Key``: that header
carries API keys (the page keeps one in the browser), and a key field is no
place for the token that swaps models. Browsers get no CORS headers here
(``middleware/security``): these routes are for operators' tools.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView

from ...errors import NotFound
from ..blueprint import Blueprint
from ..errors import NATIVE
from ..middleware.auth import require_token
from ..schemas.models import ReloadRequestSchema, ReloadResponseSchema
from ..state import dataplane

blp = Blueprint("admin", __name__, url_prefix="/admin", description="Model operations (bearer token).",
                error_style=NATIVE)


@blp.before_request
def _require_admin() -> None:
    check_admin()


def check_admin() -> None:
    """404 when admin routes are off, 401 for a missing or wrong bearer token.

    ``ADMIN_TOKEN`` is one string (``settings/checks`` refuses anything else); a
    host app that set something else gets the routes off, never open.
    """
    token = current_app.config.get("ADMIN_TOKEN")
    if not isinstance(token, str) or not token.strip():
        raise NotFound(f"No route for {request.method} {request.path}.")
    require_token(request, [token.strip()], realm="iris-service admin", x_api_key=False)


@blp.route("/models/<name>/reload")
class Reload(MethodView):
    @blp.arguments(ReloadRequestSchema, location="query")
    @blp.response(200, ReloadResponseSchema)
    @blp.errors(
        401,
        (404, "No such model or version"),
        (409, "The artifact failed verification; the old model keeps serving"),
        (422, "An empty version"),
    )
    def post(self, args: dict[str, Any], name: str) -> dict[str, Any]:
        """Load, verify and atomically swap in a model's artifact.

        Requests in flight finish on the old model; if verification fails the
        old model keeps serving and the answer says why.
        """
        models = dataplane()
        previous = models.status().get(name, {}).get("version")
        model = models.load(name, args.get("version"))
        return {"name": model.name, "version": model.version, "previous_version": previous}
