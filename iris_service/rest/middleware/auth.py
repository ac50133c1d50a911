"""Bearer-token checks for admin routes (and API keys), in constant time."""
from __future__ import annotations

import hmac
from collections.abc import Iterable

from flask import Request

from ...errors import Unauthorized


def presented_token(req: Request, x_api_key: bool = True) -> str | None:
    """The token a client sent as ``Authorization: Bearer`` or, when allowed, ``X-API-Key``.

    Admin routes pass ``x_api_key=False``: their token travels only as a bearer
    token, so the header the page and API clients use for keys never opens them.
    """
    header = req.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if not x_api_key:
        return None
    return req.headers.get("X-API-Key") or None


def require_token(req: Request, accepted: Iterable[str], realm: str, x_api_key: bool = True) -> None:
    """Raise 401 unless the request carries one of ``accepted``.

    Every accepted token is compared, with ``hmac.compare_digest``, so the time
    taken says nothing about how much of a token was right or which one matched.
    """
    token = presented_token(req, x_api_key=x_api_key)
    ok = False
    if token is not None:
        candidate = token.encode()
        for key in accepted:
            ok |= hmac.compare_digest(candidate, key.encode())
    if not ok:
        raise Unauthorized(
            "Missing or wrong bearer token.",
            headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
        )


def as_list(value: str | Iterable[str] | None) -> list[str]:
    """Settings given as a list, or as ``key1,key2`` from the environment."""
    if not value:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value if str(v)]
