"""Refuse ONNX models whose tensors keep their data in other files.

An ONNX tensor may say ``data_location = EXTERNAL`` and name a file in its
``external_data`` entries; onnxruntime, given a model as bytes, reads that file
relative to the working directory, so a crafted model could turn any file the
server can read into weights and leak it through its predictions. Our
artifacts are one file whose digest covers every byte the model uses, so a
tensor with external data is refused by name before onnxruntime sees the model,
wherever it hides: initializers, sparse initializers, node attributes, and the
subgraphs of control-flow nodes, functions and training information.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import ArtifactError

#: Longest tensor or node name quoted in a message (names come from the file).
NAME_LIMIT = 80


def check_self_contained(data: bytes, artifact: str) -> None:
    """Parse ``data`` as an ONNX model and refuse it if any tensor is stored outside it."""
    import onnx
    from google.protobuf.message import Error as ProtobufError

    try:  # from bytes, onnx only parses: it never reads the external files themselves
        model = onnx.load_model_from_string(data)
    except ProtobufError as exc:
        raise ArtifactError(f"Not a readable ONNX model: {artifact}: {exc}") from None
    for tensor, where in tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise ArtifactError(
                f"{artifact}: tensor {_quote(tensor.name or '(unnamed)')} ({where}) keeps its data in an "
                "external file; an ONNX artifact must hold all of its data. Refusing to load it."
            )


def tensors(model: Any) -> Iterator[tuple[Any, str]]:
    """Every TensorProto in a ModelProto, with where it is, walking subgraphs without recursion."""
    graphs: list[tuple[Any, str]] = [(model.graph, "main graph")]
    for info in model.training_info:
        graphs += [(info.initialization, "training initialization"), (info.algorithm, "training algorithm")]
    nodes: list[tuple[Any, str]] = []
    for function in model.functions:
        label = f"function {_quote(function.name)}"
        yield from _attribute_tensors(function.attribute_proto, label, graphs)
        nodes += [(node, label) for node in function.node]
    while graphs or nodes:
        if graphs:
            graph, label = graphs.pop()
            for tensor in graph.initializer:
                yield tensor, f"initializer of {label}"
            for sparse in graph.sparse_initializer:
                yield sparse.values, f"sparse initializer of {label}"
                yield sparse.indices, f"sparse initializer of {label}"
            nodes += [(node, label) for node in graph.node]
            continue
        node, label = nodes.pop()
        yield from _attribute_tensors(node.attribute, f"node {_quote(node.name or node.op_type)} in {label}", graphs)


def _attribute_tensors(attributes: Any, label: str, graphs: list[tuple[Any, str]]) -> Iterator[tuple[Any, str]]:
    """Tensors held by attributes; their graphs are queued on ``graphs`` to be walked."""
    for attribute in attributes:
        where = f"attribute {_quote(attribute.name)} of {label}"
        if attribute.HasField("t"):
            yield attribute.t, where
        yield from ((t, where) for t in attribute.tensors)
        for sparse in [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []:
            yield sparse.values, where
            yield sparse.indices, where
        for sparse in attribute.sparse_tensors:
            yield sparse.values, where
            yield sparse.indices, where
        if attribute.HasField("g"):
            graphs.append((attribute.g, f"subgraph {where}"))
        graphs.extend((g, f"subgraph {where}") for g in attribute.graphs)


def _quote(name: str) -> str:
    return repr(name if len(name) <= NAME_LIMIT else name[:NAME_LIMIT] + "...")
