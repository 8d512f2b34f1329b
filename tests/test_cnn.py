"""Fine-tuned CNNs (-m cnn): training, predictions, the model file, and fine-tuning on training parts only.

Networks here are tiny (MobileNetV2 alpha 0.35 from the shipped weights, 32 px, one epoch per phase) and
built once per module: these tests check behaviour, never accuracy or speed.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.cli import app
from bloodcli.errors import ModelFileError, UsageError
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.learn.cnn import evaluation, workflows
from bloodcli.learn.cnn.settings import CNN_AUGMENTATION, CNNSettings, cnn_augmentation
from bloodcli.learn.cnn.training import FittedNetwork, validation_split
from bloodcli.learn.models import load_model

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "sample_data" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
CLASSES = ("eosinophil", "lymphocyte", "neutrophil")
TINY = dict(weights=str(WEIGHTS), image_size=32, epochs=1, head_epochs=1, batch_size=8)
runner = CliRunner()


def _tiny_dataset(root: Path, per_class: int = 4) -> Path:
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        for image in sorted((ROOT / "sample_data" / "pbc" / label).glob("*.jpg"))[:per_class]:
            shutil.copy(image, root / label / image.name)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny network fine-tuned on 12 images, saved once: (model, dataset folder, model file)."""
    root = _tiny_dataset(tmp_path_factory.mktemp("cnn") / "data")
    model, result, data = api.train_cnn(root, CNNSettings(**TINY))
    path = root.parent / "tiny.bcm"
    model.save(path)
    return model, root, path


def test_training_gives_probabilities_of_every_class(trained):
    model, root, _ = trained
    predictions = api.predict(model, [str(root)])
    assert model.classes == sorted(CLASSES)
    assert predictions.probabilities.shape == (12, 3)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert set(predictions.labels) <= set(CLASSES)
    assert model.provenance["training_cost"]["epochs"] == 2  # one epoch of each phase
    assert model.provenance["on_the_fly_augmentation"]["hed"] == CNN_AUGMENTATION.hed
    assert 4 < model.settings.framing < 7  # "auto" measured on the crops: ~5.4 red-cell diameters, recorded in the file


def test_model_file_round_trips_to_identical_probabilities(trained):
    model, root, path = trained
    loaded = load_model(path)
    data = model.load_images(api.load_inputs([str(root)]), api.ExecutionOptions())
    assert loaded.classes == model.classes and loaded.settings == model.settings
    np.testing.assert_array_equal(loaded.predict_proba(data.images), model.predict_proba(data.images))
    with zipfile.ZipFile(path) as archive:  # plain tensors and a manifest: no Keras model, no pickle
        assert sorted(archive.namelist()) == ["manifest.json", "network.npz", "training_keys.json"]
        assert json.loads(archive.read("manifest.json"))["cnn"]["alpha"] == 0.35


