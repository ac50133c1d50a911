"""The optional extras of ``pyproject.toml``: which module each one brings, and how to install it.

Every message about a missing extra is built here, so each says the same two
things: the package is not on a public index, so ``pip install
'iris-service[x]'`` works only where iris-service itself is installable (a wheel
on a local index), and from a checkout the form that works is ``pip install -e
'.[x]'``.
"""
from __future__ import annotations

#: Top-level module -> the extra that installs it.
EXTRAS = {
    "pandas": "files", "pyarrow": "files", "tqdm": "files",
    "dask": "dask", "distributed": "dask",
    "skl2onnx": "onnx", "onnx": "onnx", "onnxruntime": "onnx",
    "skops": "skops",
    "grpc": "grpc", "grpc_health": "grpc", "grpc_reflection": "grpc",
    "opentelemetry": "otel",
    "shap": "explain",
}


def install_hint(extra: str) -> str:
    """How to install ``extra``, from a wheel and from a checkout."""
    return f"pip install 'iris-service[{extra}]' (from a checkout: pip install -e '.[{extra}]')"


def needs(what: str, module: str) -> str:
    """``{what} needs {module}, from the '{extra}' extra: {how to install it}.``: one sentence."""
    extra = EXTRAS[module.split(".")[0]]
    return f"{what} needs {module}, from the '{extra}' extra: {install_hint(extra)}."
