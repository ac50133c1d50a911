"""Regenerate ``inference_pb2.py``, ``inference_pb2.pyi`` and ``inference_pb2_grpc.py`` from ``inference.proto``.

Run ``python -m iris_service.grpc.proto.generate`` with ``pip install grpcio-tools==1.75.1``
(in a venv of its own: it wants protobuf 6); the generated code is committed, so users
never need it. That version is pinned on purpose: its protoc writes protobuf 6.31.1
code, which runs on protobuf 6.31+ and 7 alike, so the ``grpc`` extra installs beside
tritonclient and KServe (protobuf < 7) as well as beside newer packages; its gRPC
module needs grpcio >= 1.75.1. Two edits follow protoc: the messages go into a
private descriptor pool (see this package's docstring) and the gRPC module imports
its messages relative to the package.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRPCIO_TOOLS = "1.75.1"
PROTO = "inference.proto"
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = (
    "# A pool of our own: tritonclient and KServe define the same inference.* names in the default one.\n"
    "POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = POOL.AddSerializedFile("
)
_ABSOLUTE_IMPORT = "import inference_pb2 as inference__pb2"
_RELATIVE_IMPORT = "from . import inference_pb2 as inference__pb2"


def main() -> int:
    from importlib.metadata import version

    from grpc_tools import protoc  # only here: grpcio-tools is a tool, never a dependency

    if version("grpcio-tools") != GRPCIO_TOOLS:
        raise SystemExit(f"Use grpcio-tools=={GRPCIO_TOOLS} (see this module's docstring), not {version('grpcio-tools')}.")
    out = str(HERE)
    code = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--pyi_out={out}",
                        f"--grpc_python_out={out}", str(HERE / PROTO)])
    if code != 0:
        return int(code)
    _replace(HERE / "inference_pb2.py", _DEFAULT_POOL, _OWN_POOL)
    _replace(HERE / "inference_pb2_grpc.py", _ABSOLUTE_IMPORT, _RELATIVE_IMPORT)
    return 0


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if text.count(old) != 1:
        raise SystemExit(f"{path.name}: expected one {old!r}; did protoc's output change?")
    path.write_text(text.replace(old, new), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
