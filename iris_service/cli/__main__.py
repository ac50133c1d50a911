"""``python -m iris_service.cli``: the ``iris-service`` command."""
import sys

from . import run

sys.exit(run())
