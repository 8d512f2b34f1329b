"""Training-time augmentation: deterministic copies, cached like originals, never in evaluation folds."""

import json
import zipfile

import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.cli import app
from bloodcli.errors import UsageError
from bloodcli.imaging.augmentation import Augmentation, hed_jitter
from bloodcli.io.images import decode_image, read_bytes
from bloodcli.learn import splits, validation
from bloodcli.learn.model_file import train_model

OFF = Augmentation(copies=1, hed=0, brightness=0, contrast=0, blur=0, scale=0, rotate=False, flip=False)


@pytest.fixture(scope="module")
def cell_image():
    path = min((SAMPLE / "pbc" / "neutrophil").glob("*.jpg"))
    return decode_image(read_bytes(path), path)


def _features(dataset, augmentation, cache, spec="glcm,color", jobs=1):
    return api.featurize(dataset, api.Plan.build(spec, augmentation=augmentation), api.ExecutionOptions(cache_dir=cache, jobs=jobs))


def test_a_copy_depends_only_on_seed_key_and_copy_index(cell_image):
    augmentation = Augmentation(copies=3)
    first = augmentation.apply(cell_image, "key", 1)
    np.testing.assert_array_equal(first, augmentation.apply(cell_image, "key", 1))
    others = [augmentation.apply(cell_image, "key", 2), augmentation.apply(cell_image, "other key", 1),
              Augmentation(copies=3, seed=1).apply(cell_image, "key", 1)]  # fmt: skip
    assert all(other.shape != first.shape or not np.array_equal(other, first) for other in others)
    for copy in (first, *others):
        assert copy.dtype == np.uint8 and copy.ndim == 3 and copy.shape[2] == 3
        longer, original = max(copy.shape[:2]), max(cell_image.shape[:2])
        assert 0.9 * original - 1 <= longer <= 1.1 * original + 1  # scale=0.1


def test_every_step_off_returns_the_image_unchanged(cell_image):
    for copy in (1, 2, 3):
        np.testing.assert_array_equal(OFF.apply(cell_image, "key", copy), cell_image)


def test_hed_jitter_changes_the_colour_but_keeps_the_image_close(cell_image):
    jittered = [hed_jitter(cell_image, np.random.default_rng(seed), 0.05) for seed in range(5)]
    for image in jittered:
        assert image.shape == cell_image.shape and image.dtype == np.uint8
        difference = np.abs(image.astype(int) - cell_image).mean()
        assert 0.3 < difference < 15  # colour moved, image still the same cell
    assert len({tuple(np.round(image.reshape(-1, 3).mean(axis=0), 1)) for image in jittered}) == 5  # mean colour varies
    np.testing.assert_array_equal(hed_jitter(cell_image, np.random.default_rng(0), 0.0), cell_image)


def test_from_string_parses_keys_and_rejects_bad_input():
    augmentation = Augmentation.from_string("copies=4, hed=0.08,flip=false")
    assert (augmentation.copies, augmentation.hed, augmentation.flip, augmentation.rotate) == (4, 0.08, False, True)
    assert augmentation.to_dict()["copies"] == 4 and "4 augmented copies" in augmentation.describe()
    assert not Augmentation.from_string("").enabled
    for bad in ("copies", "bogus=1", "copies=x", "hed=2", "copies=-1", "flip=maybe"):
        with pytest.raises(UsageError) as error:
            Augmentation.from_string(bad)
        assert "\n" not in str(error.value)


def test_copies_are_cached_apart_from_originals_and_a_rerun_computes_nothing(small_dataset, tmp_path):
    cache = tmp_path / "cache"
    first = _features(small_dataset, Augmentation(copies=2), cache, jobs=2)
    assert (first.n_computed, first.n_cached) == (12 * 3 * 2, 0)  # 12 images x (original + 2 copies) x 2 extractors
    assert first.augmented.values.shape == (24, first.values.shape[1])
    assert first.augmented.source_index.tolist() == list(range(12)) * 2
    assert not np.allclose(first.augmented.values[:12], first.values)
    second = _features(small_dataset, Augmentation(copies=2), cache)
    assert (second.n_computed, second.n_cached) == (0, 72)
    np.testing.assert_array_equal(second.values, first.values)
    np.testing.assert_array_equal(second.augmented.values, first.augmented.values)
    more = _features(small_dataset, Augmentation(copies=3), cache)
    assert more.n_computed == 12 * 2  # copies 1 and 2 are the same whatever the number of copies
    plain = _features(small_dataset, None, cache)
    assert plain.n_computed == 0 and plain.augmented is None
    np.testing.assert_array_equal(plain.values, first.values)


