"""The ``iris-service`` group: every mistake is one ``Error:`` line, never a traceback or a usage page.

Why here, once, rather than in each command: an optional extra that is not
installed surfaces as a ``ModuleNotFoundError`` wherever the first import of it
happens (pandas in file scoring, skl2onnx in training, dask in the engine), and
click prints a usage page of several lines for a bad option; both are decided
here for every command, so a new command cannot forget.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..extras import EXTRAS, needs

#: (command, extra) -> the option that asked for the extra, when the command runs without it too.
OPTIONS = {
    ("train", "onnx"): "--format onnx",
    ("train", "skops"): "--format skops",
    ("predict-file", "dask"): "--engine dask",
    ("serve", "grpc"): "--grpc-port",
    ("predict-file", "explain"): "--explain",
}


def missing_extra(command: str | None, exc: ImportError) -> click.ClickException | None:
    """``exc`` as one line naming the module, the extra and how to install it; None for any other import."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    what = " ".join(part for part in (f"iris-service {command or ''}".strip(),
                                      OPTIONS.get((command or "", extra))) if part)
    return click.ClickException(needs(what, module))


def one_line_usage(exc: click.UsageError) -> click.UsageError:
    """A usage error shown as its message and where help is, on one line (click shows a usage page)."""
    if exc.ctx is not None:
        exc.message = f"{exc.message.rstrip('.')} (see {exc.ctx.command_path} --help)."
        exc.ctx = None
    return exc


def os_error(exc: OSError) -> click.ClickException:
    """A file the command could not read or write, as the system said it (no errno, no repr)."""
    from pathlib import Path

    from ..training.writing import file_in_the_way

    if exc.filename and exc.errno in (errno.EEXIST, errno.ENOTDIR):
        target = Path(exc.filename)
        blocking = target if target.is_file() else file_in_the_way(target)
        if blocking == target:
            return click.ClickException(f"Cannot write under {target}: it is a file, not a folder.")
        if blocking is not None:
            return click.ClickException(f"Cannot make the folder {target}: {blocking} is a file, not a folder.")
    where = f": {exc.filename}" if exc.filename else ""
    return click.ClickException(f"{exc.strerror or exc}{where}.")


class _Hold(logging.Handler):
    def __init__(self, held: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.held = held

    def emit(self, record: logging.LogRecord) -> None:
        self.held.append(record)


@contextmanager
def held_warnings(name: str) -> Iterator[list[logging.LogRecord]]:
    """What logger ``name`` warns about meanwhile, held back: a command shows it only if it goes on.

    A model that fails to load is logged by the registry and by the data plane, and
    the command then fails with the same reason: three lines for one mistake.
    """
    logger = logging.getLogger(name)
    held: list[logging.LogRecord] = []
    handler, propagate = _Hold(held), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield held
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class Main(click.Group):
    """The command group: usage errors, missing extras and file errors become one ``Error:`` line."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None
        except ImportError as exc:
            refused = missing_extra(ctx.invoked_subcommand, exc)
            if refused is None:
                raise
            raise refused from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # click quiets a closed stdout itself
                raise
            raise os_error(exc) from None
