"""Access control and response hardening: API keys, security headers, CORS.

``Security().init_app(app)`` reads the settings once and keeps them in the app
state's ``security``; its hooks then guard every request:

- with ``API_KEYS`` set, every route except the probes (health, metrics, the
  protocols' ping and health routes), the documentation and the admin routes
  (``ADMIN_TOKEN`` alone) needs one of the keys, as ``Authorization: Bearer <key>``
  or ``X-API-Key: <key>`` (deny by default, so a new blueprint is never left open);
- every response says ``X-Content-Type-Options: nosniff``, is not cached unless
  its view chose a cache policy, and carries a Content-Security-Policy;
- CORS headers are sent only to origins listed in ``CORS_ORIGINS``, and never
  on the admin routes (``/admin/*``, ``/v2/repository/*``): those take only
  ``Authorization: Bearer <ADMIN_TOKEN>``, from operators' tools, not browsers.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request

from ..state import state_of
from .auth import as_list, require_token

REALM = "iris-service"

#: Routes a probe reads without a key: ours, the scrape, and the protocols' own probes.
PROBE_RULES = frozenset(
    {"/health", "/health/live", "/health/ready", "/metrics", "/ping", "/v2/health/live", "/v2/health/ready"}
)
#: What a browser needs to read the docs and the page at ``/`` (which itself sends the key).
DOCS_BLUEPRINTS = frozenset({"api-docs", "docs_assets", "ui"})
DOCS_RULES = frozenset({"/", "/static/<path:filename>"})
#: Admin routes check their own ``ADMIN_TOKEN``; an API key must not be enough there,
#: nor be needed beside it (a request has one ``Authorization`` header, which the token takes).
OWN_AUTH_BLUEPRINTS = frozenset({"admin"})
#: The V2 model repository extension lives in the V2 blueprint but is admin, like ``/admin``.
#: Listed rule by rule: a new route under ``/v2/repository`` needs an API key until added here.
OWN_AUTH_RULES = frozenset(
    {"/v2/repository/index", "/v2/repository/models/<name>/load", "/v2/repository/models/<name>/unload"}
)

#: JSON and the rest need no content at all; framing is refused everywhere.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Pages load only our own assets (Swagger UI's come from /docs/assets). Swagger UI
#: sets style attributes and uses data: images; inline scripts are allowed by hash.
HTML_CSP = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)

CORS_ALLOWED_HEADERS = ("Authorization", "Content-Type", "Content-Encoding", "X-API-Key", "X-Request-ID")
CORS_EXPOSED_HEADERS = ("X-Request-ID", "WWW-Authenticate")
CORS_MAX_AGE = 600


@dataclass(frozen=True)
class SecuritySettings:
    """What the hooks need, read from the config once at startup."""

    api_keys: tuple[str, ...]
    protect_probes: bool
    protect_docs: bool
    cors_origins: frozenset[str]

    @property
    def cors_any_origin(self) -> bool:
        return "*" in self.cors_origins


class Security:
    """Flask extension: API keys, security headers and CORS for one app."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> SecuritySettings:
        """Read ``API_KEYS``, ``API_KEYS_PROTECT_*`` and ``CORS_ORIGINS``; register the hooks."""
        config = app.config
        settings = SecuritySettings(
            api_keys=tuple(as_list(config.get("API_KEYS"))),
            protect_probes=bool(config.get("API_KEYS_PROTECT_PROBES", False)),
            protect_docs=bool(config.get("API_KEYS_PROTECT_DOCS", False)),
            cors_origins=frozenset(o.rstrip("/") for o in as_list(config.get("CORS_ORIGINS"))),
        )
        state_of(app).security = settings
        if app.config.get("ENV_NAME") == "production":
            _forbid_debugger(app)
        app.before_request(functools.partial(check_api_key, settings))
        app.after_request(functools.partial(harden, settings))
        return settings


def check_api_key(settings: SecuritySettings) -> None:
    """401 unless the request carries a key, on every route that needs one.

    CORS preflights carry no credentials by design (the browser sends them on
    the real request), and unknown routes answer 404 rather than 401.
    """
    rule = request.url_rule
    if not settings.api_keys or request.method == "OPTIONS" or rule is None:
        return
    if needs_api_key(settings, rule.rule, request.blueprint or ""):
        require_token(request, settings.api_keys, realm=REALM)


