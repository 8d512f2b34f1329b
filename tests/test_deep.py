"""Deep (Keras backbone) features: shapes, determinism, shipped weights, cache, offline errors, CLI.

Kept fast for a 2-core CPU: small inputs (32-96 pixels) and a few dozen images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLE
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.cli import app
from bloodcli.errors import ResourceUnavailableError, UsageError
from bloodcli.features import EXTRACTORS, build_extractors, deep
from bloodcli.io.datasets import load_dataset
from bloodcli.pipeline.cache import FeatureCache
from bloodcli.pipeline.runner import extract_features
from bloodcli.pipeline.table import FeatureTable

WEIGHTS = SAMPLE / "weights"
MOBILENETV2 = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
MOBILENET = WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"
SHIPPED_SHA = dict(reversed(line.split()) for line in (WEIGHTS / "SHA256SUMS").read_text().splitlines())
SMALL_V2 = {"alpha": 0.35, "input_size": 96}

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def mobilenetv2(weights, **params):
    return build_extractors("mobilenetv2", {"mobilenetv2": {**SMALL_V2, "weights": str(weights), **params}})[0]


@pytest.fixture(scope="module")
def bccd_cells():
    """A few dozen VOC crops: every WBC and platelet and a dozen RBCs."""
    dataset = load_dataset(SAMPLE / "bccd")
    seen: dict[str, int] = {}
    keep = []
    for index, label in enumerate(dataset.labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= 12:
            keep.append(index)
    return dataset.subset(keep)


def leave_one_out_1nn(values: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the nearest other sample's label (cosine similarity)."""
    unit = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[similarity.argmax(axis=1)] == labels))


def test_registry_lists_every_backbone_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from bloodcli.features import build_extractors\n"
        "import bloodcli.cli\n"
        f"e = build_extractors('resnet50,mobilenetv2', {{'mobilenetv2': {{'weights': {str(MOBILENETV2)!r}}}}})\n"
        "assert e[1].params['weights_sha256'], e[1].params\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for name in ("resnet50", "mobilenetv2", "mobilenet", "vgg16", "vgg19", "efficientnetb0"):
        assert issubclass(EXTRACTORS[name], deep.DeepExtractor) and EXTRACTORS[name].batched


@pytest.mark.parametrize("name", list(deep.BACKBONES))
def test_embedding_shapes_match_declared_widths(name, small_dataset):
    params = {"weights": "none", "input_size": 32} | ({"alpha": 0.25} if deep.BACKBONES[name].has_alpha else {})
    extractor = build_extractors(name, {name: params})[0]
    dataset = load_dataset(small_dataset).subset([0, 6])
    table = extract_features(dataset, [extractor])
    assert table.values.shape == (2, len(extractor.feature_names())) == (2, extractor.width)
    assert table.values.dtype == np.float32 and np.isfinite(table.values).all()


def test_random_weights_are_seeded_and_deterministic(small_dataset):
    dataset = load_dataset(small_dataset)
    extractor = mobilenetv2("none")
    first = extract_features(dataset, [extractor], batch_size=4).values
    deep.clear_models()  # rebuild from scratch: the seeded initialisation must reproduce the weights
    second = extract_features(dataset, [extractor], batch_size=5).values
    assert deep.embedding_function(extractor).experimental_get_tracing_count() == 1  # batches 5, 5, 2: one trace
    assert first.shape == (12, 1280)
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)
    assert first.std(axis=0).max() > 0  # not a constant embedding


def test_shipped_weights_make_cells_separable(bccd_cells):
    labels = np.asarray(bccd_cells.labels)
    pretrained = extract_features(bccd_cells, [mobilenetv2(MOBILENETV2)]).values
    random = extract_features(bccd_cells, [mobilenetv2("none")]).values
    accuracy, chance = leave_one_out_1nn(pretrained, labels), leave_one_out_1nn(random, labels)
    assert set(labels) == {"RBC", "WBC", "Platelets"} and len(labels) >= 25
    assert accuracy >= 0.85 and accuracy - chance >= 0.3, (accuracy, chance)


def test_weights_checksum_is_part_of_the_fingerprint(tmp_path):
    copy, other = tmp_path / "copy.h5", tmp_path / "other.h5"
    shutil.copy(MOBILENETV2, copy)
    other.write_bytes(MOBILENETV2.read_bytes() + b"\0")
    shipped = mobilenetv2(MOBILENETV2)
    assert shipped.params["weights_sha256"] == SHIPPED_SHA[MOBILENETV2.name]
    assert mobilenetv2(copy).params["weights_sha256"] == shipped.params["weights_sha256"]
    assert mobilenetv2(other).fingerprint() != mobilenetv2(copy).fingerprint()
    with pytest.raises(ResourceUnavailableError, match="not the one"):
        mobilenetv2(other, weights_sha256=shipped.params["weights_sha256"])
    with pytest.raises(ResourceUnavailableError, match="--weights PATH.h5"):
        mobilenetv2(tmp_path / "missing.h5")


