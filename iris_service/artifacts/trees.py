"""Check the decision trees inside a loaded model before it serves a request.

scikit-learn's tree code walks a tree's node arrays in C without bounds checks:
a node whose child index points past the arrays, or whose feature is beyond
the row, reads (and follows) memory that is not the tree's, and the process
dies on the first request. Such arrays are never built by scikit-learn, but a
file can carry them (a forged skops or joblib file whose digest the forger
wrote into its manifest). So every ``sklearn.tree._tree.Tree`` reachable from
the loaded object (pipelines, forests' and boosting's ``estimators_``, single
trees, any attribute) is checked against what scikit-learn itself guarantees.
HistGradientBoosting keeps its own node arrays (``TreePredictor``), which are
not checked here.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import ArtifactError

TREE_LEAF = -1
#: Values that hold nothing to walk: skipped before they are stacked (a text
#: model's vocabulary holds millions of them).
LEAVES = (str, bytes, int, float, complex, bool, type(None), np.generic)


def check_trees(obj: Any, n_features: int, *, artifact: str = "the model") -> int:
    """Raise ArtifactError naming the first unsound tree reachable from ``obj``; return the trees checked.

    ``n_features`` is the row width the manifest promises; an estimator that
    says it takes another width would fail (or misread) every request.
    """
    from sklearn.tree._tree import Tree

    width = _n_features_in(obj)
    if width is not None and width != n_features:
        raise ArtifactError(
            f"{artifact}: the model takes {width} features but its manifest lists {n_features}; refusing it."
        )
    checked = 0
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(obj, "model")]
    while stack:
        item, where = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Tree):
            _check_tree(item, where, artifact)
            checked += 1
            continue
        if isinstance(getattr(item, "__dict__", None), dict) and not _is_code(item):
            _check_owner(item, where, artifact, Tree)
            stack.extend((v, f"{where}.{k}") for k, v in vars(item).items() if not isinstance(v, LEAVES))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item) if not isinstance(v, LEAVES))
        elif isinstance(item, dict):
            stack.extend((v, f"{where}[{k!r}]") for k, v in item.items() if not isinstance(v, LEAVES))
        elif isinstance(item, np.ndarray) and item.dtype == object:
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item.ravel()) if not isinstance(v, LEAVES))
    return checked


def _check_tree(tree: Any, where: str, artifact: str) -> None:
    """The invariants of a scikit-learn-built tree that prediction relies on.

    Children come after their parent (scikit-learn adds nodes depth-first), so
    any walk from the root moves forward and ends at a leaf within the arrays;
    leaves have both children -1; internal nodes split on a real feature at a
    finite threshold; ``value`` holds one row per node.
    """
    def refuse(problem: str) -> ArtifactError:
        return ArtifactError(f"{artifact}: tree {where}: {problem}; refusing it.")

    count, capacity = int(tree.node_count), int(tree.capacity)
    if count < 1:  # prediction starts at node 0
        raise refuse("it has no nodes")
    if count > capacity:  # before any array, which are views of node_count rows (scikit-learn 1.x clamps it)
        raise refuse(f"node_count {count} is more than its {capacity} stored nodes")
    left, right = tree.children_left, tree.children_right
    feature, threshold, value = tree.feature, tree.threshold, tree.value
    if not len(left) == len(right) == len(feature) == len(threshold) == count:
        raise refuse(f"node arrays do not have node_count ({count}) entries")
    if value.shape != (count, tree.n_outputs, tree.max_n_classes):
        raise refuse(f"value has shape {value.shape}, not {(count, tree.n_outputs, tree.max_n_classes)}")
    leaf = left == TREE_LEAF
    half = np.flatnonzero(leaf != (right == TREE_LEAF))
    if half.size:
        raise refuse(f"node {half[0]} has one child")
    nodes = np.arange(count)
    internal = ~leaf
    outside = np.flatnonzero(internal & ((left <= nodes) | (left >= count) | (right <= nodes) | (right >= count)))
    if outside.size:
        i = outside[0]
        raise refuse(f"node {i} points to children {left[i]} and {right[i]}, not to nodes after it "
                     f"among its {count}")
    n_features = int(tree.n_features)
    wrong = np.flatnonzero(internal & ((feature < 0) | (feature >= n_features)))
    if wrong.size:
        raise refuse(f"node {wrong[0]} splits on feature {feature[wrong[0]]} of {n_features}")
    infinite = np.flatnonzero(internal & ~np.isfinite(threshold))
    if infinite.size:
        raise refuse(f"node {infinite[0]} has threshold {threshold[infinite[0]]}")


def _check_owner(estimator: Any, where: str, artifact: str, tree_type: type) -> None:
    """An estimator's trees must take the width it validates, and ensembles' members no more than theirs.

    A tree estimator checks a row's width against ``n_features_in_`` and then
    reads features below its tree's ``n_features``; forests and gradient
    boosting validate once and call their members without checks, so a
    member's width must fit inside the ensemble's. Gradient boosting adds
    each stage's column ``k`` into output ``k``: there are as many columns as
    trees per iteration.
    """
    def refuse(problem: str) -> ArtifactError:
        return ArtifactError(f"{artifact}: {where}: {problem}; refusing it.")

    own = vars(estimator)
    tree = own.get("tree_")
    if isinstance(tree, tree_type):
        width = _n_features_in(estimator)
        if width != int(tree.n_features):
            raise refuse(f"its tree has {tree.n_features} features but n_features_in_ is "
                         f"{'missing' if width is None else width}")
    members = own.get("estimators_")
    if members is None:
        return
    if isinstance(members, np.ndarray):
        flat = list(members.ravel())
    else:
        flat = list(members) if isinstance(members, list | tuple) else []
    width = _n_features_in(estimator)
    for i, member in enumerate(flat):
        if not isinstance(getattr(member, "__dict__", {}).get("tree_"), tree_type):
            continue
        if width is None:
            raise refuse("it holds trees but has no n_features_in_")
        member_width = _n_features_in(member)
        if member_width is None:
            raise refuse(f"member {i} holds a tree but has no n_features_in_")
        if member_width > width:
            raise refuse(f"member {i} takes {member_width} features, more than the ensemble's {width}")
    per_iteration = own.get("n_trees_per_iteration_")
    if per_iteration is not None and isinstance(members, np.ndarray) and (
        members.ndim != 2 or members.shape[1] != per_iteration
    ):
        raise refuse(f"estimators_ has shape {members.shape}, not (stages, {per_iteration})")


def _n_features_in(estimator: Any) -> int | None:
    """``n_features_in_`` as an int, or None when absent (a property may raise anything)."""
    try:
        width = estimator.n_features_in_
    except Exception:
        return None
    return int(width) if isinstance(width, int | np.integer) and not isinstance(width, bool) else None


def _is_code(item: Any) -> bool:
    """Classes, modules and functions: their attributes are code, not the model's state."""
    return inspect.isclass(item) or inspect.ismodule(item) or inspect.isroutine(item)