def test_cli_predict_evaluate_and_info_on_a_cnn_model(trained):
    model, root, path = trained
    predicted = runner.invoke(app, ["predict", str(path), str(root / "lymphocyte")])
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.stdout.strip().splitlines()
    assert lines[0] == "path,label,prob_eosinophil,prob_lymphocyte,prob_neutrophil" and len(lines) == 5
    evaluated = runner.invoke(app, ["evaluate", str(path), str(root), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n_seen_in_training"] == 12  # scored on its own training images: said so
    info = runner.invoke(app, ["info", str(path), "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["network"]["backbone"] == "mobilenetv2"
    assert json.loads(info.stdout)["network"]["framing"] == model.settings.framing
    refused = runner.invoke(app, ["predict", str(path), str(root), "--weights", str(WEIGHTS)])
    assert refused.exit_code == 2 and "holds its own weights" in refused.output


def _tampered(path: Path, target: Path, change) -> Path:
    """A copy of model file ``path`` whose network tensors went through ``change(list) -> list``."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    with np.load(io.BytesIO(entries["network.npz"])) as stored:
        arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    packed = io.BytesIO()
    np.savez(packed, *change(arrays))
    entries["network.npz"] = packed.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


@pytest.mark.parametrize("change, cause", [
    (lambda a: [a[0][..., :1], *a[1:]], "has shape"),
    (lambda a: a[:-1], "tensors"),
    (lambda a: [a[0].astype(np.float64), *a[1:]], "float32"),
    (lambda a: [np.array([{"x": 1}], dtype=object), *a[1:]], "plain arrays"),
])  # fmt: skip
def test_tampered_network_tensors_are_refused_with_exit_4(trained, tmp_path, change, cause):
    _, root, path = trained
    bad = _tampered(path, tmp_path / "bad.bcm", change)
    with pytest.raises(ModelFileError, match=cause):
        load_model(bad)
    result = runner.invoke(app, ["predict", str(bad), str(root / "lymphocyte")])
    assert result.exit_code == 4 and cause in result.output


def _recording_fits(monkeypatch, module):
    """Replace ``module.train_network`` by a spy that records the images each fit saw (and fits nothing)."""
    seen: list[set[str]] = []

    def spy(data, classes, settings, on_epoch=None):
        seen.append({str(s.path) for s in data.samples})
        return FittedNetwork(None, None, settings, len(data))

    def uniform(model, images, settings):
        return np.full((len(images), 3), 1 / 3)

    monkeypatch.setattr(module, "train_network", spy)
    monkeypatch.setattr(evaluation, "predict_probabilities", uniform)
    monkeypatch.setattr(workflows, "CNNModel", type("Unsaved", (), {"of": staticmethod(lambda data, fitted, pre: _Stub())}))
    return seen


class _Stub:
    metrics = None
    classes = sorted(CLASSES)

    def predict_proba(self, images):
        return np.full((len(images), 3), 1 / 3)


def test_cross_validation_fine_tunes_on_training_folds_only(monkeypatch, tmp_path):
    root = _tiny_dataset(tmp_path / "data")
    seen = _recording_fits(monkeypatch, evaluation)
    monkeypatch.setattr(workflows, "train_network", evaluation.train_network)
    data, _ = workflows.load_training_images(root, CNNSettings(**TINY), api.Preprocessing(), api.ExecutionOptions())
    _, result = workflows.train_cnn(data, CNNSettings(**TINY), cv=3)
    everything = {str(s.path) for s in data.samples}
    folds = seen[:3]
    tested = [everything - fitted for fitted in folds]
    assert len(seen) == 4 and seen[3] == everything  # three folds, then the final model on every image
    assert sum(map(len, tested)) == len(everything) and set().union(*tested) == everything  # each image tested once
    assert all(not (t & f) for t, f in zip(tested, folds))


def test_holdout_and_external_test_never_fit_on_test_images(monkeypatch, tmp_path):
    root, other = _tiny_dataset(tmp_path / "data"), _tiny_dataset(tmp_path / "other", per_class=6)
    for label in CLASSES:  # the other set's own images: the last two of each class
        for image in sorted((other / label).glob("*.jpg"))[:4]:
            image.unlink()
    seen = _recording_fits(monkeypatch, workflows)
    monkeypatch.setattr(evaluation, "train_network", workflows.train_network)
    data, _ = workflows.load_training_images(root, CNNSettings(**TINY), api.Preprocessing(), api.ExecutionOptions())
    _, result = workflows.train_cnn(data, CNNSettings(**TINY), test_size=0.5)
    held_out = {str(data.samples[i].path) for i in result.test_indices}
    assert held_out and not (held_out & seen[0])
    seen.clear()
    settings = workflows.prepare(CNNSettings(**TINY), api.ExecutionOptions(device="cpu"))
    workflows.fit_and_score(root, other, settings, api.Preprocessing(), api.ExecutionOptions())
    assert seen == [{str(p) for p in root.rglob("*.jpg")}]


def test_validation_split_comes_from_the_training_images_and_keeps_groups_whole():
    targets = np.repeat([0, 1], 10)
    groups = np.asarray([f"smear{i // 2}" for i in range(20)], dtype=object)
    fit, validation = validation_split(targets, groups, CNNSettings(validation_fraction=0.25))
    assert not set(groups[fit]) & set(groups[validation])
    assert sorted([*fit, *validation]) == list(range(20))
    every, none = validation_split(np.asarray([0, 1, 1]), None, CNNSettings())  # a class of one image: no split
    assert none is None and list(every) == [0, 1, 2]


def test_cnn_options_are_checked_before_any_image_is_read(tmp_path):
    with pytest.raises(UsageError, match="unknown backbone"):
        CNNSettings(backbone="alexnet")
    assert cnn_augmentation("hed=0.3").hed == 0.3 and cnn_augmentation("hed=0.3").blur == CNN_AUGMENTATION.blur
    assert not cnn_augmentation("copies=0").enabled
    missing, features = tmp_path / "missing", tmp_path / "features.npz"
    features.write_bytes(b"")
    for args, message in [
        (["train", str(missing), "-m", "svm", "--backbone", "resnet50"], "only apply with -m cnn"),
        (["train", str(missing), "-m", "cnn", "--backbone", "alexnet"], "unknown backbone"),
        (["train", str(missing), "-m", "cnn", "--image-size", "16"], "at least 32"),
        (["train", str(missing), "-m", "cnn", "--stain", "reinhard"], "HED augmentation"),
        (["train", str(features), "-m", "cnn"], "trains on images"),
        (["compare", str(missing), "--epochs", "3"], "networks of --cnn"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_on_the_fly_augmentation_is_seeded_and_off_means_unchanged():
    from bloodcli.learn.cnn.augment import augmentation_examples

    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    off = Augmentation(copies=1, hed=0, brightness=0, contrast=0, blur=0, scale=0, rotate=False, flip=False)
    np.testing.assert_array_equal(augmentation_examples(images, off), images)
    first, again = augmentation_examples(images, CNN_AUGMENTATION), augmentation_examples(images, CNN_AUGMENTATION)
    np.testing.assert_array_equal(first, again)
    assert first.shape == images.shape and not np.array_equal(first, images)
    assert not np.array_equal(first, augmentation_examples(images, CNN_AUGMENTATION, seed=1))


def test_compare_scores_fine_tuned_and_fused_networks_on_the_same_folds(monkeypatch, tmp_path):
    from bloodcli.learn.cnn import comparison
    from bloodcli.report.tables import extraction_cost

    root = _tiny_dataset(tmp_path / "data", per_class=6)
    seen = _recording_fits(monkeypatch, evaluation)
    embedded = []

    def fake_embedding(backbone, images, settings):  # stands in for the fold's fine-tuned backbone
        embedded.append(len(images))
        return images.reshape(len(images), -1)[:, :8].astype(np.float32)

    monkeypatch.setattr(comparison, "embed", fake_embedding)
    result = api.compare(root, ["glcm+shape+color"], "logreg", folds=3, repeats=1, networks=[CNNSettings(**TINY)])
    data = result.to_dict()
    rows = {(r["features"], r["model"]): r for r in data["results"]}
    network = rows[("mobilenetv2 (fine-tuned)", "cnn")]
    fused = rows[("glcm+shape+color+mobilenetv2 (fine-tuned)", "logreg")]
    classical = rows[("glcm+shape+color", "logreg")]
    assert network["kind"] == "fine-tuned" and fused["kind"] == "fused"
    assert len(network["fold_scores"]["balanced_accuracy"]) == len(classical["fold_scores"]["balanced_accuracy"]) == 3
    assert network["timing"]["network_seconds_per_epoch"] is not None
    everything = {str(p) for p in root.rglob("*.jpg")}
    for fitted, (train, test) in zip(seen, result.splits):  # the very folds of the classical pairs, training parts only
        assert fitted == {str(result_sample.path) for result_sample in np.asarray(_samples(result), dtype=object)[train]}
        assert not fitted & {str(s.path) for s in np.asarray(_samples(result), dtype=object)[test]}
    assert len(seen) == 3 and all(n == len(everything) for n in embedded)
    assert data["comparison"]["a"]["kind"] == "fine-tuned" and "s/epoch" in data["sentence"]
    # Costs as the report shows them: the fused pair extracted the classical set's features, the network none.
    assert fused["timing"]["extract_ms_per_sample"] == classical["timing"]["extract_ms_per_sample"] is not None
    assert (extraction_cost(network), extraction_cost(fused)) == ("in training", extraction_cost(classical))
    # The protocol names the recipe the network's scores came from (its input size and framing).
    assert f"mobilenetv2 alpha 0.35 at {TINY['image_size']} px" in data["protocol"], data["protocol"]


def _samples(result):
    from bloodcli.io.datasets import load_dataset

    return load_dataset(result.source).samples


def test_analyze_classifies_white_cell_crops_with_a_cnn(trained):
    from bloodcli.analysis.smears import _classify

    model, root, _ = trained
    crops = api.load_inputs([str(root / "lymphocyte")])
    probabilities, samples, skipped, novelty = _classify(model, crops, api.ExecutionOptions(), None)
    assert probabilities.shape == (4, 3) and [s.path for s in samples] == [s.path for s in crops.samples] and not skipped and novelty is None
    with pytest.raises(UsageError, match="holds its own weights"):
        _classify(model, crops, api.ExecutionOptions(), str(WEIGHTS))


def test_analyze_gives_a_framing_cnn_each_white_cell_in_its_whole_smear(trained, tmp_path, monkeypatch):
    """The network frames its inputs in red-cell diameters itself: it reads each cell's box in the smear, not a crop."""
    model, _, _ = trained
    seen, original = [], type(model).load_images

    def spy(self, dataset, options):
        seen.extend(dataset.samples)
        return original(self, dataset, options)

    monkeypatch.setattr(type(model), "load_images", spy)
    smear = sorted((ROOT / "sample_data" / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    analysis = api.analyze([str(smear)], model, tmp_path / "out", report=False)
    cells = [cell for result in analysis.smears for cell in result.cells]
    assert cells and all(cell.label in model.classes for cell in cells)
    assert [(Path(s.path).resolve(), s.box) for s in seen] == [(Path(c.smear).resolve(), c.box) for c in cells]
