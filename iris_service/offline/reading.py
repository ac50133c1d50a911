"""Input files that cannot be read, and schedulers that cannot be reached, as one line each.

Why a module of its own: pandas, pyarrow and Dask each raise their own
exception types for an empty, corrupt or missing input (``EmptyDataError``,
``ArrowInvalid``, an ``OSError`` wrapping "resolved to no files"), and
``predict-file`` showed each as a traceback of up to 64 lines. Both engines
read through ``unreadable`` so the same file gives the same message.
"""
from __future__ import annotations

import glob
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .staging import FileScoringError

_T = TypeVar("_T")

#: Seconds ``--scheduler`` waits to connect before giving up (Dask's own default is 30 s).
CONNECT_TIMEOUT_S = 5


def _read_errors() -> tuple[type[BaseException], ...]:
    """The exception types a reader raises for a file it cannot parse (imported only when reading)."""
    import pandas as pd
    import pyarrow as pa

    return (pd.errors.EmptyDataError, pd.errors.ParserError, pa.ArrowException, UnicodeDecodeError, OSError)


@contextmanager
def unreadable(source: Any, fmt: str) -> Iterator[None]:
    """Turn the reader's own exception for ``source`` into a ``FileScoringError`` of one line."""
    try:
        yield
    except _read_errors() as exc:
        raise FileScoringError(describe(source, fmt, exc)) from None


def describe(source: Any, fmt: str, exc: BaseException) -> str:
    """What was wrong with ``source``, in words: empty, not UTF-8, not Parquet, or the system's reason."""
    import pandas as pd

    kind = "CSV" if fmt == "csv" else "Parquet"
    if isinstance(exc, pd.errors.EmptyDataError):
        return f"{source} is empty: a CSV file starts with a header row naming its columns."
    if isinstance(exc, UnicodeDecodeError):
        return f"Cannot read {source} as CSV: byte {exc.start} is not UTF-8 text."
    if isinstance(exc, OSError) and not type(exc).__module__.startswith("pyarrow"):
        if "resolved to no files" in str(exc):
            return f"{source} matches no files."
        if exc.filename and str(exc.filename) != str(source):  # a part, a temp file: name it, read or written
            return f"{exc.strerror or _first_line(exc)}: {exc.filename}."
        return f"Cannot read {source}: {exc.strerror or _first_line(exc)}."
    return f"Cannot read {source} as {kind}: {_first_line(exc).rstrip('.')}."


def _first_line(exc: BaseException) -> str:
    """The message's last non-empty line: Dask wraps the reader's message under a line of its own."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text.removeprefix("Original Message: ")


def guarded(source: Any, fmt: str, frames: Iterator[_T]) -> Iterator[_T]:
    """``frames``, with each read (the file opens on the first) under ``unreadable``."""
    while True:
        with unreadable(source, fmt):
            try:
                frame = next(frames)
            except StopIteration:
                return
        yield frame


def check_matches(source: str) -> None:
    """A local path or glob for Dask must match something: Dask's own error is a 42-line traceback."""
    if "://" in source:
        return  # remote storage: Dask (fsspec) lists it, and unreadable() reports what it says
    if not glob.glob(source):
        raise FileScoringError(f"{source} matches no files.")


def connect(scheduler: str) -> Any:
    """A ``distributed.Client`` of ``scheduler``, or one line saying it cannot be reached in time."""
    from distributed import Client
    from distributed.comm.addressing import resolve_address

    try:
        # Checked first: a Client given a malformed address fails, then its __del__ prints a traceback.
        resolve_address(scheduler)
    except (ValueError, OSError) as exc:  # no port, an unknown protocol, a host name that does not resolve
        raise FileScoringError(f"--scheduler {scheduler!r} is not a scheduler address ({_first_line(exc)}); "
                               "give one like tcp://10.0.0.5:8786.") from None
    _handshake(scheduler)
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise FileScoringError(_unreachable(scheduler, exc)) from None


def _unreachable(scheduler: str, exc: BaseException) -> str:
    reason = _first_line(exc)
    why = "" if "timed out" in reason.lower() else f" ({reason.rstrip('.')})"
    return f"Cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S} s{why}."


def _handshake(scheduler: str) -> None:
    """Connect to ``scheduler`` and read its Dask handshake once, all within about ``CONNECT_TIMEOUT_S``.

    ``Client(timeout=...)`` bounds the TCP connect only, then waits for the
    handshake with no deadline: a listener that accepts and stays silent held
    ``predict-file`` for ever, and one that answers something else (an HTTP
    server) failed deep inside the decoder (its reply read as a 3 EiB length:
    a ``MemoryError``), then again in the half-made client's ``__del__``.
    """
    import asyncio

    from distributed.comm import connect as open_comm

    async def probe() -> None:
        comm = await open_comm(scheduler, timeout=CONNECT_TIMEOUT_S)
        await comm.close()

    try:
        # One second past the connect timeout: distributed gives up connecting first, so the
        # outer deadline only ever ends a connection that is open but silent.
        asyncio.run(asyncio.wait_for(probe(), CONNECT_TIMEOUT_S + 1))
    except (TimeoutError, asyncio.TimeoutError):
        raise FileScoringError(
            f"{scheduler} accepted the connection but sent no Dask handshake within {CONNECT_TIMEOUT_S} s: "
            "is it a Dask scheduler's address? (schedulers listen on port 8786 unless told otherwise)"
        ) from None
    except OSError as exc:
        if "trying to connect" not in str(exc):  # open, then closed or reset mid-handshake
            raise FileScoringError(_not_a_scheduler(scheduler)) from None
        raise FileScoringError(_unreachable(scheduler, exc)) from None
    except Exception:  # noqa: BLE001 - whatever the decoder makes of bytes that are not Dask's
        raise FileScoringError(_not_a_scheduler(scheduler)) from None


def _not_a_scheduler(scheduler: str) -> str:
    return (f"{scheduler} answered, but not as a Dask scheduler: is it a Dask scheduler's address? "
            "(schedulers listen on port 8786 unless told otherwise)")
