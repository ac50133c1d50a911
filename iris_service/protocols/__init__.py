"""Wire formats with no transport: each protocol is one unit that decodes, encodes and names its errors.

A protocol is a module with ``INPUT_ERROR`` (the error class of a request that
does not fit the model: 422 natively, 400 where the protocol's specification
says so), ``decode(body, model) -> Decoded`` and
``encode(prediction, model, decoded)``; ``limits`` bound what decoding may
cost (declared rows are checked before any value is converted). The data plane runs them; the REST
blueprints and any other front-end only hand them bodies.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as _Protocol

import numpy as np
import numpy.typing as npt

from ..errors import IrisServiceError
from ..runtime import Model, Prediction


@dataclass(frozen=True)
class Decoded:
    """A request as the model sees it, plus what the protocol needs to answer it.

    ``location`` is where the request's rows were (``("json", "instances")``), so
    errors found later by the data plane name the field the way the client sent it.
    """

    x: npt.NDArray[np.float64]
    single: bool = False
    context: Mapping[str, Any] = field(default_factory=dict)
    location: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """What a protocol may accept before per-item work: the data plane's row limit."""

    max_rows: int = 10_000


class Protocol(_Protocol):
    """What the data plane needs of a protocol unit."""

    INPUT_ERROR: type[IrisServiceError]

    def decode(self, body: Any, model: Model, limits: Limits) -> Decoded: ...

    def encode(self, prediction: Prediction, model: Model, decoded: Decoded) -> Any: ...

