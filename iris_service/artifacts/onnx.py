"""The ONNX loader: an onnxruntime session built from verified bytes.

An ONNX file is a graph of operators, not code, so serving one needs no trust
in whoever wrote it; the conversion from scikit-learn lives in ``runtime/onnx.py``.
"""
from __future__ import annotations

from typing import Any

from ..errors import ArtifactError
from .manifest import Manifest
from .onnx_safety import check_self_contained


def load_session(data: bytes, manifest: Manifest) -> Any:
    """An onnxruntime session built from the verified bytes (never from the path).

    Bytes have no folder, so onnxruntime would read a tensor's external data
    relative to the working directory: such models are refused first.
    """
    import onnxruntime

    check_self_contained(data, manifest.artifact)
    options = onnxruntime.SessionOptions()
    # One thread per call: the web server already runs a thread per request,
    # and intra-op threads on top of those only fight over the same cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactError(f"Cannot load ONNX artifact {manifest.artifact}: {exc}") from None
