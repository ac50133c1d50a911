"""Request ids: a client's ``X-Request-ID`` when it is safe to echo, else a new random one.

One rule for every front-end (REST, gRPC), so an id a client sends reaches the
logs, the payload log and the answer the same way whichever door it came through.
"""
from __future__ import annotations

import random
import re

# Ids are echoed into headers, metadata and logs, so only a safe, bounded alphabet is trusted.
_VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def request_id_for(incoming: str | None) -> str:
    """``incoming`` if it is a valid id (1-128 of ``A-Za-z0-9._-``), else a new one."""
    return incoming if incoming and _VALID.fullmatch(incoming) else new_id()


def new_id() -> str:
    """A random (version 4) UUID as 32 hex digits, in the format of ``uuid.uuid4().hex``.

    From ``random``, not ``os.urandom``: an id is a label, not a secret, and the
    system call releases the GIL, which a request thread then waits to get back
    behind the busy ones. Python reseeds ``random`` in a forked child.
    """
    return f"{(random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"
