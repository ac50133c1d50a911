"""Artifacts that cannot lie: what a file and its folder say about themselves is checked before it serves.

Every artifact here is real (trained into a tmp folder, then forged where a test says so) and has a valid
manifest whose SHA-256 matches, so the digest check in front of every load passes and only the checks under
test stand between the file and a request. Tests meet the artifact where a user does: ``load_verified``, an
app's test client, or the ``iris-service`` command.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import pickle
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FEATURES, KNOWN_ROWS, MakesMarker, create_app_for_test
from sklearn.datasets import load_iris

from iris_service import training
from iris_service.artifacts import (
    Manifest,
    describe_estimator,
    dump_joblib,
    load_verified,
    manifest_path,
    read_manifest,
    sha256_bytes,
    write_artifact,
)
from iris_service.artifacts.formats import sniff
from iris_service.artifacts.trees import check_trees
from iris_service.cli import main
from iris_service.errors import ArtifactError
from iris_service.settings import ConfigError

X, Y = load_iris(return_X_y=True)
SETOSA_ROW = KNOWN_ROWS[0][0]
#: A node index far past any tree's arrays: following it reads unmapped memory.
OUT_OF_BOUNDS = 2**40




@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sound artifacts to copy and forge: iris 1 (logreg, joblib), forest 1 (5 trees, joblib and skops), an ONNX."""
    root = tmp_path_factory.mktemp("sound")
    training.train(root / "iris" / "1" / "model.joblib", kind="logreg", name="iris", version="1")
    for fmt in ("joblib", "skops"):
        training.train(root / "forest" / "1" / f"model.{fmt}", kind="random_forest", name="forest", version="1",
                       fmt=fmt, n_estimators=5)
    training.train(root / "onnx" / "model.onnx", kind="logreg", name="iris", version="1", fmt="onnx")
    return root


def _client(monkeypatch, tmp_path, **config):
    monkeypatch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app_for_test(config).test_client()


def _reasons(client) -> dict[str, str]:
    response = client.get("/health/ready")
    assert response.status_code == 503
    return response.get_json()["errors"]["models"]


def _copy_version(sound: Path, name: str, to: Path) -> Path:
    shutil.copytree(sound / name / "1", to)
    return to


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, message: str) -> None:
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"  # one line: no traceback, no usage text


# 1. ONNX tensors with external data.

SECRET = struct.pack("<f", 1234.5)  # the bytes of a file the model must never read
LEAKY = Manifest(name="leaky", version="1", artifact="", format="onnx", sha256="", estimator="onnx.helper",
                 task="regression", feature_names=FEATURES)


def _external_tensor(dims: list[int], location: str = "secret.bin"):
    from onnx import TensorProto

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def _leaky_onnx(where: str = "subgraph") -> bytes:
    """A regressor answering ``w`` for every row, where ``w`` is read from ``secret.bin``.

    ``where`` says where the external tensor hides. In the subgraph of an ``If``
    node onnxruntime's optimiser does not touch it at load, and the first
    prediction reads the file.
    """
    from onnx import TensorProto, helper

    w = _external_tensor([1] if where == "sparse initializer" else [1, 1])
    nodes = [helper.make_node("MatMul", ["input", "zeros"], ["scaled"], name="scale")]
    initializers = [helper.make_tensor("zeros", TensorProto.FLOAT, [4, 1], [0.0] * 4)]
    sparse, functions, opsets = [], [], [helper.make_opsetid("", 13)]
    if where == "initializer":
        initializers.append(w)
    elif where == "external_data entries only":
        w.data_location = TensorProto.DEFAULT
        initializers.append(w)
    elif where == "sparse initializer":
        sparse.append(helper.make_sparse_tensor(w, helper.make_tensor("i", TensorProto.INT64, [1], [0]), [1, 1]))
    elif where == "node attribute":
        nodes.append(helper.make_node("Constant", [], ["w"], name="leak", value=w))
    elif where == "subgraph":
        out = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1])
        zero = helper.make_tensor("w0", TensorProto.FLOAT, [1, 1], [0.0])
        then = helper.make_graph([helper.make_node("Constant", [], ["w"], name="leak", value=w)], "then", [], [out])
        other = helper.make_graph([helper.make_node("Constant", [], ["w"], name="zero", value=zero)], "else", [], [out])
        nodes += [
            helper.make_node("ReduceSum", ["input"], ["total"], name="sum", keepdims=0),
            helper.make_node("Less", ["total", "huge"], ["cond"], name="compare"),
            helper.make_node("If", ["cond"], ["w"], name="choose", then_branch=then, else_branch=other),
        ]
        initializers.append(helper.make_tensor("huge", TensorProto.FLOAT, [], [1e38]))
    elif where == "function":
        body = [helper.make_node("Constant", [], ["w"], name="leak", value=w)]
        functions.append(helper.make_function("local", "Leak", [], ["w"], body, [helper.make_opsetid("", 13)]))
        nodes.append(helper.make_node("Leak", [], ["w"], name="call", domain="local"))
        opsets.append(helper.make_opsetid("local", 1))
    nodes.append(helper.make_node("Add", ["scaled", "w"], ["variable"], name="add"))
    graph = helper.make_graph(
        nodes, "leaky",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=initializers, sparse_initializer=sparse,
    )
    model = helper.make_model(graph, opset_imports=opsets, functions=functions)
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def secret_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding ``secret.bin``, as a server's might hold a config file."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "secret.bin").write_bytes(SECRET)
    monkeypatch.chdir(cwd)
    return cwd


