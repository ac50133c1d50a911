"""Domain errors as gRPC status codes: the one table every RPC answers through.

The domain errors carry HTTP statuses (``errors.py``); REST sends them as they
are and this maps them once, the way KServe and Triton map the same failures.
Anything unexpected is INTERNAL with a generic message (the traceback goes to
the server's log, never to the client), so a caller never sees UNKNOWN.
"""
from __future__ import annotations

import grpc

from ..errors import IrisServiceError

#: HTTP status of a domain error -> the gRPC code it is answered with.
CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
INTERNAL_MESSAGE = "Internal error."


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message to answer ``error`` with; INTERNAL and a generic line for anything else."""
    if isinstance(error, IrisServiceError):
        code = CODES.get(error.status)
        if code is not None:
            return code, error.message
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
