"""What both servers promise a slow client: a whole request within ``REQUEST_TIMEOUT``, else our 408.

Shared by the waitress channel and the gunicorn worker, so the two documented
servers time out, make room and answer the same way.
"""
from __future__ import annotations

import json

IDENT = "iris-service"
#: Seconds a client has to send a whole request, headers and body: from the
#: connection's accept for its first request, from the first byte for the next ones.
REQUEST_TIMEOUT = 30.0
#: While the open connections are at the connection limit, requests still arriving
#: after this many seconds (the oldest first) are closed to make room: new clients
#: wait in the listen backlog, and a request of a few kB arrives in milliseconds.
CROWDED_REQUEST_TIMEOUT = 2.0
#: Seconds a timed-out connection stays half-closed, its input discarded, so the
#: client reads our 408 instead of a reset (closing with unread input sends RST).
LINGER = 2.0


def chunk_framing_headroom(body_limit: int) -> int:
    """Bytes allowed past ``body_limit`` before waitress itself refuses a chunked body.

    waitress counts a chunked body's framing (chunk sizes, line ends) against its
    ``max_request_body_size``; the app counts only the data. Chunks of 512 bytes
    or more add under 1.5 % of framing, so with this headroom waitress has received
    more than ``body_limit`` data bytes when it stops, and the app answers the 413.
    A Content-Length body is refused by its declared length, headroom or not.
    """
    return body_limit // 32 + 8192


def timeout_response(request_timeout: float) -> bytes:
    """The 408 sent to a client whose request did not arrive in time, in our JSON error shape."""
    body = json.dumps({
        "code": 408,
        "status": "Request Timeout",
        "message": f"The request did not arrive within {request_timeout:g} seconds.",
    }, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Server: {IDENT}\r\n\r\n"
    )
    return head.encode("latin-1") + body