def test_onnxruntime_reads_external_data_from_the_working_directory(secret_cwd):
    # The control: without our check, these bytes make onnxruntime answer the secret file's bytes.
    import onnxruntime

    session = onnxruntime.InferenceSession(_leaky_onnx(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.ones((1, 4), np.float32)})
    assert out.tobytes() == SECRET


def test_onnx_with_external_data_is_refused_and_leaks_nothing(secret_cwd, tmp_path, monkeypatch):
    root = tmp_path / "models"
    path = root / "leaky" / "1" / "model.onnx"
    write_artifact(path, _leaky_onnx(), LEAKY)
    with pytest.raises(ArtifactError) as info:
        load_verified(path, pickle_allowed=False)
    assert info.value.status == 409
    assert info.value.message == (
        "model.onnx: tensor 'w' (attribute 'value' of node 'leak' in subgraph attribute 'then_branch' of node "
        "'choose' in main graph) keeps its data in an external file; an ONNX artifact must hold all of its "
        "data. Refusing to load it."
    )
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root), PICKLE_ALLOWED=False)
    assert _reasons(client) == {"leaky": info.value.message}
    answer = client.post("/models/leaky/predict", json={"features": [1, 1, 1, 1]})
    assert answer.status_code == 503
    assert "1234.5" not in answer.get_data(as_text=True)


@pytest.mark.parametrize(("where", "found_in"), [
    ("initializer", "initializer of main graph"),
    ("external_data entries only", "initializer of main graph"),
    ("sparse initializer", "sparse initializer of main graph"),
    ("node attribute", "attribute 'value' of node 'leak' in main graph"),
    ("subgraph", "attribute 'value' of node 'leak' in subgraph attribute 'then_branch' of node 'choose' in main graph"),
    ("function", "attribute 'value' of node 'leak' in function 'Leak'"),
])
def test_external_tensor_is_found_wherever_it_hides(tmp_path, where, found_in):
    path = tmp_path / "model.onnx"
    write_artifact(path, _leaky_onnx(where), LEAKY)
    with pytest.raises(ArtifactError, match="keeps its data in an external file") as info:
        load_verified(path, pickle_allowed=False)
    assert info.value.message.startswith(f"model.onnx: tensor 'w' ({found_in}) keeps")


def test_unparsable_onnx_is_a_clear_error(tmp_path):
    path = tmp_path / "model.onnx"
    write_artifact(path, b"\x08\x08:\xff\xff\xff\xff\x0f", LEAKY)  # starts like a model, then breaks off
    with pytest.raises(ArtifactError, match=r"^Not a readable ONNX model: model\.onnx: Error parsing message"):
        load_verified(path, pickle_allowed=False)


# 2. Forged trees.

def _forge(tree, **changes) -> None:
    """Rewrite a fitted tree's node array in place: ``field={node: value}``."""
    state = tree.__getstate__()
    nodes = state["nodes"].copy()  # copies: __setstate__ reallocates the buffers these views show
    for field, edits in changes.items():
        for node, value in edits.items():
            nodes[field][node] = value
    tree.__setstate__({**state, "nodes": nodes, "values": state["values"].copy()})


def _pickle_with_node_count(estimator, tree, node_count: int) -> bytes:
    """A pickle of ``estimator`` whose ``tree`` says ``node_count`` over its true node arrays.

    The count is forged in the pickle, not in the tree, so the node arrays
    written are the tree's own.
    """
    class Forger(pickle.Pickler):
        def reducer_override(self, obj):
            if obj is not tree:
                return NotImplemented
            constructor, args, state = obj.__reduce__()
            return constructor, args, {**state, "node_count": node_count}

    buffer = io.BytesIO()
    Forger(buffer, protocol=5).dump(estimator)
    return buffer.getvalue()