def needs_api_key(settings: SecuritySettings, rule: str, blueprint: str) -> bool:
    """Whether a route needs a key: the one predicate the hook and the OpenAPI docs share."""
    if not settings.api_keys or is_admin_route(rule, blueprint):
        return False
    if rule in PROBE_RULES and not settings.protect_probes:
        return False
    return not ((blueprint in DOCS_BLUEPRINTS or rule in DOCS_RULES) and not settings.protect_docs)


def is_admin_route(rule: str, blueprint: str) -> bool:
    """Routes guarded by ``ADMIN_TOKEN`` alone: no API key, no CORS."""
    return blueprint in OWN_AUTH_BLUEPRINTS or rule in OWN_AUTH_RULES


#: The hardening headers every response gets unless it already has them, in order.
_DEFAULT_HEADERS = (
    ("referrer-policy", "Referrer-Policy", "no-referrer"),
    ("x-frame-options", "X-Frame-Options", "DENY"),
    # Predictions and errors are per request: no cache may keep them. Assets
    # that chose their own policy (Swagger UI's files) keep it.
    ("cache-control", "Cache-Control", "no-store"),
)
#: What ``harden`` adds to a JSON answer that set none of them, in its order (the row lane's headers).
JSON_ANSWER_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    *((name, value) for _, name, value in _DEFAULT_HEADERS),
    ("Content-Security-Policy", API_CSP),
)


def harden(settings: SecuritySettings, response: Response) -> Response:
    # One pass over the response's few headers instead of a lookup per header
    # (werkzeug raises and catches a KeyError for each one that is missing).
    headers = response.headers
    present = set()
    content_type = ""
    for key, value in headers:
        lower = key.lower()
        present.add(lower)
        if lower == "content-type":
            content_type = value
    if "x-content-type-options" in present:
        headers["X-Content-Type-Options"] = "nosniff"
    else:
        headers.add("X-Content-Type-Options", "nosniff")
    for lower, name, value in _DEFAULT_HEADERS:
        if lower not in present:
            headers.add(name, value)
    if "content-security-policy" not in present:
        # Only an HTML page needs its scripts hashed; JSON answers take the constant.
        html = content_type[:9].lower() == "text/html"
        headers.add("Content-Security-Policy", _csp_for(response) if html else API_CSP)
    if settings.cors_origins:
        _add_cors(settings, response)
    return response


def _csp_for(response: Response) -> str:
    """The API policy, or for HTML pages one that admits their own inline scripts by hash.

    Hashing the rendered page keeps ``'unsafe-inline'`` out of ``script-src`` and
    follows whatever the page's template holds (Swagger UI's bootstrap script).
    """
    if response.mimetype != "text/html" or response.direct_passthrough:
        return API_CSP
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(response.get_data())
    )
    return HTML_CSP.format(hashes=hashes)


def _add_cors(settings: SecuritySettings, response: Response) -> None:
    """Allow the request's ``Origin`` when it is listed; answer preflights.

    The origin is echoed (never ``*`` with credentials), and ``Vary: Origin``
    keeps caches from serving one origin's answer to another. Admin routes get
    nothing, preflight included, so a browser never calls them cross-origin.
    """
    rule = request.url_rule
    if rule is not None and is_admin_route(rule.rule, request.blueprint or ""):
        return
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if not origin or not (settings.cors_any_origin or origin.rstrip("/") in settings.cors_origins):
        return
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = "*" if settings.cors_any_origin else origin
    headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSED_HEADERS)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        allowed = response.headers.get("Allow") or "GET, POST, OPTIONS"
        headers["Access-Control-Allow-Methods"] = allowed
        headers["Access-Control-Allow-Headers"] = ", ".join(CORS_ALLOWED_HEADERS)
        headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)


def _forbid_debugger(app: Flask) -> None:
    """Make ``app.run`` start without the Werkzeug debugger or reloader in production.

    ``load_config`` already pins ``DEBUG`` off and refuses ``FLASK_DEBUG`` (which
    ``flask run`` turns into the debugger); this covers a direct ``app.run(debug=True)``.
    """
    original: Callable[..., Any] = app.run

    def run(host: str | None = None, port: int | None = None, debug: bool | None = None,
            load_dotenv: bool = True, **options: Any) -> None:
        options.update(use_debugger=False, use_evalex=False, use_reloader=False)
        original(host, port, False, load_dotenv, **options)

    app.run = run  # type: ignore[method-assign]
