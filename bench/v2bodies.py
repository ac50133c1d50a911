"""The Open Inference Protocol (V2) request bodies: JSON, binary over REST, and gRPC.

The same rows in the same tensor go to ours and to MLServer, so a V2 ratio
compares servers, not requests. The binary REST body follows Triton's binary
tensor extension (a JSON header, then the raw little-endian rows; its length
in ``Inference-Header-Content-Length``); the gRPC body is a serialised
``ModelInferRequest`` with the rows in ``fp64_contents``, which every V2
gRPC server reads (``raw_input_contents`` is an extension).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from bench.load import headers_file

#: The input tensor name iris-service's V2 endpoint takes for a whole row; MLServer takes any.
V2_INPUT = "input-0"
#: The model name both servers serve (ours' models are trained under it).
MODEL_NAME = "iris"
ROW_OUTPUTS = ("predict",)
BATCH_OUTPUTS = ("predict", "predict_proba")


def json_body(rows: npt.NDArray[np.float64], outputs: tuple[str, ...] = BATCH_OUTPUTS) -> bytes:
    """A V2 JSON inference request for ``rows`` asking for ``outputs``."""
    tensor = {"name": V2_INPUT, "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
    return orjson.dumps({"inputs": [tensor], "outputs": [{"name": name} for name in outputs]})


def binary_body(rows: npt.NDArray[np.float64]) -> tuple[bytes, dict[str, str]]:
    """The binary-extension request for ``rows`` (answers binary too) and the headers it needs."""
    raw = np.ascontiguousarray(rows, dtype="<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": V2_INPUT,
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in BATCH_OUTPUTS],
        }
    )
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + raw, headers


def grpc_body(rows: npt.NDArray[np.float64], outputs: tuple[str, ...]) -> bytes:
    """A serialised ``inference.ModelInferRequest`` for ``rows`` (needs the grpc extra's protobuf)."""
    from iris_service.grpc.proto import inference_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    tensor = request.inputs.add(name=V2_INPUT, datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    for name in outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


def write(directory: Path, one_row: list[float], batch: npt.NDArray[np.float64]) -> dict[str, Path]:
    """The V2 bodies by name: ``v2-row``, ``v2-bin-N``, and (protobuf permitting) ``grpc-row``, ``grpc-N``."""
    row = np.asarray([one_row], dtype=np.float64)
    n = len(batch)
    bodies = {"v2-row": json_body(row, ROW_OUTPUTS)}
    binary, headers = binary_body(batch)
    bodies[f"v2-bin-{n}"] = binary
    try:
        bodies["grpc-row"] = grpc_body(row, ROW_OUTPUTS)
        bodies[f"grpc-{n}"] = grpc_body(batch, BATCH_OUTPUTS)
    except ImportError:  # no protobuf: the gRPC scenarios fail with a clear line instead
        pass
    paths = {}
    for name, body in bodies.items():
        paths[name] = directory / f"{name}.bin"
        paths[name].write_bytes(body)
    headers_file(paths[f"v2-bin-{n}"]).write_text(json.dumps(headers))
    return paths