def test_second_extraction_is_served_from_cache(small_dataset, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    dataset = load_dataset(small_dataset)
    extractors = build_extractors("color,mobilenetv2", {"mobilenetv2": {**SMALL_V2, "weights": str(MOBILENETV2)}})
    first = extract_features(dataset, extractors, cache=cache, jobs=1)
    second = extract_features(dataset, extractors, cache=cache, jobs=1)
    assert first.n_computed == 24 and second.n_computed == 0 and second.n_cached == 24
    np.testing.assert_array_equal(first.values, second.values)
    assert first.values.shape[1] == len(extractors[0].feature_names()) + 1280


def test_fused_features_through_the_api(small_dataset):
    plan = api.Plan.build("glcm,shape,color,mobilenetv2", ["mobilenetv2.alpha=0.35", "mobilenetv2.input_size=96"],
                          weights=str(MOBILENETV2))  # fmt: skip
    table = api.featurize(small_dataset, plan, api.ExecutionOptions(jobs=1))
    classical = api.featurize(small_dataset, "glcm,shape,color", options=api.ExecutionOptions(jobs=1))
    assert table.values.shape == (12, classical.values.shape[1] + 1280)
    np.testing.assert_allclose(table.values[:, : classical.values.shape[1]], classical.values)
    assert table.feature_names[-1] == "mobilenetv2_1279"


def test_imagenet_weights_offline_is_one_clear_line(small_dataset, tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    deep.clear_models()
    result = run("extract", small_dataset, "-o", tmp_path / "f.npz", "-f", "mobilenet", "-F", "mobilenet.alpha=0.25",
                 "-F", "mobilenet.input_size=128", "--no-cache")  # fmt: skip
    assert result.exit_code == 5, result.output
    assert "--weights PATH.h5" in result.stderr and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")][0].count("\n") == 0


def test_offline_machine_with_empty_keras_home(small_dataset, tmp_path):
    """The real download path: no cached weights and no reachable network."""
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    one = tmp_path / "one" / "cells"
    one.mkdir(parents=True)
    shutil.copy(next(small_dataset.glob("*/*.jpg")), one)
    command = [sys.executable, "-m", "bloodcli", "extract", one.parent, "-o", tmp_path / "f.npz", "-f", "mobilenet",
               "-F", "mobilenet.alpha=0.25", "-F", "mobilenet.input_size=128", "--no-cache", "--device", "cpu"]  # fmt: skip
    result = subprocess.run(list(map(str, command)), env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 5, result.stderr
    assert "--weights PATH.h5" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "" and "using CPU" in result.stderr  # --device cpu hides any GPU


def test_cli_extract_with_local_weights_then_predict_with_moved_file(small_dataset, tmp_path):
    weights = tmp_path / "w" / MOBILENETV2.name
    weights.parent.mkdir()
    shutil.copy(MOBILENETV2, weights)
    options = ["-F", "mobilenetv2.alpha=0.35", "-F", "mobilenetv2.input_size=96", "--weights", weights]
    result = run("extract", small_dataset, "-o", tmp_path / "f.npz", "-f", "mobilenetv2", *options, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_features"] == 1280
    spec = FeatureTable.load(tmp_path / "f.npz").settings.extractors[0]
    assert spec["params"]["weights_sha256"] == SHIPPED_SHA[MOBILENETV2.name]

    model = tmp_path / "m.bcm"
    assert run("train", small_dataset, "-m", "logreg", "-o", model, "-f", "mobilenetv2", *options).exit_code == 0
    moved = tmp_path / "elsewhere.h5"
    weights.rename(moved)
    missing = run("predict", model, small_dataset)
    assert missing.exit_code == 5 and "--weights" in missing.stderr
    predicted = run("predict", model, small_dataset, "--weights", moved)
    assert predicted.exit_code == 0, predicted.output
    assert len(predicted.stdout.strip().splitlines()) == 13
    (tmp_path / "other.h5").write_bytes(moved.read_bytes() + b"\0")
    wrong = run("predict", model, small_dataset, "--weights", tmp_path / "other.h5")
    assert wrong.exit_code == 5 and "not the one" in wrong.stderr


def test_bad_device_and_stray_weights_are_usage_errors(small_dataset, tmp_path):
    with pytest.raises(UsageError):
        deep.use_device("tpu")
    result = run("extract", small_dataset, "-o", tmp_path / "f.npz", "-f", "color", "--weights", MOBILENETV2)
    assert result.exit_code == 2 and "--weights" in result.stderr
    result = run("extract", small_dataset, "-o", tmp_path / "f.npz", "-f", "mobilenetv2", "--device", "tpu")
    assert result.exit_code == 2


def test_mismatched_weights_file_is_reported(small_dataset, tmp_path):
    with pytest.raises(UsageError, match="holds mobilenet weights of alpha 0.25, but mobilenet.alpha=0.5 was asked"):
        build_extractors("mobilenet", {"mobilenet": {"alpha": 0.5, "input_size": 96, "weights": str(MOBILENET)}})
    other_backbone = build_extractors("mobilenet", {"mobilenet": {"input_size": 96, "weights": str(MOBILENETV2)}})[0]
    with pytest.raises(UsageError, match="cannot load"):
        extract_features(load_dataset(small_dataset).subset([0]), [other_backbone])
