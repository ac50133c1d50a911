"""OpenAPI additions that depend on configuration: the API-key requirement.

With ``API_KEYS`` set, the document marks exactly the operations the security
hook guards (same predicate, ``security.needs_api_key``) with a security
requirement and a 401 answer, so generated clients send the key and the
"every documented status is real" promise holds in both configurations.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apispec import APISpec, BasePlugin

from .errors import PLAIN

SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "BearerKey": {"type": "http", "scheme": "bearer"},
}


class ApiKeyDocs(BasePlugin):
    """apispec plugin: document the key on the operations that require one."""

    def __init__(self, guarded: Callable[[str, str], bool], error_style: Callable[[str], str]) -> None:
        self._guarded = guarded
        self._error_style = error_style

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        for name, scheme in SCHEMES.items():
            spec.components.security_scheme(name, scheme)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        blueprint = rule.endpoint.partition(".")[0]
        if not self._guarded(rule.rule, blueprint):
            return
        error = "PlainError" if self._error_style(blueprint) == PLAIN else "Error"
        for operation in operations.values():
            operation["security"] = [{name: []} for name in SCHEMES]
            operation.setdefault("responses", {})["401"] = {
                "description": "Missing or wrong API key (API_KEYS is set)",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}},
            }
