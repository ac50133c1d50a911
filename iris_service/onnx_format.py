"""The ONNX artifact format: export with skl2onnx, check, serve with onnxruntime.

An ONNX file is a graph of operators, not code, so serving one needs no trust
in whoever wrote it. Export converts a verified scikit-learn artifact, then
proves the conversion on data: every row's class must be equal and every
probability within ``TOLERANCE`` of the original, or nothing is written.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .artifacts import Manifest, load_verified, runtime_versions, utc_now, write_artifact
from .errors import ArtifactError
from .runtime import ManifestModel, Model, Prediction, SklearnModel

#: Largest difference allowed between original and ONNX probabilities
#: (relative to the largest output for regression values beyond 1).
TOLERANCE = 1e-5
#: Rows drawn when a registered model comes without its training data.
SAMPLE_ROWS = 1000
INPUT_NAME = "input"
IRIS_DATASET = "sklearn.datasets.load_iris"


class OnnxModel(ManifestModel):
    """An ONNX graph behind the same ``predict`` as ``SklearnModel``.

    Input goes in as float32 (what skl2onnx graphs take); answers come back as
    float64 so codecs cannot tell the runtimes apart. ``InferenceSession.run``
    is thread-safe, so one session serves every request thread.
    """

    def __init__(self, session: Any, manifest: Manifest) -> None:
        super().__init__(manifest)
        self.session = session
        outputs = [o.name for o in session.get_outputs()]
        self._input = session.get_inputs()[0].name
        self.has_probabilities = self.is_classifier and "probabilities" in outputs

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if self.has_probabilities:
            (proba,) = self.session.run(["probabilities"], {self._input: x32})
            return self._from_probabilities(proba)
        return self._from_outputs(self.session.run(None, {self._input: x32})[0])


def load_session(data: bytes, manifest: Manifest) -> Any:
    """An onnxruntime session built from the verified bytes (never from the path).

    Bytes have no folder, so onnxruntime would read a tensor's external data
    relative to the working directory: such models are refused first.
    """
    import onnxruntime

    from .onnx_safety import check_self_contained

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


def convert(estimator: Any, manifest: Manifest) -> bytes:
    """The ONNX graph of a fitted estimator: float32 input, probabilities as a tensor.

    ZipMap (a list of dicts per row) is turned off so probabilities come back as
    one array; a classifier without ``predict_proba`` keeps only its labels,
    since skl2onnx would otherwise call its decision scores "probabilities".
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classifier = manifest.task == "classification"
    options = {id(estimator): {"zipmap": False}} if classifier else None
    try:
        graph = convert_sklearn(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, manifest.n_features]))],
            options=options,
        )
    except Exception as exc:  # skl2onnx has no converter for this estimator
        raise ArtifactError(f"skl2onnx cannot convert {manifest.estimator}: {exc}") from None
    if classifier and not hasattr(estimator, "predict_proba"):
        kept = [o for o in graph.graph.output if o.name == "label"]
        del graph.graph.output[:]
        graph.graph.output.extend(kept)
    return graph.SerializeToString()


def onnx_manifest(manifest: Manifest, check: dict[str, Any]) -> Manifest:
    """The ONNX artifact's manifest: the original's description plus the check."""
    import onnx
    import onnxruntime
    import skl2onnx

    versions = {
        **runtime_versions(),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "skl2onnx": skl2onnx.__version__,
    }
    training = {**manifest.training, "onnx_export": check}
    return dataclasses.replace(
        manifest, format="onnx", source="export-onnx", versions=versions, training=training, created_at=utc_now()
    )


def check_sample(manifest: Manifest) -> tuple[npt.NDArray[np.float64], str]:
    """Rows to compare the conversion on, and where they came from.

    Our models were trained on Iris, so the whole data set is the check; a
    registered model brings no data, so rows are drawn uniformly within the
    training ranges its manifest records, or standard normal where unknown.
    """
    if manifest.training.get("dataset") == IRIS_DATASET:
        from sklearn.datasets import load_iris

        return np.asarray(load_iris().data, dtype=np.float64), "iris data set"
    rng = np.random.default_rng(0)
    ranges = {f.get("name"): (f.get("min"), f.get("max")) for f in manifest.input_schema}
    columns = []
    uniform = 0
    for name in manifest.feature_names:
        lo, hi = ranges.get(name, (None, None))
        if lo is not None and hi is not None:
            columns.append(rng.uniform(lo, hi, SAMPLE_ROWS))
            uniform += 1
        else:
            columns.append(rng.standard_normal(SAMPLE_ROWS))
    how = "uniform within training ranges" if uniform == manifest.n_features else (
        "standard normal" if uniform == 0 else "uniform within known ranges, standard normal elsewhere"
    )
    return np.column_stack(columns), f"{SAMPLE_ROWS} rows, {how}"


def compare(original: Model, converted: Model, x: npt.NDArray[np.float64]) -> float:
    """The largest difference between two runtimes' answers on ``x``; raise if too far.

    Classes must agree on every row; probabilities may differ by float32
    rounding up to ``TOLERANCE``, regression values by that much of the
    largest output's size (absolute when outputs stay below 1).
    """
    want, got = original.predict(x), converted.predict(x)
    if want.classes is not None:
        assert got.classes is not None
        differ = np.flatnonzero(want.classes != got.classes)
        if differ.size:
            raise ArtifactError(
                f"ONNX conversion changes the class of {differ.size} of {len(x)} rows "
                f"(first: row {int(differ[0])}); not writing it."
            )
    worst = 0.0
    for a, b, relative in ((want.probabilities, got.probabilities, False), (want.values, got.values, True)):
        if a is None:
            continue
        if b is None or a.shape != b.shape:
            raise ArtifactError("ONNX conversion does not give the same outputs; not writing it.")
        diff = np.abs(a - b)
        if relative:  # float32 keeps ~7 digits, so a value of 150 cannot match to 1e-5 absolute
            diff = diff / max(1.0, float(np.max(np.abs(a))))
        worst = max(worst, float(np.max(diff)))
    if worst > TOLERANCE:
        raise ArtifactError(
            f"ONNX outputs differ from the original by up to {worst:.3g} (> {TOLERANCE}); not writing it."
        )
    return worst


def write_onnx(out: Path, estimator: Any, manifest: Manifest, x: npt.NDArray[np.float64], sample: str) -> Manifest:
    """Convert ``estimator``, prove it on ``x``, write ``out`` and its manifest."""
    data = convert(estimator, manifest)
    converted = OnnxModel(load_session(data, manifest), manifest)
    worst = compare(SklearnModel(estimator, manifest), converted, x)
    check = {"rows": int(len(x)), "sample": sample, "max_abs_diff": worst, "tolerance": TOLERANCE,
             "from_format": manifest.format, "from_sha256": manifest.sha256 or None}
    return write_artifact(out, data, onnx_manifest(manifest, check))


def export_artifact(source: Path) -> tuple[Manifest, Path]:
    """Export a verified scikit-learn artifact to ``model.onnx`` in the same folder."""
    artifact = load_verified(source)
    if artifact.manifest.format == "onnx":
        raise ArtifactError(f"{source.name} is already an ONNX artifact.")
    x, sample = check_sample(artifact.manifest)
    out = source.with_name("model.onnx")
    return write_onnx(out, artifact.obj, artifact.manifest, x, sample), out