def _write(path: Path, estimator, fmt: str = "joblib", name: str = "forest") -> Path:
    from skops.io import dumps

    data = dump_joblib(estimator) if fmt == "joblib" else dumps(estimator)
    write_artifact(path, data, describe_estimator(estimator, name=name, version="1", fmt=fmt,
                                                  feature_names=list(FEATURES)))
    return path


def _forest(sound: Path):
    return copy.deepcopy(load_verified(sound / "forest" / "1" / "model.joblib").obj)


def _forged_forest_skops(sound: Path, path: Path) -> tuple[Path, int]:
    forest = _forest(sound)
    _forge(forest.estimators_[0].tree_, left_child={0: OUT_OF_BOUNDS}, right_child={0: OUT_OF_BOUNDS})
    return _write(path, forest, "skops"), forest.estimators_[0].tree_.node_count


def test_forged_skops_forest_kills_a_process_that_loads_it_without_the_check(sound, tmp_path):
    # The control: skops loads the forged file and the first prediction dies of a segfault.
    path, _ = _forged_forest_skops(sound, tmp_path / "model.skops")
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file\n"
        "import skops.io as sio\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))\n"
        "print('loaded', flush=True)\n"
        f"model.predict([{SETOSA_ROW}])\n"
        "print('predicted', flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.stdout == "loaded\n"
    assert result.returncode in (-signal.SIGSEGV, -signal.SIGBUS)


def test_forged_skops_forest_is_refused_at_load_and_never_served(sound, tmp_path, monkeypatch):
    root = tmp_path / "models"
    path, node_count = _forged_forest_skops(sound, root / "forest" / "1" / "model.skops")
    with pytest.raises(ArtifactError) as info:
        load_verified(path, pickle_allowed=False)
    assert info.value.status == 409
    assert info.value.message == (
        f"model.skops: tree model.estimators_[0].tree_: node 0 points to children {OUT_OF_BOUNDS} and "
        f"{OUT_OF_BOUNDS}, not to nodes after it among its {node_count}; refusing it."
    )
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root), PICKLE_ALLOWED=False)
    assert _reasons(client) == {"forest": info.value.message}
    assert client.post("/models/forest/predict", json={"features": SETOSA_ROW}).status_code == 503


def test_forged_joblib_forest_is_not_served(sound, tmp_path, monkeypatch):
    forest = _forest(sound)
    _forge(forest.estimators_[3].tree_, feature={0: 10**6})
    path = _write(tmp_path / "forest" / "model.joblib", forest)
    client = _client(monkeypatch, tmp_path, MODELS={"forest": str(path)})
    assert _reasons(client) == {
        "forest": "model.joblib: tree model.estimators_[3].tree_: node 0 splits on feature 1000000 of 4; refusing it."
    }
    assert client.post("/predict", json={"features": SETOSA_ROW}).status_code == 503


def _forgery(kind: str, tree) -> tuple[dict, str]:
    """The edit for ``kind`` of forgery on ``tree``, and the problem the check must name."""
    n, left, right = tree.node_count, tree.children_left, tree.children_right
    if kind == "child beyond the arrays":
        return {"left_child": {0: n}}, f"node 0 points to children {n} and {right[0]}, not to nodes after it among its {n}"
    if kind == "child that is the node itself":
        return {"right_child": {0: 0}}, f"node 0 points to children {left[0]} and 0, not to nodes after it among its {n}"
    if kind == "child before its parent (a cycle)":
        j = next(i for i in range(1, n) if left[i] != -1)
        return {"left_child": {j: 0}}, f"node {j} points to children 0 and {right[j]}, not to nodes after it among its {n}"
    if kind == "one child only":
        return {"left_child": {0: -1}}, "node 0 has one child"
    if kind == "feature past the row":
        return {"feature": {0: 4}}, "node 0 splits on feature 4 of 4"
    if kind == "negative feature":
        return {"feature": {0: -3}}, "node 0 splits on feature -3 of 4"
    if kind == "infinite threshold":
        return {"threshold": {0: np.inf}}, "node 0 has threshold inf"
    assert kind == "NaN threshold"
    return {"threshold": {0: np.nan}}, "node 0 has threshold nan"


@pytest.mark.parametrize("kind", [
    "child beyond the arrays", "child that is the node itself", "child before its parent (a cycle)",
    "one child only", "feature past the row", "negative feature", "infinite threshold", "NaN threshold",
])
@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_every_kind_of_forged_tree_is_refused(sound, tmp_path, kind, fmt):
    forest = _forest(sound)
    changes, problem = _forgery(kind, forest.estimators_[1].tree_)
    _forge(forest.estimators_[1].tree_, **changes)
    path = _write(tmp_path / f"model.{fmt}", forest, fmt)
    with pytest.raises(ArtifactError) as info:
        load_verified(path)
    assert info.value.message == f"model.{fmt}: tree model.estimators_[1].tree_: {problem}; refusing it."


