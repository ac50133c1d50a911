"""How much of an HTTP/1.1 request has arrived: the gunicorn worker hands it to a thread only when whole.

Parses only what framing needs (the head's end, Content-Length, chunked
transfer coding, ``Expect: 100-continue``); gunicorn's own parser reads the
request afterwards, with its limits.
"""
from __future__ import annotations

#: Largest request (head and body) buffered before a thread gets it, in bytes.
BUFFER_LIMIT = 1 << 20
#: A head longer than this goes to gunicorn, whose limits refuse it.
HEAD_LIMIT = 64 << 10
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

MORE, READY, HAND_OVER = "more", "ready", "hand over"


class RequestProgress:
    """How far the bytes received so far go towards one whole HTTP/1.x request.

    It only decides when the bytes go to gunicorn, whose parser still reads every
    one of them: anything unusual (several Content-Length, a transfer coding other
    than chunked, a malformed chunk, a bare-LF head) is handed over at once and
    answered by gunicorn as it would be anyway. Each byte is scanned once, so a
    client sending a byte at a time costs no more than one sending it all.
    """

    def __init__(self, limit: int = BUFFER_LIMIT) -> None:
        self.data = bytearray()
        self.limit = limit
        #: The head asks for ``100 Continue`` before the client sends its body.
        self.expects_continue = False
        self._scanned = 0
        self._head_end: int | None = None
        self._body_end: int | None = None  # with a Content-Length: where the request ends
        self._chunk_at: int | None = None  # chunked: where the next chunk-size line starts
        self._in_trailers = False

    def feed(self, data: bytes) -> str:
        """Add ``data``; MORE to wait for more, READY or HAND_OVER to give it to gunicorn."""
        self.data += data
        if len(self.data) > self.limit:
            return HAND_OVER
        if self._head_end is None:
            return self._head()
        if self._body_end is not None:
            return READY if len(self.data) >= self._body_end else MORE
        return self._chunks()

    def _head(self) -> str:
        if self.data.startswith((b"\r", b"\n")):
            return HAND_OVER  # empty lines before the request line: gunicorn's call
        start = max(0, self._scanned - 3)
        end = self.data.find(b"\r\n\r\n", start)
        if end < 0:
            if self.data.find(b"\n\n", start) >= 0 or len(self.data) > HEAD_LIMIT:
                return HAND_OVER
            self._scanned = len(self.data)
            return MORE
        self._head_end = end + 4
        lengths, codings = [], []
        for line in bytes(self.data[:end]).split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                return HAND_OVER  # malformed, or obsolete line folding
            name, value = name.lower(), value.strip()
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.append(value.lower())
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expects_continue = True
        if codings:
            if lengths or codings != [b"chunked"]:
                return HAND_OVER
            self._chunk_at = self._head_end
            return self._chunks()
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            return HAND_OVER
        self._body_end = self._head_end + (int(lengths[0]) if lengths else 0)
        if self._body_end > self.limit:
            return HAND_OVER  # the thread reads it (or the app refuses it by its length)
        return READY if len(self.data) >= self._body_end else MORE

    def _chunks(self) -> str:
        data, pos = self.data, self._chunk_at
        assert pos is not None
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                return HAND_OVER if len(data) - pos > 4096 else MORE
            if self._in_trailers:
                if line_end == pos:
                    return READY  # the empty line after the trailers
                pos = self._chunk_at = line_end + 2
                continue
            size = bytes(data[pos:line_end]).split(b";", 1)[0].strip()
            if not size or size.strip(b"0123456789abcdefABCDEF"):
                return HAND_OVER
            chunk_end = line_end + 2 + int(size, 16)
            if size.strip(b"0") == b"":
                self._in_trailers = True
                pos = self._chunk_at = line_end + 2
                continue
            if chunk_end + 2 > self.limit:
                return HAND_OVER
            if len(data) < chunk_end + 2:
                return MORE
            if data[chunk_end:chunk_end + 2] != b"\r\n":
                return HAND_OVER
            pos = self._chunk_at = chunk_end + 2
