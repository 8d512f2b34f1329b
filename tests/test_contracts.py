"""The contracts every registry entry keeps: each feature extractor and each classifier, one by one.

A new entry in :data:`bloodcli.features.EXTRACTORS` or :data:`bloodcli.learn.classifiers.CLASSIFIERS`
is tested here without writing a test: names, parameters, output shapes, recorded specs and model
files. Deep extractors are checked without TensorFlow (``weights="none"``, no model is built).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from bloodcli.features import EXTRACTORS, deep, extractors_from_specs
from bloodcli.features.base import CellImage
from bloodcli.io.datasets import Sample
from bloodcli.io.images import is_image_path, read_image
from bloodcli.learn.classifiers import CLASSIFIERS, Classifier
from bloodcli.learn.model_file import TrainedModel, train_model
from bloodcli.pipeline.plan import FeatureSettings
from bloodcli.pipeline.table import FeatureTable

ROOT = Path(__file__).resolve().parents[1]
PBC = ROOT / "sample_data" / "pbc"

EXTRACTOR_NAMES = list(EXTRACTORS)
CLASSIFIER_NAMES = list(CLASSIFIERS)


@pytest.fixture(autouse=True)
def no_tensorflow_models(monkeypatch):
    """Building a Keras model fails the test: every contract here is checked without one."""

    def refuse(extractor):
        pytest.fail(f"{extractor.name}: a contract test built a TensorFlow model")

    monkeypatch.setattr(deep, "_build", refuse)


def fresh(name: str):
    """A new extractor with default parameters (deep ones with ``weights="none"``: nothing to download)."""
    cls = EXTRACTORS[name]
    return cls(weights="none") if "weights" in cls.defaults else cls()


def sample_images() -> list[Path]:
    """The first image of each class folder of the PBC sample."""
    images = []
    for folder in sorted(p for p in PBC.iterdir() if p.is_dir()):
        found = sorted(p for p in folder.iterdir() if is_image_path(p))
        if found:
            images.append(found[0])
    assert images, f"no sample images under {PBC}"
    return images


# --- extractors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXTRACTOR_NAMES)
def test_extractor_identity(name):
    cls = EXTRACTORS[name]
    assert cls.name == name, f"registered as {name!r} but its name is {cls.name!r}"
    assert fresh(name).name == name
    assert isinstance(cls.version, str) and cls.version.strip(), f"{name}: version must be a non-empty string"
    assert isinstance(cls.description, str) and cls.description.strip(), f"{name}: no description (the CLI lists it)"


@pytest.mark.parametrize("name", EXTRACTOR_NAMES)
def test_extractor_feature_names(name):
    first, second = fresh(name).feature_names(), fresh(name).feature_names()
    assert first == second, f"{name}: two fresh instances name their features differently"
    assert first, f"{name}: no features"
    assert all(isinstance(n, str) and n for n in first), f"{name}: feature names must be non-empty strings"
    duplicates = sorted({n for n in first if first.count(n) > 1})
    assert not duplicates, f"{name}: repeated feature names {duplicates[:10]}"


@pytest.mark.parametrize("name", EXTRACTOR_NAMES)
def test_extractor_output_width(name):
    extractor = fresh(name)
    names = extractor.feature_names()
    if extractor.batched:
        # Batched (deep) extractors: the width is known without a model; compute_batch is not run.
        assert hasattr(extractor, "width"), f"{name}: a batched extractor must know its width without a model"
        assert len(names) == extractor.width
        return
    for path in sample_images():
        values = np.asarray(extractor.compute(CellImage(read_image(path))))
        assert values.shape == (len(names),), f"{name} on {path.name}: shape {values.shape}, {len(names)} names"
        assert np.issubdtype(values.dtype, np.floating), f"{name} on {path.name}: dtype {values.dtype}"
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(values))]
        assert not bad, f"{name} on {path.name}: non-finite features {bad[:10]}"


@pytest.mark.parametrize("name", EXTRACTOR_NAMES)
def test_extractor_spec_round_trips(name):
    extractor = fresh(name)
    spec = extractor.spec()
    assert spec["name"] == name and str(spec["version"]) == str(extractor.version)
    recorded = json.loads(json.dumps(spec))  # specs are stored as JSON in features and model files
    for given in (spec, recorded):
        [rebuilt] = extractors_from_specs([given])
        assert type(rebuilt) is type(extractor)
        assert rebuilt.feature_names() == extractor.feature_names()
        assert rebuilt.fingerprint() == extractor.fingerprint(), f"{name}: the cache key changes through its spec"


# --- classifiers -----------------------------------------------------------------------------------


def synthetic_data(rows: int = 60, features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separable-ish classes of equal size, integer targets 0..2."""
    rng = np.random.default_rng(seed)
    targets = np.arange(rows) % 3
    centres = rng.normal(0.0, 2.0, size=(3, features))
    return centres[targets] + rng.normal(0.0, 1.0, size=(rows, features)), targets


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_classifier_entry(name):
    entry = CLASSIFIERS[name]
    assert isinstance(entry, Classifier)
    assert name == name.strip().lower(), f"registry keys are lower case: {name!r}"
    assert isinstance(entry.description, str) and entry.description.strip()
    assert all(isinstance(t, str) for t in entry.skops_types)
    assert entry.fit_on_dask is None or callable(entry.fit_on_dask)
    estimator = entry.factory(0, 1)
    assert hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")
    params = estimator.get_params()
    unknown = [key for key in entry.tuning_grid if key not in params]
    assert not unknown, f"{name}: tuning_grid keys not in get_params(): {unknown}"
    for key, values in entry.tuning_grid.items():
        assert list(values), f"{name}: empty tuning grid for {key}"
        for value in values:
            clone(estimator).set_params(**{key: value})


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_classifier_fits_and_gives_probabilities(name):
    values, targets = synthetic_data()
    estimator = CLASSIFIERS[name].factory(0, 1).fit(values, targets)
    probabilities = np.asarray(estimator.predict_proba(values))
    assert probabilities.shape == (len(values), 3)
    assert np.all(np.isfinite(probabilities)) and probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_model_file_round_trips(name, tmp_path):
    values, targets = synthetic_data()
    classes = ["alpha", "beta", "gamma"]
    table = FeatureTable(
        values,
        [f"f{i}" for i in range(values.shape[1])],
        [Sample(Path(f"s{i}.png"), classes[t]) for i, t in enumerate(targets)],
        [f"key{i}" for i in range(len(values))],
        FeatureSettings(({"name": "color", "version": "x", "params": {}},)),
    )
    model = train_model(table, name, seed=0)
    path = tmp_path / "m.bcm"
    model.save(path)
    loaded = TrainedModel.load(path)

    assert (loaded.name, loaded.classes, loaded.feature_names) == (model.name, model.classes, model.feature_names)
    assert loaded.settings.to_dict() == model.settings.to_dict()
    assert loaded.training_keys == model.training_keys
    unseen, _ = synthetic_data(seed=1)
    for rows in (values, unseen):
        expected = model.predict_proba(rows)
        np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(loaded.predict_proba(rows), expected)
    np.testing.assert_array_equal(loaded.predict(unseen), model.predict(unseen))


