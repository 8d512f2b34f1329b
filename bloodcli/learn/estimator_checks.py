"""Structural checks of the estimator in a model file, done before any estimator code sees it.

Compiled prediction code (scikit-learn's tree and libsvm loops, XGBoost) trusts the arrays it is
given: a child index past the end reads foreign memory, a node that points back to itself loops
forever. So:

- every tree, wherever it sits in the estimator's object graph (a bare tree, a forest, a pipeline
  step, a gradient-boosting array of trees, a calibrated classifier), has children inside its node
  array and after their parent (hence no loops), split features in ``[0, n_features)`` and the
  class count of its owner; libsvm models have arrays of consistent sizes;
- XGBoost's JSON trees get the same checks before XGBoost parses them.

The archive and manifest around the estimator are checked by :mod:`.model_checks`.
"""

from __future__ import annotations

import numpy as np

from bloodcli.errors import ModelFileError


def check_estimator(estimator, n_classes: int, n_features: int, path) -> None:
    """Refuse an estimator whose trees or libsvm arrays could read outside their memory or loop.

    Checks every estimator in the object graph, then the top level's class and feature counts
    against the manifest.
    """
    for owner in _estimators(estimator):
        tree = getattr(owner, "tree_", None)
        if tree is not None:
            _check_sklearn_tree(owner, tree, path)
        for child in _ensemble_members(owner):
            if getattr(child, "n_features_in_", None) not in (None, getattr(owner, "n_features_in_", None)):
                _refuse(path, "an ensemble member expects another number of features than its ensemble")
        if hasattr(owner, "support_vectors_") and hasattr(owner, "_n_support"):
            _check_libsvm(owner, path)
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) != n_classes:
        _refuse(path, f"the estimator has {len(classes)} classes but the manifest lists {n_classes}")
    width = getattr(estimator, "n_features_in_", None)
    if width is not None and width != n_features:
        _refuse(path, f"the estimator expects {width} features but the manifest lists {n_features}")


def _refuse(path, why: str):
    raise ModelFileError(f"{path}: refused: {why}")


