"""Typed float tensors cross gRPC by their packed encoding: bit for bit what value-by-value gives.

``grpc/convert.py`` reads ``fp64_contents``/``fp32_contents`` from the message's
own bytes and writes them the same way; protobuf's repeated field, value by
value, is the reference, over every float64 (NaN, infinities, -0.0,
subnormals, the extremes) and every encoding a client may send.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iris_service.grpc import convert
from iris_service.grpc.proto import inference_pb2 as pb

FLOAT64 = hnp.arrays(np.float64, st.integers(0, 300), elements=st.floats(allow_nan=True, allow_infinity=True,
                                                                           allow_subnormal=True))
FLOAT32 = hnp.arrays(np.float32, st.integers(0, 300), elements=st.floats(width=32, allow_nan=True,
                                                                           allow_infinity=True))


def _bits(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values).tobytes()


def _reference(contents: pb.InferTensorContents, field: str) -> np.ndarray:
    dtype = np.float64 if field == "fp64_contents" else np.float32
    return np.array(list(getattr(contents, field)), dtype=dtype)


@pytest.mark.parametrize(("field", "arrays"), [("fp64_contents", FLOAT64), ("fp32_contents", FLOAT32)])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_floats_read_from_the_packed_bytes_equal_value_by_value(field: str, arrays, data) -> None:
    values = data.draw(arrays)
    contents = pb.InferTensorContents()
    getattr(contents, field).extend(values.tolist())
    read = convert.packed_values(contents, field, len(values))
    assert read.dtype == values.dtype and _bits(read) == _bits(_reference(contents, field)) == _bits(values)


@settings(max_examples=200, deadline=None)
@given(FLOAT64)
def test_a_client_sending_the_values_unpacked_is_read_the_same(values: np.ndarray) -> None:
    """Protobuf parsers accept a repeated double unpacked (one key per value): the result must not differ."""
    key = bytes([7 << 3 | 1])  # fp64_contents, wire type 1 (64-bit)
    wire = b"".join(key + struct.pack("<d", v) for v in values.tolist())
    contents = pb.InferTensorContents.FromString(wire)
    read = convert.packed_values(contents, "fp64_contents", len(values))
    assert _bits(read) == _bits(values)


@settings(max_examples=300, deadline=None)
@given(FLOAT64)
def test_fp64_written_by_its_packed_bytes_is_the_message_value_by_value_gives(values: np.ndarray) -> None:
    written, reference = pb.InferTensorContents(), pb.InferTensorContents()
    convert.set_values(written, "fp64_contents", values)
    reference.fp64_contents.extend(values.tolist())
    assert written.SerializeToString() == reference.SerializeToString()
    assert _bits(_reference(written, "fp64_contents")) == _bits(values)


INTEGERS = [
    ("int64_contents", np.int64), ("int_contents", np.int32), ("int_contents", np.int8),
    ("uint64_contents", np.uint64), ("uint_contents", np.uint32), ("uint_contents", np.uint8),
]


@pytest.mark.parametrize(("field", "dtype"), INTEGERS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_integers_written_packed_are_the_message_value_by_value_gives(field, dtype, data) -> None:
    """Small values (one varint byte each, written as bytes) and every other value of the type."""
    elements = st.one_of(st.integers(0, 127), hnp.from_dtype(np.dtype(dtype)))
    values = data.draw(hnp.arrays(dtype, st.integers(0, 300), elements=elements))
    written, reference = pb.InferTensorContents(), pb.InferTensorContents()
    convert.set_values(written, field, values)
    getattr(reference, field).extend(values.tolist())
    assert written.SerializeToString() == reference.SerializeToString()
    assert list(getattr(written, field)) == values.tolist()


def test_lists_and_floats_for_integer_fields_go_value_by_value() -> None:
    contents = pb.InferTensorContents()
    convert.set_values(contents, "int64_contents", np.array([0, -1, 2**63 - 1, -(2**63)]))
    convert.set_values(contents, "fp64_contents", [1.5, -0.0])
    assert list(contents.int64_contents) == [0, -1, 2**63 - 1, -(2**63)]
    assert list(contents.fp64_contents) == [1.5, -0.0]
    assert convert.packed_values(contents, "int64_contents", 4).tolist() == [0, -1, 2**63 - 1, -(2**63)]
    with pytest.raises(TypeError):  # as protobuf itself: no float silently truncated into an integer field
        convert.set_values(pb.InferTensorContents(), "int64_contents", np.array([1.5]))


def test_a_count_that_disagrees_with_the_bytes_falls_back_to_the_values() -> None:
    """The caller checks the count first; should it not, the fast path never reads past the values."""
    contents = pb.InferTensorContents()
    contents.fp64_contents.extend([1.0, 2.0, 3.0])
    assert convert.packed_values(contents, "fp64_contents", 3).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        convert.packed_values(contents, "fp64_contents", 4)  # np.fromiter: too few values


@pytest.mark.parametrize(("field", "dtype"), INTEGERS)
def test_class_indices_written_as_their_bytes_are_the_message_value_by_value_gives(field, dtype) -> None:
    values = np.tile(np.arange(128, dtype=dtype), 80)[::-1]  # every one-byte varint, 10,240 values
    written, reference = pb.InferTensorContents(), pb.InferTensorContents()
    convert.set_values(written, field, values)
    getattr(reference, field).extend(values.tolist())
    assert written.SerializeToString() == reference.SerializeToString()
