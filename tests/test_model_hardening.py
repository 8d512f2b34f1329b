"""Crafted model files: every tree wherever it sits, XGBoost JSON, libsvm arrays, the manifest and the
archive itself are checked before estimator code runs, and each refusal is one line with exit code 4.

Each file is built here from a small valid model: a tampered tree would otherwise crash the process
(out-of-range child), loop forever (a node pointing back) or predict from the wrong column.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import ROOT, SAMPLE
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.cli import app
from bloodcli.errors import ModelFileError
from bloodcli.learn.model_file import TrainedModel, train_model

TWO_CLASSES = SAMPLE / "pbc" / "platelet"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    for cls in ("lymphocyte", "platelet"):
        (root / cls).symlink_to(SAMPLE / "pbc" / cls)
    return api.featurize(root, "color", options=api.ExecutionOptions(use_cache=False, jobs=1))


@pytest.fixture(scope="module")
def xgb_model(table, tmp_path_factory):
    path = tmp_path_factory.mktemp("xgb") / "xgb.bcm"
    train_model(table, "xgboost").save(path)
    return path


def _model_of(table, estimator) -> TrainedModel:
    """A model of ``estimator`` fitted on the table, as bloodcli would save any classifier."""
    labels = np.searchsorted(sorted(set(table.labels)), table.labels)
    return TrainedModel.of(table, estimator.fit(table.values, labels), "dt", 0)


def _rewrite(source, target, entries: dict[str, bytes]) -> str:
    """A copy of the model zip ``source`` with the named entries' bytes replaced (CRCs stay valid)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as new:
        for name in old.namelist():
            new.writestr(name, entries.get(name, old.read(name)))
    target.write_bytes(buffer.getvalue())
    return str(target)


def _tampered_sklearn(table, estimator, tmp_path, tamper) -> str:
    """A model file of ``estimator`` whose fitted state was edited by ``tamper(estimator)`` before saving.

    The untampered file is loaded first: the refusal must come from the edit, not from the estimator's type.
    """
    import skops.io as sio

    model = _model_of(table, estimator)
    model.save(tmp_path / "good.bcm")
    assert TrainedModel.load(tmp_path / "good.bcm").predict(table.values[:3]).shape == (3,)
    tamper(model.estimator)
    return _rewrite(tmp_path / "good.bcm", tmp_path / "bad.bcm", {"estimator.skops": sio.dumps(model.estimator)})


def _first_tree(estimator):
    from sklearn.tree._tree import Tree

    stack = [estimator]
    while stack:
        item = stack.pop()
        if isinstance(item, Tree):
            return item
        if isinstance(item, np.ndarray) and item.dtype == object:
            stack.extend(item.ravel())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
    raise AssertionError("no tree found")


def _gradient_boosting():
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0)


def _calibrated_tree():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.tree import DecisionTreeClassifier

    return CalibratedClassifierCV(DecisionTreeClassifier(max_depth=3, random_state=0), cv=2)


def _pipeline_forest():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("rf", RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0))])


TREE_TAMPERS = {
    "out-of-range child": lambda tree: tree.children_left.__setitem__(0, 10**6),
    "self-loop": lambda tree: tree.children_right.__setitem__(0, 0),
    "negative feature": lambda tree: tree.feature.__setitem__(0, -5),
    "feature past the input": lambda tree: tree.feature.__setitem__(0, 10**4),
}
HOLDERS = {"gradient boosting": _gradient_boosting, "calibrated tree": _calibrated_tree, "pipeline forest": _pipeline_forest}


@pytest.mark.parametrize("holder", sorted(HOLDERS))
@pytest.mark.parametrize("tamper", sorted(TREE_TAMPERS))
def test_every_tree_in_the_object_graph_is_checked(table, tmp_path, holder, tamper):
    path = _tampered_sklearn(table, HOLDERS[holder](), tmp_path, lambda e: TREE_TAMPERS[tamper](_first_tree(e)))
    with pytest.raises(ModelFileError, match="refused"):
        TrainedModel.load(path)


