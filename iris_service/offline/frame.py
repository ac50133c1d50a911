"""``score_frame(frame, model)``: pandas in, pandas out, on the same runtime and policy as HTTP.

The CLI's file scoring, the Dask engine (``map_partitions``) and Spark's
``mapInPandas`` all call this one function; it orders the columns by the
manifest's feature names, applies the data plane's range policy when given
one (``ranges``), and calls the same ``model.predict(x) -> Prediction`` that
the data plane calls, so a file and a request get the same answers. pandas is
imported here only: the HTTP path never loads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInput
from ..runtime import Model, Prediction
from ..serving.ranges import RangePolicy

if TYPE_CHECKING:
    import pandas as pd

#: Column names ``score_frame`` appends; ``proba_<class>`` follow, one per class.
PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"
PROBA_PREFIX = "proba_"
#: Columns of a rejects file, after the input's own columns.
ROW_COLUMN = "row"
REASON_COLUMN = "reason"


class BatchInputError(InvalidInput):
    """A row of a file cannot be scored; the message names its column and row."""


@dataclass(frozen=True)
class CellProblem:
    """Why one row cannot be scored (the first bad cell of that row)."""

    position: int  # 0-based position in the frame
    column: str
    reason: str


def output_columns(model: Model) -> list[str]:
    """The columns ``score_frame`` appends, in order."""
    if not model.is_classifier:
        return [PREDICTION_COLUMN]
    columns = [PREDICTION_COLUMN, LABEL_COLUMN]
    if model.has_probabilities:
        columns += [PROBA_PREFIX + str(name) for name in model.class_names or ()]
    return columns


def score_frame(
    frame: pd.DataFrame, model: Model, *, where: str = "", ranges: RangePolicy | None = None, explain: bool = False
) -> pd.DataFrame:
    """Append ``prediction``, ``label`` and ``proba_<class>`` columns to ``frame``.

    Feature columns are found by the manifest's names in any order; every other
    column is kept as it came. A missing column or a cell that is not a finite
    number raises ``BatchInputError`` naming the column and the row (the
    frame's integer index + 1, so chunked readers that keep a running index
    report the row number in the whole file); ``where`` is added to the message
    (for example "in partition 3"). ``explain`` appends ``contribution_<feature>``
    columns for the predicted class (``offline/explain.py``).
    """
    problems = find_problems(frame, model, limit=1, ranges=ranges)
    if problems:
        raise BatchInputError(describe(problems[0], frame, where))
    return _scored(frame, model, explain)


def split_valid(
    frame: pd.DataFrame, model: Model, ranges: RangePolicy | None = None, explain: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the rows that can be scored; the others come back with a ``reason``.

    Used by ``--on-error skip``: the second frame is the rejects file's rows,
    with the input columns, the row number and why the row was refused.
    """
    problems = find_problems(frame, model, ranges=ranges)
    if not problems:
        return _scored(frame, model, explain), frame.iloc[0:0].assign(**{ROW_COLUMN: [], REASON_COLUMN: []})
    bad = sorted({p.position for p in problems})
    first = {}
    for problem in problems:
        first.setdefault(problem.position, problem)
    rejects = frame.iloc[bad].copy()
    rejects[ROW_COLUMN] = [row_number(frame, i) for i in bad]
    rejects[REASON_COLUMN] = [_reason(first[i]) for i in bad]
    keep = np.ones(len(frame), dtype=bool)
    keep[bad] = False
    return _scored(frame.iloc[keep], model, explain), rejects


def find_problems(
    frame: pd.DataFrame, model: Model, limit: int | None = None, ranges: RangePolicy | None = None
) -> list[CellProblem]:
    """Every bad cell (or the first ``limit``), in row order; a missing column raises at once.

    Under ``INPUT_RANGE_POLICY = "reject"`` a number outside its training range is
    a bad cell too, with the same message the HTTP protocols give.
    """
    missing = [name for name in model.feature_names if name not in frame.columns]
    if missing:
        raise BatchInputError(
            f"Missing column(s): {', '.join(missing)}. The model {model.name!r} needs "
            f"{', '.join(model.feature_names)}; found {', '.join(map(str, frame.columns))}."
        )
    problems: list[CellProblem] = []
    columns = []
    for name in model.feature_names:
        raw = frame[name]
        values = _numeric(raw)
        columns.append(values)
        bad = ~np.isfinite(values)
        if bad.any():
            for position in np.flatnonzero(bad)[: limit or None]:
                problems.append(CellProblem(int(position), name, _cell_reason(raw.iloc[position])))
    if ranges is not None and ranges.rejects and len(frame):
        x = np.column_stack(columns)
        outside = ranges.outside(np.where(np.isfinite(x), x, 0.0), model) & np.isfinite(x)
        for position in np.flatnonzero(outside.any(axis=1))[: limit or None]:
            for name, reason in ranges.describe_row(x[position], outside[position], model).items():
                problems.append(CellProblem(int(position), name, reason))
    problems.sort(key=lambda p: (p.position, model.feature_names.index(p.column)))
    return problems[:limit] if limit else problems