def test_batched_extractors_featurize_copies_too(small_dataset, tmp_path, fake_deep):
    first = _features(small_dataset, Augmentation(copies=1), tmp_path / "cache", spec=fake_deep)
    assert (first.n_computed, len(first.augmented)) == (24, 12)
    assert not np.allclose(first.augmented.values, first.values)
    again = _features(small_dataset, Augmentation(copies=1), tmp_path / "cache", spec=fake_deep)
    assert again.n_computed == 0
    np.testing.assert_array_equal(again.augmented.values, first.augmented.values)


@pytest.fixture
def split_spy(monkeypatch):
    """Record every split that cross-validation, compare and tuning fit on."""
    calls, expand_split = [], splits.expand_split

    def spy(split, origin):
        calls.append((split, origin, expand_split(split, origin)))
        return calls[-1][2]

    monkeypatch.setattr(validation, "expand_split", spy)
    monkeypatch.setattr(splits, "expand_split", spy)
    return calls


def _assert_no_leak(calls, source_index, n_originals, outer_folds):
    """Every fitted split: test rows are exactly its original test samples, no training row derives from one."""
    expected_origin = np.concatenate([np.arange(n_originals), source_index])
    outer = [call for call in calls if len(call[1]) == len(expected_origin)]
    assert len(outer) == outer_folds
    for (train, test), origin, (fit_train, fit_test) in calls:
        np.testing.assert_array_equal(fit_test, test)
        assert (origin[fit_test] == fit_test).all()  # originals only
        assert not set(origin[fit_train]) & set(fit_test)
        assert set(fit_train) == set(np.flatnonzero(np.isin(origin, train)))  # all copies of training samples used
    for (train, test), origin, (fit_train, fit_test) in outer:
        np.testing.assert_array_equal(origin, expected_origin)  # the table's own copy -> sample map
        assert (fit_test < n_originals).all() and len(fit_train) == 3 * len(train)


def test_augmented_copies_never_reach_evaluation_folds(small_dataset, tmp_path, split_spy):
    table = _features(small_dataset, Augmentation(copies=2), tmp_path / "cache", spec="color")
    result = validation.cross_validate(table, "logreg", folds=3)
    _assert_no_leak(split_spy, table.augmented.source_index, 12, outer_folds=3)
    assert sorted(result.test_indices) == list(range(12)) and "scored on originals only" in result.protocol
    split_spy.clear()
    compared = api.compare(small_dataset, ["color"], ["logreg"], folds=2, repeats=2, tune=True,
                               options=api.ExecutionOptions(cache_dir=tmp_path / "cache", jobs=1), augmentation=Augmentation(copies=2))  # fmt: skip
    np.testing.assert_array_equal(compared.augmented.source_index, table.augmented.source_index)
    assert len(split_spy) > 4  # the 4 outer folds and the inner tuning folds
    _assert_no_leak(split_spy, table.augmented.source_index, 12, outer_folds=4)
    assert (compared.configs[0].evaluation.test_indices < 12).all()


def test_final_model_fits_every_copy_and_records_the_augmentation(small_dataset, tmp_path):
    table = _features(small_dataset, Augmentation(copies=2), tmp_path / "cache", spec="color")
    model = train_model(table, "logreg")
    assert model.estimator.named_steps["scale"].n_samples_seen_ == 36
    assert model.provenance["n_samples"] == 12 and model.training_keys == table.content_keys
    assert model.provenance["augmentation"]["copies"] == 2 and model.provenance["augmentation"]["n_rows"] == 24
    assert train_model(_features(small_dataset, None, tmp_path / "cache", spec="color"), "logreg").provenance["augmentation"] is None


def test_cli_train_with_augmentation_records_it_in_the_model(small_dataset, tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.bcm"
    args = ["train", str(small_dataset), "-f", "color,shape", "-m", "logreg", "--cv", "2", "--augment", "copies=2,hed=0.03",
            "-o", str(model), "--json", "-j", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "added 24 augmented training rows" in result.stderr
    assert "scored on originals only" in json.loads(result.stdout)["metrics"]["protocol"]
    manifest = json.loads(zipfile.ZipFile(model).read("manifest.json"))
    assert manifest["provenance"]["augmentation"]["copies"] == 2 and manifest["provenance"]["augmentation"]["hed"] == 0.03
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "(0 computed, 72 from cache)" in again.stderr
    bad = runner.invoke(app, ["train", str(small_dataset), "--augment", "copies=2,strength=3"])
    assert bad.exit_code == 2 and "strength" in bad.stderr
