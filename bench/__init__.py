"""Benchmark harness: iris-service against the servers tutorials write.

Run from the repository root with ``python -m bench`` (``--quick`` for a short
run); see bench/README.md.
"""