def test_tree_without_nodes_is_refused(sound, tmp_path):
    # Prediction starts at node 0, which a tree of node_count 0 does not have.
    forest = _forest(sound)
    path = tmp_path / "model.joblib"
    write_artifact(path, _pickle_with_node_count(forest, forest.estimators_[1].tree_, 0),
                   describe_estimator(forest, name="forest", version="1", fmt="joblib", feature_names=list(FEATURES)))
    with pytest.raises(ArtifactError) as info:
        load_verified(path)
    assert info.value.message == "model.joblib: tree model.estimators_[1].tree_: it has no nodes; refusing it."


def _wide_tree(tree, n_features: int):
    """A copy of ``tree`` that claims ``n_features`` features and splits its root on the last one."""
    from sklearn.tree._tree import Tree

    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes["feature"][0] = n_features - 1
    wide = Tree(n_features, np.asarray(tree.n_classes, dtype=np.intp), tree.n_outputs)
    wide.__setstate__({**state, "nodes": nodes, "values": state["values"].copy()})
    return wide


def test_tree_wider_than_its_estimator_is_refused(sound, tmp_path):
    forest = _forest(sound)
    forest.estimators_[0].tree_ = _wide_tree(forest.estimators_[0].tree_, 10)
    with pytest.raises(ArtifactError) as info:
        load_verified(_write(tmp_path / "model.joblib", forest))
    assert info.value.message == (
        "model.joblib: model.estimators_[0]: its tree has 10 features but n_features_in_ is 4; refusing it."
    )


def test_member_wider_than_its_forest_is_refused(sound, tmp_path):
    # A forest validates the row once and calls its trees unchecked: a member may not take more features.
    forest = _forest(sound)
    forest.estimators_[0].tree_ = _wide_tree(forest.estimators_[0].tree_, 10)
    forest.estimators_[0].n_features_in_ = 10
    with pytest.raises(ArtifactError) as info:
        load_verified(_write(tmp_path / "model.joblib", forest))
    assert info.value.message == (
        "model.joblib: model: member 0 takes 10 features, more than the ensemble's 4; refusing it."
    )


def test_forged_tree_inside_a_pipeline_is_refused(tmp_path, monkeypatch):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0)).fit(X, Y)
    _forge(pipeline.steps[1][1].estimators_[2].tree_, threshold={0: np.inf})
    path = _write(tmp_path / "piped" / "model.joblib", pipeline, name="piped")
    client = _client(monkeypatch, tmp_path, MODELS={"piped": str(path)})
    assert _reasons(client) == {
        "piped": "model.joblib: tree model.steps[1][1].estimators_[2].tree_: node 0 has threshold inf; refusing it."
    }


def test_forged_gradient_boosting_stage_is_refused(tmp_path):
    from sklearn.ensemble import GradientBoostingClassifier

    boosted = GradientBoostingClassifier(n_estimators=4, random_state=0).fit(X, Y)
    assert boosted.estimators_.shape == (4, 3)
    _forge(boosted.estimators_[2, 1].tree_, feature={0: 99})
    with pytest.raises(ArtifactError) as info:
        load_verified(_write(tmp_path / "model.joblib", boosted))
    # estimators_ is walked flat: stage 2, class 1 is member 2 * 3 + 1.
    assert info.value.message == "model.joblib: tree model.estimators_[7].tree_: node 0 splits on feature 99 of 4; refusing it."


def test_gradient_boosting_with_more_columns_than_outputs_is_refused(tmp_path):
    # Each stage adds column k into output k; a third column with two outputs would write past them.
    from sklearn.ensemble import GradientBoostingClassifier

    boosted = GradientBoostingClassifier(n_estimators=4, random_state=0).fit(X, Y)
    boosted.n_trees_per_iteration_ = 2
    with pytest.raises(ArtifactError) as info:
        load_verified(_write(tmp_path / "model.joblib", boosted))
    assert info.value.message == "model.joblib: model: estimators_ has shape (4, 3), not (stages, 2); refusing it."


