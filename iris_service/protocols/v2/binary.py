"""Triton's binary tensor data extension: a JSON header, then raw little-endian tensors."""
from __future__ import annotations

from typing import Any

import orjson

from ...errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"


def split_body(data: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """Split a body into its JSON header and binary tail at ``Inference-Header-Content-Length``."""
    if header_length is None:
        return data, b""
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(f"{HEADER_LENGTH} must be a whole number of bytes, not {header_length!r}.") from None
    if not 0 <= length <= len(data):
        raise BadRequest(f"{HEADER_LENGTH} is {length} but the body holds {len(data)} bytes.")
    return data[:length], data[length:]


def loads_header(data: bytes) -> Any:
    """Parse a JSON header (orjson, so NaN and Infinity literals are refused)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from None
