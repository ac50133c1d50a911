"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``) on the same data plane as REST.

``server.create_server(plane, config, ...)`` builds a grpcio server around a
``serving.DataPlane``: the servicer converts protobuf messages to the same
``protocols.v2`` request the REST V2 routes decode, so both answer the same
rows with the same bytes and the same messages. Nothing here imports Flask or
``rest/``; ``iris-service serve --grpc-port`` passes in the REST app's data
plane and metrics registry. grpcio comes with the ``grpc`` extra: importing this
package does not need it, ``missing()`` says what is absent.
"""
from __future__ import annotations

import importlib.util

from ..extras import install_hint

#: The distributions of the ``grpc`` extra, by the module each provides.
REQUIRED_MODULES = {"grpc": "grpcio", "grpc_health": "grpcio-health-checking",
                    "grpc_reflection": "grpcio-reflection", "google.protobuf": "protobuf"}
INSTALL_HINT = install_hint("grpc")


def missing() -> list[str]:
    """The distributions of the ``grpc`` extra that are not installed (empty: gRPC can run)."""
    absent = []
    for module, distribution in REQUIRED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # google itself is absent
            found = False
        if not found:
            absent.append(distribution)
    return absent