def test_model_taking_another_width_than_its_manifest_is_refused(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    narrow = RandomForestClassifier(n_estimators=3, random_state=0).fit(X[:, :3], Y)
    with pytest.raises(ArtifactError) as info:
        load_verified(_write(tmp_path / "model.joblib", narrow))  # the manifest lists the four iris features
    assert info.value.message == "model.joblib: the model takes 3 features but its manifest lists 4; refusing it."


def test_every_tree_of_sound_models_is_checked(sound, tmp_path, monkeypatch):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    forest = load_verified(sound / "forest" / "1" / "model.skops").obj
    assert check_trees(forest, 4) == 5
    assert check_trees(make_pipeline(StandardScaler(), DecisionTreeClassifier()).fit(X, Y), 4) == 1
    assert check_trees(GradientBoostingClassifier(n_estimators=4).fit(X, Y), 4) == 12
    assert check_trees(LogisticRegression(max_iter=200).fit(X, Y), 4) == 0
    client = _client(monkeypatch, tmp_path, MODEL_PATH=str(sound / "forest" / "1" / "model.skops"),
                     PICKLE_ALLOWED=False)
    assert client.post("/predict", json={"features": SETOSA_ROW}).get_json()["label"] == "setosa"


def test_register_refuses_a_forged_pickle_without_crashing(sound, tmp_path):
    forest = _forest(sound)
    _forge(forest.estimators_[0].tree_, left_child={0: OUT_OF_BOUNDS}, right_child={0: OUT_OF_BOUNDS})
    source = tmp_path / "forged.joblib"
    joblib.dump(forest, source)
    node_count = forest.estimators_[0].tree_.node_count
    result = _cli("register", source, "--name", "forest", "--version", "1", "--model-dir", tmp_path / "models",
                  "--trust")
    _one_line_error(result, f"forged.joblib: tree model.estimators_[0].tree_: node 0 points to children "
                            f"{OUT_OF_BOUNDS} and {OUT_OF_BOUNDS}, not to nodes after it among its {node_count}; "
                            "refusing it.")
    assert not (tmp_path / "models" / "forest" / "1" / "model.joblib.json").exists()


# 3. The format comes from the file, not from the manifest's word.

def _lying(path: Path, data: bytes, fmt: str, sound: Path, name: str = "x") -> Path:
    """Write ``data`` at ``path`` with a manifest saying ``fmt`` (and a matching digest)."""
    manifest = dataclasses.replace(read_manifest(sound / "iris" / "1" / "model.joblib"), name=name, format=fmt)
    write_artifact(path, data, manifest)
    return path


def test_skops_named_file_with_a_joblib_manifest_is_never_unpickled(sound, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    root = tmp_path / "models"
    path = _lying(root / "x" / "1" / "model.skops", pickle.dumps(MakesMarker(marker)), "joblib", sound)
    with pytest.raises(ArtifactError) as info:
        load_verified(path)
    assert info.value.message == (
        "model.skops is named as a 'skops' artifact but its manifest says 'joblib'; refusing to load it."
    )
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root))  # pickles allowed: only the check stands
    assert _reasons(client) == {"x": info.value.message}
    assert not marker.exists()