def test_features_file_stores_values_plainly_and_files_of_the_earlier_layout_still_load(tmp_path):
    """Float features barely compress: deflating them was most of a cached re-run's output time."""
    import json
    import zipfile

    values, targets = synthetic_data()
    table = FeatureTable(values.astype(np.float32), [f"f{i}" for i in range(values.shape[1])],
                         [Sample(Path(f"s{i}.png"), str(t)) for i, t in enumerate(targets)],
                         [f"key{i}" for i in range(len(values))], FeatureSettings(({"name": "color", "version": "x", "params": {}},)))  # fmt: skip
    table.save(tmp_path / "now.npz")
    with zipfile.ZipFile(tmp_path / "now.npz") as archive:
        assert {i.filename: i.compress_type for i in archive.infolist()} == {
            "values.npy": zipfile.ZIP_STORED, "meta.npy": zipfile.ZIP_DEFLATED}  # fmt: skip
    np.savez_compressed(tmp_path / "before.npz", values=table.values, meta=np.array(json.dumps(table._meta())))
    for name in ("now.npz", "before.npz"):
        loaded = FeatureTable.load(tmp_path / name)
        np.testing.assert_array_equal(loaded.values, table.values)
        assert loaded.content_keys == table.content_keys and loaded.settings.to_dict() == table.settings.to_dict()
