"""A separate test set: 'compare --test' and 'evaluate TRAIN --test TEST' (labels aligned, nothing fitted on TEST)."""

import json

import numpy as np
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.api import compare
from bloodcli.cli import app
from bloodcli.imaging.preprocessing import Preprocessing

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_compare_scores_every_configuration_on_the_test_set(small_dataset, other_lab, tmp_path):
    out = tmp_path / "out"
    result = run("compare", small_dataset, "--test", other_lab, "-s", "color", "-s", "glcm", "-m", "logreg,svm",
                 "--augment", "copies=1", "--json", "--out-dir", out, "-j", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["test"] == {
        "source": str(other_lab), "n_samples": 8, "classes": {"lymphocyte": 4, "neutrophil": 4},
        "n_excluded_unknown_class": 2, "excluded_labels": {"blast": 2}, "n_seen_in_training": 0,
    }  # fmt: skip
    assert data["folds"] is None and "external test set" in data["protocol"] and "2 more left out" in data["protocol"]
    assert data["augmentation"]["n_rows"] == 12 and "scored on originals only" in data["protocol"]
    assert [(r["features"], r["model"]) for r in data["results"]] == [("color", "logreg"), ("color", "svm"), ("glcm", "logreg"), ("glcm", "svm")]
    for row in data["results"]:
        assert all(0 <= entry["mean"] <= 1 and entry["std"] is None for entry in row["metrics"].values())
    assert data["comparison"]["skipped"] and "external test set" in data["sentence"]
    assert "2 test sample(s) left out of the metrics" in result.stderr and "blast (2)" in result.stderr
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.json", "report.html"}
    assert len((out / "results.csv").read_text().splitlines()) == 5
    assert "Results (on the external test set)" in (out / "report.html").read_text()


def test_test_features_use_the_training_sets_stain_reference(small_dataset, other_lab, tmp_path):
    stain = Preprocessing(stain="reinhard")
    options = api.ExecutionOptions(cache_dir=tmp_path / "cache", jobs=1)
    result = compare(small_dataset, ["color"], ["logreg"], preprocessing=stain, test=other_lab, options=options)
    fitted = api.featurize(small_dataset, api.Plan.build("color", preprocessing=stain), options).settings.preprocessing
    as_training = api.featurize(other_lab, api.Plan.build("color", preprocessing=fitted), options)
    fitted_on_test = api.featurize(other_lab, api.Plan.build("color", preprocessing=stain), options)
    known = as_training.labels != "blast"
    np.testing.assert_array_equal(result.test.values, as_training.values[known])
    assert not np.allclose(fitted_on_test.values, as_training.values)  # so a reference fitted on TEST would show
    assert result.configs[0].evaluation.metrics["n_samples"] == 8
    trained = api.train_and_test(small_dataset, other_lab, api.Plan.build("color", preprocessing=stain, classifier="logreg"), options)
    assert trained.model.settings.preprocessing == fitted == trained.test.settings.preprocessing
    np.testing.assert_array_equal(trained.test.values, as_training.values)


def test_evaluate_trains_on_one_dataset_and_scores_another(small_dataset, other_lab):
    args = ["evaluate", small_dataset, "--test", other_lab, "-m", "logreg", "-f", "color", "--augment", "copies=1", "--json"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    # the two "blast" samples (no training class) are left out of the metrics, as compare --test does
    assert metrics["n_samples"] == 8 and metrics["n_seen_in_training"] == 0 and "not held-out" not in result.stderr
    assert metrics["per_class"]["lymphocyte"]["support"] == 4 and metrics["per_class"]["neutrophil"]["support"] == 4
    assert metrics["classes_unknown_to_model"] == ["blast"] and metrics["n_unknown_class"] == 2
    assert "2 sample(s) left out of the metrics: their labels are no class of the model (blast)" in result.stderr
    assert "12 samples + 12 augmented copies" in metrics["protocol"]
    mapped = json.loads(run(*args, "--label-map", "blast=neutrophil").stdout)
    assert mapped["classes_unknown_to_model"] == [] and mapped["per_class"]["neutrophil"]["support"] == 6


def test_evaluate_forms_and_augmenting_a_features_file_are_usage_errors(small_dataset, other_lab, tmp_path):
    model = tmp_path / "m.bcm"
    for args, message in [
        ((small_dataset, other_lab, "--test", other_lab), "give only the training dataset"),
        ((model,), "missing DATASET"),
        ((model, other_lab, "-m", "svm"), "--model only apply with --test"),
        ((model, other_lab, "--stain", "reinhard"), "preprocessing options only apply with --test"),
    ]:  # fmt: skip
        result = run("evaluate", *args)
        assert result.exit_code == 2 and message in result.stderr, result.output
    features = tmp_path / "f.npz"
    api.featurize(small_dataset, "color").save(features)
    result = run("compare", features, "-s", "color", "--augment", "copies=1")
    assert result.exit_code == 2 and "--augment needs images" in result.stderr