def test_file_without_an_artifact_suffix_is_refused(sound, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    path = _lying(tmp_path / "iris" / "model.bin", pickle.dumps(MakesMarker(marker)), "joblib", sound, name="iris")
    client = _client(monkeypatch, tmp_path, MODEL_PATH=str(path))
    assert _reasons(client) == {"iris": "model.bin has none of the artifact suffixes (.joblib, .onnx, .pickle, "
                                        ".pkl, .skops) that would say it is 'joblib' as its manifest does; "
                                        "refusing to load it."}
    assert not marker.exists()


@pytest.mark.parametrize(("name", "fmt", "content", "message"), [
    ("model.joblib", "joblib", "skops", "Not a readable joblib file: model.joblib holds a skops archive, not a pickle"),
    ("model.skops", "skops", "pickle", "Not a readable skops file: model.skops holds a pickle, not a skops archive"),
    ("model.onnx", "onnx", "pickle", "Not a readable onnx file: model.onnx holds a pickle, not an ONNX model"),
    ("model.pkl", "pickle", "onnx", "Not a readable pickle file: model.pkl holds an ONNX model, not a pickle"),
    ("model.joblib", "joblib", "text", "Not a readable joblib file: model.joblib holds none of joblib/pickle, "
                                       "skops or ONNX, not a pickle"),
])
def test_content_that_is_not_the_manifests_format_is_refused(sound, tmp_path, name, fmt, content, message):
    marker = tmp_path / "ran"
    data = {
        "skops": (sound / "forest" / "1" / "model.skops").read_bytes(),
        "pickle": pickle.dumps(MakesMarker(marker)),
        "onnx": (sound / "onnx" / "model.onnx").read_bytes(),
        "text": b"(lp0\nI1\na.",  # a protocol-0 pickle: text opcodes, not accepted as an artifact
    }[content]
    with pytest.raises(ArtifactError) as info:
        load_verified(_lying(tmp_path / name, data, fmt, sound))
    assert info.value.message == f"{message}; refusing to load it."
    assert not marker.exists()


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_compressions_are_recognised_and_served(sound, tmp_path, monkeypatch, compress):
    estimator = load_verified(sound / "iris" / "1" / "model.joblib").obj
    source = tmp_path / "src.joblib"
    joblib.dump(estimator, source, compress=compress)
    assert sniff(source.read_bytes()) == "pickle"
    path = _lying(tmp_path / "iris" / "model.joblib", source.read_bytes(), "joblib", sound, name="iris")
    client = _client(monkeypatch, tmp_path, MODEL_PATH=str(path))
    assert client.post("/predict", json={"features": SETOSA_ROW}).get_json()["label"] == "setosa"


def test_each_format_is_recognised_by_its_bytes(sound):
    import zipfile
    from io import BytesIO

    plain_zip = BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("model.bin", b"weights")
    assert sniff((sound / "iris" / "1" / "model.joblib").read_bytes()) == "pickle"
    assert sniff((sound / "forest" / "1" / "model.skops").read_bytes()) == "skops"
    assert sniff((sound / "onnx" / "model.onnx").read_bytes()) == "onnx"
    assert sniff(_leaky_onnx()) == "onnx"
    assert [sniff(data) for data in (plain_zip.getvalue(), b"PK\x03\x04broken", b'{"json": 1}', b"", b"\x80")] == \
        [None] * 5


def test_register_refuses_a_skops_file_named_pkl_before_unpickling(sound, tmp_path):
    source = tmp_path / "model.pkl"
    shutil.copy(sound / "forest" / "1" / "model.skops", source)
    result = _cli("register", source, "--name", "x", "--version", "1", "--model-dir", tmp_path / "models", "--trust")
    _one_line_error(result, "Not a readable pickle file: model.pkl holds a skops archive, not a pickle; "
                            "refusing to load it.")


# 4. In MODEL_DIR, the manifest names the folders it is in.

def test_manifest_of_another_model_is_refused(sound, tmp_path, monkeypatch):
    root = tmp_path / "models"
    _copy_version(sound, "iris", root / "iris" / "1")
    _copy_version(sound, "iris", root / "flower" / "1")  # iris's manifest in flower's folder
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root), DEFAULT_MODEL="iris")
    assert _reasons(client) == {
        "flower": "The manifest in flower/1/ is for 'iris' version '1'; in MODEL_DIR it must match its "
                  "<name>/<version>/ folders."
    }
    assert client.post("/models/flower/predict", json={"features": SETOSA_ROW}).status_code == 503
    assert client.post("/models/iris/predict", json={"features": SETOSA_ROW}).get_json()["label"] == "setosa"


def test_manifest_of_another_version_is_refused(sound, tmp_path, monkeypatch):
    root = tmp_path / "models"
    _copy_version(sound, "iris", root / "iris" / "1")
    _copy_version(sound, "iris", root / "iris" / "2")  # version 1 copied in as 2
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root))
    assert _reasons(client) == {
        "iris": "The manifest in iris/2/ is for 'iris' version '1'; in MODEL_DIR it must match its "
                "<name>/<version>/ folders."
    }
    pinned = _client(monkeypatch, tmp_path, MODEL_DIR=str(root), MODEL_VERSIONS={"iris": "1"})
    assert pinned.post("/predict", json={"features": SETOSA_ROW}).get_json()["version"] == "1"


# 5. Nothing is replaced silently.

def test_train_into_an_occupied_version_is_refused(tmp_path):
    models = tmp_path / "models"
    assert _cli("train", "--model-dir", models, "--version", "3").exit_code == 0
    folder = models / "iris" / "3"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = _cli("train", "--model-dir", models, "--version", "3", "--model", "random_forest", "--format", "skops")
    _one_line_error(result, f"{folder} already holds an artifact (model.joblib, model.joblib.json); "
                            "pass --force to replace that version whole.")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_train_force_replaces_the_version_whole(tmp_path, monkeypatch):
    models = tmp_path / "models"
    assert _cli("train", "--model-dir", models, "--version", "3").exit_code == 0
    assert _cli("export-onnx", "iris", "--model-dir", models, "--version", "3").exit_code == 0
    folder = models / "iris" / "3"
    result = _cli("train", "--model-dir", models, "--version", "3", "--model", "random_forest",
                  "--n-estimators", "5", "--format", "skops", "--force")
    assert result.exit_code == 0, result.output
    assert f"removed {folder / 'model.onnx.json'}" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["model.skops", "model.skops.json"]
    # Left in place, the old logistic regression's joblib would be the one served (joblib is preferred).
    served = _client(monkeypatch, tmp_path, MODEL_DIR=str(models)).get("/models/iris").get_json()
    assert (served["format"], served["training"]["model"]) == ("skops", "random_forest")


