"""Behaviour the restructure (one plan, one CV loop, thin CLI) added or changed, each with a test that failed before it."""

import json

import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.cli import app
from bloodcli.cli.app import rewrite_arguments
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.learn import validation
from bloodcli.pipeline import featurize as featurize_module

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def fitted_on(monkeypatch):
    """The sample paths every stain/scale reference was fitted on, one set per fit."""
    calls, fit = [], featurize_module.fit_preprocessing

    def spy(dataset, preprocessing, *args, **kwargs):
        calls.append({str(s.path) for s in dataset.samples})
        return fit(dataset, preprocessing, *args, **kwargs)

    monkeypatch.setattr(featurize_module, "fit_preprocessing", spy)
    return calls


def test_cross_validation_fits_stain_references_on_each_training_part_only(small_dataset, fitted_on):
    table = api.featurize(small_dataset, api.Plan.build("color", preprocessing=Preprocessing(stain="reinhard")),
                          api.ExecutionOptions(jobs=1))  # fmt: skip
    splits = validation.make_folds(table.labels, None, 3, seed=0)
    fitted_on.clear()
    rows = validation.fold_rows(table, splits)
    assert len(fitted_on) == 3
    for (train, test), used, fold in zip(splits, fitted_on, rows):
        assert used == {str(table.samples[i].path) for i in train}  # no test image took part
        assert not np.allclose(fold.values, table.values)  # features differ from the all-images reference
    result = validation.cross_validate(table, "logreg", folds=3)
    assert "stain/scale references fitted on each training part" in result.protocol


def test_compare_refits_each_fold_once_for_every_configuration(small_dataset, fitted_on):
    stain = Preprocessing(stain="reinhard")
    result = api.compare(small_dataset, ["color", "glcm+color"], "logreg,rf", folds=2, repeats=2, preprocessing=stain,
                         options=api.ExecutionOptions(jobs=1))  # fmt: skip
    # one fit on all images, then one per training part (4 folds): not per extractor, not per configuration
    assert len(fitted_on) == 1 + 4
    assert "fitted on each training part" in result.to_dict()["protocol"]


def test_global_flags_work_after_the_subcommand():
    quiet = run("info", SAMPLE / "pbc", "-q", "--json")
    assert quiet.exit_code == 0 and json.loads(quiet.stdout)["n_samples"] == 60
    failed = run("train", SAMPLE / "pbc", "--model", "svn", "--debug")
    assert failed.exit_code == 2 and "unknown model 'svn'" in failed.stderr


def test_earlier_option_spellings_are_hidden_aliases():
    assert rewrite_arguments(["train", "d", "--cv", "5", "-q"]) == ["-q", "train", "d", "--folds", "5"]
    assert rewrite_arguments(["compare", "d", "--models=svm", "-s", "glcm"]) == ["compare", "d", "--model=svm", "--features", "glcm"]
    assert rewrite_arguments(["segment", "x", "-o", "out", "--nucleus-sat", "70"]) == [
        "segment", "x", "--out-dir", "out", "--param", "nucleus_sat_min=70"]  # fmt: skip
    assert rewrite_arguments(["predict", "m", "--cv", "3"]) == ["predict", "m", "--cv", "3"]  # only the command's own aliases
    help_text = run("train", "--help").stdout
    assert "--folds" in help_text and "--cv" not in help_text


def test_bad_options_are_refused_before_any_image_is_read(monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("extraction started")

    monkeypatch.setattr(featurize_module, "run_extraction", no_extraction)
    for args, message in [
        (("train", SAMPLE / "pbc", "-m", "svn"), "unknown model"),
        (("train", SAMPLE / "pbc", "--folds", "1"), "at least 2 folds"),
        (("train", SAMPLE / "pbc", "--test-size", "1.5"), "between 0 and 1"),
        (("compare", SAMPLE / "pbc", "-m", "svm,nope"), "unknown model"),
        (("compare", SAMPLE / "pbc", "--folds", "1"), "at least 2 folds"),
        (("compare", SAMPLE / "pbc", "--metric", "speed"), "unknown metric"),
        (("extract", SAMPLE / "pbc", "-o", "feats.txt"), "must end in"),
    ]:  # fmt: skip
        result = run(*args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)


def test_evaluating_on_a_dataset_without_a_model_class_is_an_input_error(small_dataset, other_lab, tmp_path):
    model = tmp_path / "m.bcm"
    assert run("train", small_dataset, "-m", "logreg", "-f", "color", "-o", model).exit_code == 0
    unrelated = tmp_path / "unrelated"
    (unrelated / "blast").mkdir(parents=True)
    for image in (other_lab / "blast").iterdir():
        (unrelated / "blast" / image.name).write_bytes(image.read_bytes())
    (unrelated / "myeloblast").mkdir()
    (unrelated / "myeloblast" / "x.png").write_bytes((unrelated / "blast" / image.name).read_bytes())
    result = run("evaluate", model, unrelated)
    assert result.exit_code == 3 and "no sample has a class of the model" in result.stderr