def feature_matrix(frame: pd.DataFrame, model: Model) -> npt.NDArray[np.float64]:
    """The frame's feature columns as the (n, n_features) float64 array the runtime takes."""
    return np.column_stack([_numeric(frame[name]) for name in model.feature_names]).reshape(
        len(frame), model.n_features
    )


def prediction_columns(prediction: Prediction, model: Model) -> dict[str, Any]:
    """The appended columns, built from the runtime's ``Prediction`` arrays."""
    if prediction.classes is None:
        assert prediction.values is not None
        return {PREDICTION_COLUMN: prediction.values}
    names = np.asarray(model.class_names or (), dtype=object)
    columns: dict[str, Any] = {PREDICTION_COLUMN: prediction.classes, LABEL_COLUMN: names[prediction.classes]}
    if prediction.probabilities is not None:
        for j, name in enumerate(model.class_names or ()):
            columns[PROBA_PREFIX + str(name)] = prediction.probabilities[:, j]
    return columns


def describe(problem: CellProblem, frame: pd.DataFrame, where: str = "") -> str:
    """``Column 'x', row 7: empty cell.`` with ``where`` before the colon."""
    suffix = f" {where}" if where else ""
    return f"Column {problem.column!r}, row {row_number(frame, problem.position)}{suffix}: {problem.reason}"


def row_number(frame: pd.DataFrame, position: int) -> int:
    """1-based row number: from an integer index when there is one, else the position."""
    label = frame.index[position]
    if isinstance(label, int | np.integer):
        return int(label) + 1
    return position + 1


def _scored(frame: pd.DataFrame, model: Model, explain: bool = False) -> pd.DataFrame:
    from .explain import contribution_columns, contribution_names

    if len(frame) == 0:
        # scikit-learn refuses 0 rows; Dask also calls this on empty metadata frames.
        empty = _empty_columns(model, contribution_names(model) if explain else [])
        return frame.assign(**{k: v for k, v in empty.items()})
    x = feature_matrix(frame, model)
    prediction = model.predict(x)
    columns = prediction_columns(prediction, model)
    if explain:
        columns.update(contribution_columns(x, prediction, model))
    out = frame.copy()
    for name, values in columns.items():
        out[name] = values
    return out


def _empty_columns(model: Model, extra: list[str]) -> dict[str, Any]:
    import pandas as pd

    out: dict[str, Any] = {}
    for name in output_columns(model) + extra:
        if name == LABEL_COLUMN:
            out[name] = pd.Series([], dtype=object)
        elif name == PREDICTION_COLUMN and model.is_classifier:
            out[name] = pd.Series([], dtype=np.int64)
        else:
            out[name] = pd.Series([], dtype=np.float64)
    return out


def _numeric(series: pd.Series) -> npt.NDArray[np.float64]:
    """Float64 values with NaN for anything that is not a number (bools count as bad)."""
    import pandas as pd

    if series.dtype == bool or pd.api.types.is_bool_dtype(series.dtype):
        return np.full(len(series), np.nan)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(series, errors="coerce")
    return np.asarray(numbers, dtype=np.float64)


def _cell_reason(value: Any) -> str:
    import pandas as pd

    if value is None or (np.ndim(value) == 0 and pd.isna(value)) or (isinstance(value, str) and not value.strip()):
        return "empty cell."
    if isinstance(value, bool | np.bool_):
        return f"not a number: {value!r}."
    if isinstance(value, int | float | np.integer | np.floating):
        return f"not a finite number: {value!r}."
    try:
        number = float(str(value))
    except ValueError:
        return f"not a number: {str(value)!r}."
    return f"not a finite number: {number!r}." if not np.isfinite(number) else f"not a number: {str(value)!r}."


def _reason(problem: CellProblem) -> str:
    return f"column {problem.column!r}: {problem.reason}"