def test_train_out_refuses_an_existing_file_and_force_replaces_it(tmp_path):
    out = tmp_path / "served" / "model.joblib"
    assert _cli("train", "--out", out, "--version", "1").exit_code == 0
    assert _cli("train", "--out", out.with_suffix(".onnx"), "--version", "1", "--format", "onnx").exit_code == 0
    assert _cli("train", "--out", out.with_name("other.joblib"), "--version", "9").exit_code == 0
    before = out.read_bytes()
    _one_line_error(_cli("train", "--out", out, "--version", "2"),
                    f"{out} already exists; pass --force to replace it (and its other formats).")
    assert out.read_bytes() == before
    assert _cli("train", "--out", out, "--version", "2", "--force").exit_code == 0
    assert load_verified(out).manifest.version == "2"
    assert sorted(p.name for p in out.parent.iterdir()) == [  # model.onnx was version 1: gone with it
        "model.joblib", "model.joblib.json", "other.joblib", "other.joblib.json"]


def test_register_into_an_occupied_version_is_refused_then_forced(tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    models = tmp_path / "models"
    source = tmp_path / "notebook.pkl"
    joblib.dump(LogisticRegression(max_iter=300).fit(X, Y), source)
    assert _cli("train", "--model-dir", models, "--version", "1", "--model", "random_forest",
                "--n-estimators", "5").exit_code == 0
    folder = models / "iris" / "1"
    args = ("register", source, "--name", "iris", "--version", "1", "--model-dir", models, "--trust")
    _one_line_error(_cli(*args), f"{folder} already holds an artifact (model.joblib, model.joblib.json); "
                                 "pass --force to replace that version whole.")
    assert _cli(*args, "--force").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["model.pkl", "model.pkl.json"]
    # The trained forest's model.joblib, preferred over a .pkl, would otherwise still be served.
    served = _client(monkeypatch, tmp_path, MODEL_DIR=str(models)).get("/models/iris").get_json()
    assert (served["format"], served["source"]) == ("pickle", "register")


# 6. The model folder: hidden folders are not models; links may not lead out of it.

def test_hidden_folders_are_not_models_or_versions(sound, tmp_path, monkeypatch):
    root = tmp_path / "models"
    _copy_version(sound, "iris", root / "iris" / "1")
    _copy_version(sound, "iris", root / ".git" / "1")
    _copy_version(sound, "iris", root / ".ipynb_checkpoints" / "1")
    _copy_version(sound, "iris", root / "iris" / ".ipynb_checkpoints")
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root))
    assert client.get("/health/ready").get_json() == {"status": "ready", "models": {"iris": "1"}}
    assert client.get("/models").get_json() == {
        "default": "iris",
        "models": [{"name": "iris", "state": "READY", "version": "1", "versions": ["1"], "default": True}],
    }


def test_hidden_files_are_not_artifacts(sound, tmp_path, monkeypatch):
    # An editor's or a sync tool's hidden copy in a version folder is not what the folder serves.
    root = tmp_path / "models"
    _copy_version(sound, "iris", root / "iris" / "1")
    hidden = root / "iris" / "2" / ".model.joblib"
    manifest = dataclasses.replace(read_manifest(sound / "iris" / "1" / "model.joblib"), version="2")
    write_artifact(hidden, (sound / "iris" / "1" / "model.joblib").read_bytes(), manifest)
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root))
    assert _reasons(client) == {"iris": "No usable artifact with a manifest in version '2'."}


def test_model_dir_of_hidden_folders_only_holds_no_models(sound, tmp_path):
    root = tmp_path / "models"
    _copy_version(sound, "iris", root / ".git" / "1")
    with pytest.raises(ConfigError, match="holds no <name>/<version>/ folders"):
        create_app_for_test({"MODEL_DIR": str(root)})


def _outside(sound: Path, tmp_path: Path) -> Path:
    """A sound iris version 1 folder outside the model folder."""
    return _copy_version(sound, "iris", tmp_path / "elsewhere" / "1")


def test_artifact_linked_outside_model_dir_is_refused(sound, tmp_path, monkeypatch):
    outside = _outside(sound, tmp_path)
    folder = tmp_path / "models" / "iris" / "1"
    folder.mkdir(parents=True)
    (folder / "model.joblib").symlink_to(outside / "model.joblib")
    shutil.copy(manifest_path(outside / "model.joblib"), folder)  # a true manifest: only the link is wrong
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(tmp_path / "models"))
    assert _reasons(client) == {
        "iris": "Artifact model.joblib of 'iris' version '1' is a link that leads outside MODEL_DIR; refusing it."
    }
    assert str(outside) not in client.get("/health").get_data(as_text=True)


