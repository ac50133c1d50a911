"""waitress channels that must receive each request whole in time, and the loop step that enforces it.

waitress closes a connection only after ``channel_timeout`` seconds of silence, so
a client sending one header byte a second keeps its connection, and its place
under ``connection_limit``, forever. Our channels must receive each request whole
within ``request_timeout``; ``enforce_deadlines`` answers the late ones 408 and
closes them, and makes room at the connection limit.
"""
from __future__ import annotations

import select
import socket
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.utilities import RequestEntityTooLarge

from .deadlines import CROWDED_REQUEST_TIMEOUT, LINGER, REQUEST_TIMEOUT, timeout_response

#: A connection silent this long during the drain is closed: a keep-alive client
#: that got its answer, or one that connected and never sent a request.
IDLE_GRACE = 1.0


def enforce_deadlines(
    socket_map: dict[int, Any], connection_limit: int | None, now: float | None = None
) -> tuple[int, int]:
    """Time out the requests past their deadline; at ``connection_limit``, make room.

    Called from the serving loop between polls. At the limit waitress stops
    accepting, so a new client waits in the backlog until a connection closes:
    the lingering ones, idle keep-alive ones and the oldest requests still
    arriving after ``CROWDED_REQUEST_TIMEOUT`` are closed, a tenth of the limit at
    a time, so that a burst of new clients gets in too. Returns how many
    connections were timed out and how many were closed to make room.
    """
    now = time.monotonic() if now is None else now
    channels = [obj for obj in list(socket_map.values()) if isinstance(obj, DeadlineChannel)]
    late = [channel for channel in channels if channel.overdue(now)]
    for channel in late:
        channel.time_out()
    if connection_limit is None or len(socket_map) < connection_limit:
        return len(late), 0
    excess = len(socket_map) - connection_limit + max(1, connection_limit // 10)
    ranked = sorted((rank, id(channel), channel) for channel in channels if (rank := channel.room_rank(now)))
    for _rank, _id, channel in ranked[:excess]:
        channel.shed()
    return len(late), min(excess, len(ranked))


class DeadlineChannel(HTTPChannel):
    """A waitress channel that must receive each request whole within ``request_timeout``.

    waitress's ``channel_timeout`` counts silence only; a client trickling its
    headers is never silent. This channel remembers since when it has been
    receiving its current request (from the accept for a first request, from the
    first byte for the next ones), and :func:`enforce_deadlines` answers 408 to
    one that takes longer. The clock is pushed forward while a previous request
    on the connection is served, because the channel does not read then.

    A trickling client never holds a worker thread: waitress hands a request to
    a thread only once it has arrived whole. With ``body_limit`` set, a body
    waitress refused by its size is handed to the app without the body, so that
    the app answers its own JSON 413, and the connection then lingers (see
    :meth:`handle_close`) so the client reads the answer rather than a reset.
    """

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any, map: Any = None, *,  # noqa: A002
                 request_timeout: float = REQUEST_TIMEOUT, body_limit: int | None = None) -> None:
        self.request_timeout = request_timeout
        self.body_limit = body_limit
        #: monotonic time the current request started arriving; None between requests.
        self.receiving_since: float | None = time.monotonic()
        #: Seconds to linger after the answer, when input may still be arriving.
        self.linger_for: float | None = None
        #: monotonic deadline of the linger, once it has begun.
        self.lingering_until: float | None = None
        super().__init__(server, sock, addr, adj, map)

    # --- receiving ------------------------------------------------------------------

    def received(self, data: bytes) -> bool:
        if self.receiving_since is None:
            self.receiving_since = time.monotonic()
        before = self.request
        result = super().received(data)
        if self.request is None:
            self.receiving_since = None  # every request in ``data`` arrived whole
        elif before is not None and self.request is not before:
            self.receiving_since = time.monotonic()  # one finished, the next began
        return result

    def overdue(self, now: float) -> bool:
        """True when a request has been arriving for longer than ``request_timeout``."""
        if self.lingering_until is not None:
            if now >= self.lingering_until:
                self.close_now()
            return False
        if self.receiving_since is None or self.will_close or self.close_when_flushed:
            return False
        if self.requests or self.total_outbufs_len:
            # Serving or sending an earlier answer: the channel is not reading, so
            # the time is not the client's.
            self.receiving_since = now
            return False
        return now - self.receiving_since >= self.request_timeout

    def time_out(self) -> None:
        """Answer 408 if part of a request arrived, then close after the answer is sent."""
        self.receiving_since = None
        if self.request is None:
            self.will_close = True  # a connection that never sent anything: just close
            return
        with self.requests_lock:
            self.request.close()  # its body buffer, maybe a temporary file
            self.request = None
        response = timeout_response(self.request_timeout)
        with self.outbuf_lock:
            self.outbufs[-1].append(response)
            self.current_outbuf_count += len(response)
            self.total_outbufs_len += len(response)
        self.linger_for = LINGER
        self.close_when_flushed = True

    # --- making room at the connection limit -------------------------------------------

    def room_rank(self, now: float) -> tuple[int, float] | None:
        """Order in which to close this channel to make room; None to keep it.

        Lingering and closing ones first (their answer is out), then the longest
        idle keep-alive ones, then the requests arriving the longest.
        """
        if self.lingering_until is not None or self.will_close or self.close_when_flushed:
            return (0, 0.0)
        if self.requests or self.total_outbufs_len:
            return None  # being served
        if self.request is None:
            return (1, self.last_activity) if idle(self) and time.time() - self.last_activity >= IDLE_GRACE else None
        since = self.receiving_since
        crowded_timeout = min(CROWDED_REQUEST_TIMEOUT, self.request_timeout)
        return (2, since) if since is not None and now - since >= crowded_timeout else None

    def shed(self) -> None:
        """Close now to free a place; a 408 first if part of a request arrived."""
        if self.request is not None and not self.total_outbufs_len and self.lingering_until is None:
            try:
                self.socket.send(timeout_response(self.request_timeout))
            except OSError:
                pass
        self.close_now()

    # --- a body refused by its size --------------------------------------------------

    def service(self) -> None:
        request = self.requests[0]
        if self._app_refuses(request):
            # The app sees a Content-Length over its limit and answers its 413
            # without reading the body; nothing else may follow on the connection.
            # A chunked body has none: the bytes received so far, already more
            # than the limit, stand for it (Werkzeug would otherwise read up to
            # the limit and stop silently, a truncated body).
            request.error = None
            if request.chunked:
                request.headers["CONTENT_LENGTH"] = str(len(request.body_rcv))
            request.headers["CONNECTION"] = "close"
            self.linger_for = self.request_timeout
        super().service()

    def _app_refuses(self, request: Any) -> bool:
        if self.body_limit is None or not isinstance(request.error, RequestEntityTooLarge):
            return False
        if request.chunked:
            return request.body_rcv is not None and len(request.body_rcv) > self.body_limit
        return request.content_length > self.body_limit

    # --- lingering close ---------------------------------------------------------------

    def handle_close(self) -> None:
        """Close; or, after an answer that input may still follow, half-close and linger.

        Closing a socket with unread input makes the kernel send RST, and a client
        still sending may then never read the answer. Lingering sends FIN after the
        answer and discards what still arrives until the client closes or
        ``linger_for`` seconds pass.
        """
        if (self.linger_for is not None and self.lingering_until is None and self.will_close
                and not self.total_outbufs_len and self.socket is not None):
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.lingering_until = time.monotonic() + self.linger_for
                self.will_close = False
                return
        self.close_now()

    def close_now(self) -> None:
        self.lingering_until = None
        self.linger_for = None
        super().handle_close()

    def readable(self) -> bool:
        return True if self.lingering_until is not None else bool(super().readable())

    def writable(self) -> bool:
        return False if self.lingering_until is not None else bool(super().writable())

    def handle_read(self) -> None:
        if self.lingering_until is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_now()


def idle(channel: HTTPChannel) -> bool:
    """No request being received, queued or answered, nothing to send, nothing unread.

    The last check keeps a keep-alive client's next request, already in the
    socket buffer but not yet read by the loop, from being cut off.
    """
    if (
        channel.requests
        or channel.request is not None
        or channel.total_outbufs_len
        or channel.will_close
        or channel.close_when_flushed
    ):
        return False
    try:
        readable, _, _ = select.select([channel.socket], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile: the loop will drop it
        return False
    return not readable