def _estimators(root, limit: int = 100_000):
    """Every object with fitted state reachable from ``root`` (attributes, lists, dicts, object arrays)."""
    from sklearn.base import BaseEstimator

    seen, stack = set(), [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or len(seen) > limit:
            continue
        seen.add(id(item))
        if isinstance(item, BaseEstimator):
            yield item
            stack.extend(vars(item).values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, np.ndarray) and item.dtype == object:
            stack.extend(item.ravel().tolist())
        elif hasattr(item, "__dict__") and type(item).__module__.startswith("sklearn"):
            stack.extend(vars(item).values())  # e.g. a calibrated classifier holding its SVC


def _ensemble_members(owner) -> list:
    members = getattr(owner, "estimators_", None)
    if isinstance(members, np.ndarray):
        return [m for m in members.ravel().tolist() if m is not None]
    return [m for m in members or [] if hasattr(m, "n_features_in_")] if isinstance(members, list) else []


def _check_sklearn_tree(owner, tree, path) -> None:
    count = int(tree.node_count)
    arrays = [np.asarray(a) for a in (tree.children_left, tree.children_right, tree.feature)]
    if any(len(a) != count for a in arrays) or count < 1:
        _refuse(path, "a tree's node arrays disagree in length")
    if not tree_nodes_valid(*arrays, tree.n_features):
        _refuse(path, "a tree in the model file has out-of-range or looping node indices, or features outside its input")
    width = getattr(owner, "n_features_in_", None)
    if width is not None and tree.n_features != width:
        _refuse(path, f"a tree reads {tree.n_features} features but its estimator expects {width}")
    classes = getattr(owner, "n_classes_", None)
    if classes is not None and int(np.max(tree.n_classes)) != int(np.max(classes)):
        _refuse(path, "a tree's class count disagrees with its estimator's")
    if np.asarray(tree.value).shape != (count, tree.n_outputs, tree.max_n_classes):
        _refuse(path, "a tree's leaf values have the wrong shape")


def tree_nodes_valid(left, right, feature, n_features: int) -> bool:
    """True when every split node's two children lie after it inside the arrays, leaves have none,
    and every split reads a feature in ``[0, n_features)``."""
    left, right, feature = (np.asarray(a, dtype=np.int64) for a in (left, right, feature))
    nodes = np.arange(len(left))
    split = left != -1
    return bool(
        ((right == -1) == ~split).all()
        and (left[split] > nodes[split]).all() and (right[split] > nodes[split]).all()
        and (left < len(left)).all() and (right < len(left)).all()
        and ((feature[split] >= 0) & (feature[split] < n_features)).all()
    )  # fmt: skip


def _check_libsvm(svm, path) -> None:
    vectors, support = np.asarray(svm.support_vectors_), np.asarray(svm._n_support)
    classes = len(support)
    consistent = (
        vectors.ndim == 2 and support.ndim == 1 and (support >= 0).all() and support.sum() == len(vectors)
        and np.asarray(svm._dual_coef_).shape == (max(classes - 1, 1), len(vectors))
        and np.asarray(svm._intercept_).shape == (max(classes * (classes - 1) // 2, 1),)
        and len(np.asarray(svm.support_)) == len(vectors)
        and (getattr(svm, "n_features_in_", None) in (None, vectors.shape[1]))
    )  # fmt: skip
    if not consistent:
        _refuse(path, "the support-vector model's arrays have inconsistent sizes")


_XGB_TREE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_conditions",
                    "default_left", "split_type", "base_weights")  # fmt: skip


def check_xgboost_json(model, n_classes: int, n_features: int, path) -> None:
    """Refuse an XGBoost JSON model unless it is a numerical gbtree classifier with valid trees
    over ``n_features`` features and ``n_classes`` classes."""
    try:
        learner = model["learner"]
        params = learner["learner_model_param"]
        booster = learner["gradient_booster"]
        objective = learner["objective"]["name"]
        num_feature, num_class = int(params["num_feature"]), int(params["num_class"])
        if booster["name"] != "gbtree":
            _refuse(path, f"XGBoost booster {booster['name']!r} is not one bloodcli writes")
        trees, tree_info = booster["model"]["trees"], booster["model"]["tree_info"]
        indptr = booster["model"].get("iteration_indptr", [0, len(trees)])
        declared = int(booster["model"]["gbtree_model_param"]["num_trees"])
    except (KeyError, TypeError, ValueError):
        _refuse(path, "the XGBoost model lacks the fields of a tree classifier")
    expected_classes = n_classes if n_classes > 2 else 0
    if objective not in ("binary:logistic", "multi:softprob", "multi:softmax") or num_class != expected_classes:
        _refuse(path, f"the XGBoost model ({objective}, {num_class} classes) disagrees with the manifest's {n_classes} classes")
    if num_feature != n_features:
        _refuse(path, f"the XGBoost model reads {num_feature} features but the manifest lists {n_features}")
    if not (isinstance(trees, list) and isinstance(tree_info, list) and len(trees) == len(tree_info) == declared):
        _refuse(path, "the XGBoost model's tree count is inconsistent")
    if any(not isinstance(g, int) or not 0 <= g < max(num_class, 1) for g in tree_info):
        _refuse(path, "an XGBoost tree belongs to a class the model does not have")
    if not isinstance(indptr, list) or not indptr or indptr[-1] != len(trees) or any(b < a for a, b in zip(indptr, indptr[1:])):
        _refuse(path, "the XGBoost model's iteration index is inconsistent")
    for tree in trees:
        _check_xgboost_tree(tree, num_feature, path)


def _check_xgboost_tree(tree, num_feature: int, path) -> None:
    try:
        param = tree["tree_param"]
        count = int(param["num_nodes"])
        arrays = {name: tree[name] for name in _XGB_TREE_ARRAYS}
        numeric = int(param["num_feature"]) == num_feature and int(param.get("size_leaf_vector", 1)) in (0, 1)
        categorical = any(tree.get(name) for name in ("categories", "categories_nodes", "categories_segments", "categories_sizes"))
    except (KeyError, TypeError, ValueError):
        _refuse(path, "an XGBoost tree lacks its node arrays")
    if not numeric or categorical:
        _refuse(path, "an XGBoost tree has categorical or multi-output splits, or another feature count")
    if count < 1 or any(not isinstance(a, list) or len(a) != count for a in arrays.values()):
        _refuse(path, "an XGBoost tree's node arrays disagree with its node count")
    try:
        left, right, parents, features, kinds = (np.asarray(arrays[n], dtype=np.int64) for n in
                                                 ("left_children", "right_children", "parents", "split_indices", "split_type"))  # fmt: skip
        np.asarray(arrays["split_conditions"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        _refuse(path, "an XGBoost tree has non-numeric node arrays")
    split = left != -1
    children_point_back = (parents[left[split]] == np.flatnonzero(split)).all() and (parents[right[split]] == np.flatnonzero(split)).all() \
        if tree_nodes_valid(left, right, features, num_feature) else False  # fmt: skip
    if not children_point_back or (kinds != 0).any():
        _refuse(path, "an XGBoost tree has out-of-range or looping node indices, or features outside its input")


__all__ = ["check_estimator", "check_xgboost_json", "tree_nodes_valid"]