def test_manifest_linked_outside_model_dir_is_refused(sound, tmp_path, monkeypatch):
    outside = _outside(sound, tmp_path)
    folder = tmp_path / "models" / "iris" / "1"
    folder.mkdir(parents=True)
    shutil.copy(outside / "model.joblib", folder)
    (folder / "model.joblib.json").symlink_to(manifest_path(outside / "model.joblib"))
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(tmp_path / "models"))
    assert _reasons(client) == {
        "iris": "Artifact model.joblib of 'iris' version '1' has a manifest that is a link that leads outside "
                "MODEL_DIR; refusing it."
    }


def test_version_folder_linked_outside_model_dir_is_refused(sound, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere" / "2" / "model.joblib"
    outside.parent.mkdir(parents=True)
    manifest = read_manifest(sound / "iris" / "1" / "model.joblib")
    write_artifact(outside, (sound / "iris" / "1" / "model.joblib").read_bytes(),
                   dataclasses.replace(manifest, version="2"))
    root = tmp_path / "models"
    _copy_version(sound, "iris", root / "iris" / "1")
    (root / "iris" / "2").symlink_to(outside.parent, target_is_directory=True)
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root))
    assert _reasons(client) == {"iris": "Version '2' of 'iris' is a link that leads outside MODEL_DIR; refusing it."}
    pinned = _client(monkeypatch, tmp_path, MODEL_DIR=str(root), MODEL_VERSIONS={"iris": "1"})
    assert pinned.get("/health/ready").status_code == 200


def test_model_folder_linked_outside_model_dir_is_refused_and_lists_nothing(sound, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    _copy_version(sound, "iris", elsewhere / "iris" / "1")
    (elsewhere / "iris" / "secret-project").mkdir()  # a folder name that must not be listed
    root = tmp_path / "models"
    _copy_version(sound, "forest", root / "forest" / "1")
    (root / "iris").symlink_to(elsewhere / "iris", target_is_directory=True)
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root), DEFAULT_MODEL="forest")
    assert _reasons(client) == {"iris": "The folder of model 'iris' is a link that leads outside MODEL_DIR; "
                                        "refusing it."}
    listing = client.get("/models")
    assert {m["name"]: m["versions"] for m in listing.get_json()["models"]} == {"forest": ["1"], "iris": []}
    assert "secret-project" not in listing.get_data(as_text=True)


def test_links_inside_model_dir_are_followed(sound, tmp_path, monkeypatch):
    # Links that stay inside (a version sharing another's file, a Kubernetes volume's ..data) are fine.
    root = tmp_path / "models"
    first = _copy_version(sound, "iris", root / "iris" / "1") / "model.joblib"
    second = root / "iris" / "2" / "model.joblib"
    second.parent.mkdir()
    second.symlink_to(Path("..") / "1" / "model.joblib")
    manifest = dataclasses.replace(read_manifest(first), version="2")
    manifest_path(second).write_text(json.dumps(manifest.to_dict()))
    client = _client(monkeypatch, tmp_path, MODEL_DIR=str(root))
    assert client.post("/predict", json={"features": SETOSA_ROW}).get_json()["version"] == "2"


@pytest.mark.parametrize("layout", ["MODEL_DIR", "MODEL_PATH"])
def test_no_answer_publishes_the_digest_of_a_file_a_link_leads_to(sound, tmp_path, monkeypatch, layout):
    secret = tmp_path / "elsewhere" / "credentials"
    secret.parent.mkdir()
    secret.write_bytes(b"password=hunter2\n")
    root = tmp_path / "models"
    folder = _copy_version(sound, "iris", root / "iris" / "1")
    (folder / "model.joblib").unlink()
    (folder / "model.joblib").symlink_to(secret)  # the manifest beside it is iris's
    config = {"MODEL_DIR": str(root)} if layout == "MODEL_DIR" else {"MODEL_PATH": str(folder / "model.joblib")}
    client = _client(monkeypatch, tmp_path, ADMIN_TOKEN="t" * 32, **config)
    answers = [client.get("/health"), client.get("/health/ready"), client.get("/models"),
               client.post("/admin/models/iris/reload", headers={"Authorization": "Bearer " + "t" * 32})]
    reason = _reasons(client)["iris"]
    assert reason.endswith("refusing it.") if layout == "MODEL_DIR" else reason.startswith("SHA-256 mismatch")
    for answer in answers:
        text = answer.get_data(as_text=True)
        assert sha256_bytes(secret.read_bytes()) not in text
        assert str(secret.parent) not in text