def test_a_tree_reading_more_features_than_its_estimator_is_refused(table, tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    def widen(tree_model):  # a tree over 50 more columns than the input has, splitting on one of them
        from sklearn.tree._tree import Tree

        wide = Tree(tree_model.n_features_in_ + 50, np.array([2], dtype=np.intp), 1)
        wide.__setstate__(tree_model.tree_.__getstate__())
        wide.feature[0] = tree_model.n_features_in_ + 10
        tree_model.tree_ = wide

    path = _tampered_sklearn(table, DecisionTreeClassifier(max_depth=3, random_state=0), tmp_path, widen)
    with pytest.raises(ModelFileError, match="features"):
        TrainedModel.load(path)


def test_inconsistent_support_vector_arrays_are_refused(table, tmp_path):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    def truncate(calibrated):  # libsvm would read the missing coefficients from foreign memory
        svc = calibrated.calibrated_classifiers_[0].estimator
        svc._dual_coef_ = svc._dual_coef_[:, :3]

    path = _tampered_sklearn(table, CalibratedClassifierCV(SVC(random_state=0), cv=3, ensemble=False), tmp_path, truncate)
    with pytest.raises(ModelFileError, match="support-vector"):
        TrainedModel.load(path)


def _xgboost_edit(xgb_model, tmp_path, edit) -> str:
    with zipfile.ZipFile(xgb_model) as archive:
        document = json.loads(archive.read("estimator.xgboost.json"))
    edit(document["learner"]["gradient_booster"]["model"]["trees"][0], document)
    return _rewrite(xgb_model, tmp_path / "bad.bcm", {"estimator.xgboost.json": json.dumps(document).encode()})


XGBOOST_EDITS = {
    "child index 1e8": lambda tree, doc: tree["left_children"].__setitem__(0, 10**8),
    "split feature -5": lambda tree, doc: tree["split_indices"].__setitem__(0, -5),
    "self-loop": lambda tree, doc: tree["right_children"].__setitem__(0, 0),
    "feature past the input": lambda tree, doc: tree["split_indices"].__setitem__(0, 10**6),
    "short node arrays": lambda tree, doc: tree["parents"].pop(),
    "more classes": lambda tree, doc: doc["learner"]["learner_model_param"].__setitem__("num_class", "5"),
}


@pytest.mark.parametrize("edit", sorted(XGBOOST_EDITS))
def test_xgboost_json_trees_are_checked_before_xgboost_reads_them(xgb_model, tmp_path, edit):
    path = _xgboost_edit(xgb_model, tmp_path, XGBOOST_EDITS[edit])
    with pytest.raises(ModelFileError, match="refused"):
        TrainedModel.load(path)


def test_crafted_xgboost_child_index_neither_crashes_nor_hangs_predict(xgb_model, tmp_path):
    """Process level: before these checks XGBoost segfaulted on this file."""
    path = _xgboost_edit(xgb_model, tmp_path, XGBOOST_EDITS["child index 1e8"])
    result = subprocess.run([sys.executable, "-m", "bloodcli", "predict", path, str(TWO_CLASSES), "--no-cache"],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "refused" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _manifest_edit(xgb_model, tmp_path, data: bytes) -> str:
    return _rewrite(xgb_model, tmp_path / "bad.bcm", {"manifest.json": data})


def _nested(depth: int) -> bytes:
    return b'{"format": "bloodcli-model/1", "x": ' + b"[" * depth + b"]" * depth + b"}"


def _manifest(xgb_model, **changes) -> bytes:
    with zipfile.ZipFile(xgb_model) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    return json.dumps(manifest | changes).encode()


MANIFESTS = {
    "a list": lambda m: b'["bloodcli-model/1"]',
    "missing keys": lambda m: b'{"format": "bloodcli-model/1"}',
    "invalid UTF-8": lambda m: b'{"format": "bloodcli-model/1", "model": "\xff\xfe"}',
    "deep nesting": lambda m: _nested(100_000),
    "classes not strings": lambda m: _manifest(m, classes=[1, 2]),
    "settings of the wrong type": lambda m: _manifest(m, settings=[]),
    "bad preprocessing": lambda m: _manifest(m, settings={"extractors": [{"name": "color"}], "preprocessing": {"resize": -1}}),
    "one class on a two-class estimator": lambda m: _manifest(m, classes=["lymphocyte"]),
    "three classes on a two-class estimator": lambda m: _manifest(m, classes=["a", "b", "c"]),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_malformed_manifests_exit_4_in_one_line(xgb_model, tmp_path, case):
    path = _manifest_edit(xgb_model, tmp_path, MANIFESTS[case](xgb_model))
    result = CliRunner().invoke(app, ["predict", path, str(TWO_CLASSES), "--no-cache"])
    assert result.exit_code == 4, result.output
    assert str(path) in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_manifest_inflating_past_its_bound_is_refused_before_inflating(xgb_model, tmp_path):
    huge = b" " * (20 << 20) + _manifest(xgb_model)  # valid JSON of 20 MiB: a few KiB compressed
    path = _manifest_edit(xgb_model, tmp_path, huge)
    assert os.path.getsize(path) < 200_000
    with pytest.raises(ModelFileError, match="inflate"):
        TrainedModel.load(path)


def test_a_class_count_mismatch_in_a_sklearn_model_is_refused(table, tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    model = _model_of(table, DecisionTreeClassifier(max_depth=2, random_state=0))
    model.classes = ["lymphocyte", "platelet", "extra"]
    model.save(tmp_path / "three.bcm")
    with pytest.raises(ModelFileError, match="classes"):
        TrainedModel.load(tmp_path / "three.bcm")


def test_a_fifo_given_as_the_model_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "model.bcm"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "bloodcli", "predict", str(fifo), str(TWO_CLASSES), "--no-cache"],
                            capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert result.returncode == 4 and "not a regular file" in result.stderr


def test_fuzzed_model_files_never_crash_hang_or_predict_a_wrong_shape(tmp_path):
    """A few dozen random byte flips and JSON/array edits of valid model files (benchmarks/fuzz_model_files.py)."""
    script = ROOT / "benchmarks" / "fuzz_model_files.py"
    result = subprocess.run([sys.executable, str(script), "--iterations", "36", "--seed", "17", "--work", str(tmp_path), "--json"],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout)["outcomes"]
    assert sum(outcomes.values()) == 36
    assert set(outcomes) <= {"refused (exit 4)", "predicted, right shape"}, outcomes
