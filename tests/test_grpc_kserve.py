"""KServe's gRPC client against a live server, in an interpreter of its own (tests/kserve_grpc_checks.py).

KServe's protobuf modules and tritonclient.grpc's define the same ``inference.*``
names in protobuf's default pool, so the two cannot be imported in one process;
the checks run in a fresh pytest and must all pass.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server


def test_kserves_grpc_client_against_a_live_server_in_its_own_interpreter() -> None:
    checks = Path(__file__).with_name("kserve_grpc_checks.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(checks)],
                            capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b5 passed\b", result.stdout), result.stdout[-2000:]
