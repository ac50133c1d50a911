"""The ``iris-service`` command: serve, train, register, export-onnx, predict-file, keygen, sign.

The entry points own the process-wide effects (``process.prepare``): GC tuning,
exit hooks, the request log's handler and level.
"""
from __future__ import annotations

import sys
from typing import Any

import click

from ..training.command import train
from .commands import export_onnx, predict_file, register
from .keys import keygen, sign
from .mistakes import Main
from .serve import serve

__all__ = ["main", "run", "train"]


@click.group(cls=Main)
@click.version_option(package_name="iris-service")
def main() -> None:
    """Serve scikit-learn models over a validated REST API."""


for _command in (serve, train, register, export_onnx, predict_file, keygen, sign):
    main.add_command(_command)


def run(args: list[str] | None = None) -> Any:  # pragma: no cover - console entry point
    return main.main(args=args, prog_name="iris-service")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
