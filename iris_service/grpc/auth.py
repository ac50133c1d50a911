"""API keys and the admin token for gRPC calls: the same settings and rules as REST.

With ``API_KEYS`` set every RPC needs one of them as ``authorization: Bearer
<key>`` or ``x-api-key: <key>`` metadata, except the probes (ServerLive,
ServerReady and ``grpc.health.v1``, unless ``API_KEYS_PROTECT_PROBES``) and
server reflection (the service's documentation, unless ``API_KEYS_PROTECT_DOCS``).
The repository RPCs take only ``authorization: Bearer <ADMIN_TOKEN>`` (an API key
is neither enough nor needed there) and are UNIMPLEMENTED with no token
configured, as REST's admin routes do not exist then. Deny by default: an RPC
not listed here needs a key. Tokens are compared in constant time.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from .proto import inference_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
PROBE_METHODS = frozenset({f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady",
                           f"/{HEALTH_SERVICE}/Check", f"/{HEALTH_SERVICE}/Watch"})
DOCS_METHODS = frozenset({f"/{REFLECTION_SERVICE}/ServerReflectionInfo"})
ADMIN_METHODS = frozenset({f"/{SERVICE}/RepositoryIndex", f"/{SERVICE}/RepositoryModelLoad",
                           f"/{SERVICE}/RepositoryModelUnload"})
WRONG_TOKEN = "Missing or wrong bearer token."
ADMIN_OFF = "The model repository RPCs are off: this server has no ADMIN_TOKEN."


@dataclass(frozen=True)
class AuthSettings:
    """What the interceptor checks, from the checked settings (``settings/checks``)."""

    api_keys: tuple[str, ...] = ()
    admin_token: str | None = None
    protect_probes: bool = False
    protect_docs: bool = False


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuse a call without the credentials its method needs, before the servicer sees it."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:  # unknown methods stay UNIMPLEMENTED, not UNAUTHENTICATED
            return None
        refusal = self.refusal(details.method, details.invocation_metadata or ())
        return handler if refusal is None else _refusing(handler, *refusal)

    def refusal(self, method: str, metadata: Iterable[tuple[str, Any]]) -> tuple[grpc.StatusCode, str] | None:
        """Why ``method`` with ``metadata`` is refused (code and message), or None when it may run."""
        settings = self.settings
        if method in ADMIN_METHODS:
            if not settings.admin_token:
                return grpc.StatusCode.UNIMPLEMENTED, ADMIN_OFF
            if not matches(presented(metadata, x_api_key=False), (settings.admin_token,)):
                return grpc.StatusCode.UNAUTHENTICATED, WRONG_TOKEN
            return None
        if not settings.api_keys:
            return None
        if method in PROBE_METHODS and not settings.protect_probes:
            return None
        if method in DOCS_METHODS and not settings.protect_docs:
            return None
        if not matches(presented(metadata), settings.api_keys):
            return grpc.StatusCode.UNAUTHENTICATED, WRONG_TOKEN
        return None


def presented(metadata: Iterable[tuple[str, Any]], x_api_key: bool = True) -> str | None:
    """The token in ``authorization: Bearer`` metadata or, when allowed, ``x-api-key``."""
    found = {key: value for key, value in metadata if isinstance(value, str)}
    scheme, _, value = found.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if not x_api_key:
        return None
    return found.get("x-api-key") or None


def matches(token: str | None, accepted: Sequence[str]) -> bool:
    """Whether ``token`` is one of ``accepted``; every one is compared, so timing tells nothing."""
    if token is None:
        return False
    candidate = token.encode()
    ok = False
    for key in accepted:
        ok |= hmac.compare_digest(candidate, key.encode())
    return ok


def _refusing(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same kind as ``handler`` that only aborts with ``code``."""

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    kinds = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
    kind = next(k for k in kinds if getattr(handler, k) is not None)
    return handler._replace(**{kind: abort})
