"""The command-line contract: exit codes, stdout/stderr separation and output formats."""

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.bcm"
    result = run("train", SAMPLE / "pbc", "--model", "logreg", "-o", path, "--no-cache", "-j", "2")
    assert result.exit_code == 0, result.output
    return path


def test_version_and_help():
    assert run("--version").stdout.startswith("bloodcli ")
    result = run("--help")
    assert result.exit_code == 0
    for command in ("extract", "train", "predict", "evaluate", "info", "cache"):
        assert command in result.stdout


def test_info_dataset_json():
    result = run("info", SAMPLE / "pbc", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["classes"] == {"eosinophil": 15, "lymphocyte": 15, "neutrophil": 15, "platelet": 15}
    assert data["n_samples"] == 60 and data["unreadable"] == []
    assert sum(data["image_sizes"].values()) == 60


def test_info_table_lists_unreadable_files(small_dataset):
    (small_dataset / "lymphocyte" / "broken.jpg").write_bytes(b"not an image")
    result = run("info", small_dataset)
    assert result.exit_code == 0
    assert "broken.jpg: not a recognised image format" in result.stdout


def test_class_and_file_names_are_printed_as_they_are(tmp_path, small_dataset):
    """rich turned ":smile:" in a class or file name into an emoji, on stdout and in error lines alike."""
    (small_dataset / "neutrophil").rename(small_dataset / "band:smile:[bold]x")
    table = run("info", small_dataset)
    assert table.exit_code == 0 and "band:smile:[bold]x" in table.stdout
    _assert_one_line_error(run("info", tmp_path / "lab:smile:2024"), 3, "lab:smile:2024")


def test_extract_writes_npz_csv_and_parquet_and_uses_the_cache(tmp_path, small_dataset):
    out = tmp_path / "features.npz"
    first = run("extract", small_dataset, "-o", out, "--json", "-j", "1")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["n_samples"] == 12 and summary["n_computed"] == 36 and summary["n_cached"] == 0
    second = json.loads(run("extract", small_dataset, "-o", tmp_path / "f.csv", "--json").stdout)
    assert second["n_computed"] == 0 and second["n_cached"] == 36
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert len(rows) == 12 and {"path", "label", "group", "glcm_contrast_d1_mean"} <= set(rows[0])
    assert run("extract", small_dataset, "-o", tmp_path / "f.parquet").exit_code == 0
    assert (tmp_path / "f.parquet").stat().st_size > 0


def test_train_with_cv_prints_held_out_metrics_as_json(tmp_path):
    result = run("train", SAMPLE / "pbc", "--model", "rf", "--cv", "3", "--json", "-o", tmp_path / "m.bcm")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["protocol"] == "3-fold stratified cross-validation"
    assert metrics["n_samples"] == 60 and metrics["accuracy"] > 0.8
    assert "accuracy_fold_std" in metrics


def test_train_on_voc_uses_group_aware_holdout(tmp_path):
    result = run("train", SAMPLE / "bccd", "--test-size", "0.25", "--model", "logreg", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["protocol"].startswith("group-aware stratified hold-out")


def test_train_table_output_on_terminal(tmp_path):
    result = run("train", SAMPLE / "pbc", "--test-size", "0.3", "--model", "logreg")
    assert result.exit_code == 0
    assert "Accuracy" in result.stdout and "Confusion matrix" in result.stdout


def test_predict_csv_on_stdout_and_file(trained_model, tmp_path):
    images = sorted((SAMPLE / "pbc" / "platelet").glob("*.jpg"))[:3]
    result = run("predict", trained_model, *images)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert list(rows[0]) == ["path", "label", "prob_eosinophil", "prob_lymphocyte", "prob_neutrophil", "prob_platelet"]
    assert all(r["label"] == "platelet" for r in rows)
    out = tmp_path / "pred.csv"
    assert run("predict", trained_model, str(SAMPLE / "pbc" / "*" / "*.jpg"), "-o", out).exit_code == 0
    assert len(list(csv.DictReader(open(out)))) == 60


def test_evaluate_json_out_dir_and_training_data_warning(trained_model, tmp_path):
    result = run("evaluate", trained_model, SAMPLE / "pbc", "--json", "--out-dir", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    for key in ("accuracy", "balanced_accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "f1_macro",
                "specificity_macro", "roc_auc_ovr", "labels", "confusion_matrix", "n_samples", "per_class"):  # fmt: skip
        assert key in metrics
    assert metrics["n_seen_in_training"] == 60
    assert "not held-out" in result.stderr
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {"metrics.json", "confusion_matrix.csv", "confusion_matrix.png", "report.html"}
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_on_unseen_data_has_no_warning(tmp_path):
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    for cls in ("lymphocyte", "platelet"):
        images = sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))
        for target, subset in ((train_dir, images[:10]), (test_dir, images[10:])):
            (target / cls).mkdir(parents=True)
            for image in subset:
                shutil.copy(image, target / cls)
    assert run("train", train_dir, "-m", "logreg", "-o", tmp_path / "m.bcm").exit_code == 0
    result = run("evaluate", tmp_path / "m.bcm", test_dir, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["n_seen_in_training"] == 0 and "warning" not in result.stderr


def test_info_on_a_model_shows_provenance(trained_model):
    data = json.loads(run("info", trained_model, "--json").stdout)
    assert data["model"] == "logreg" and data["classes"][0] == "eosinophil"
    assert data["features"]["extractors"][0]["name"] == "glcm"
    assert data["provenance"]["n_samples"] == 60
    assert data["sha256"] == hashlib.sha256(Path(trained_model).read_bytes()).hexdigest()  # streamed, same digest


def test_cache_info_and_clean(tmp_path, small_dataset):
    cache = tmp_path / "cache-here"
    assert run("extract", small_dataset, "-o", tmp_path / "f.npz", "--cache-dir", cache, "-F", "glcm.levels=8").exit_code == 0
    info = json.loads(run("cache", "info", "--cache-dir", cache, "--json").stdout)
    assert sum(v["entries"] for v in info["namespaces"].values()) == 12  # one entry per image: glcm+shape+color
    assert run("cache", "clean", "--cache-dir", cache).exit_code == 0
    assert json.loads(run("cache", "info", "--cache-dir", cache, "--json").stdout)["namespaces"] == {}


def test_features_command_lists_the_registry():
    result = run("features")
    assert result.exit_code == 0 and "glcm" in result.stdout and "levels=32" in result.stdout


# Bad input: one line naming the file and the cause, a documented exit code, no traceback.


def _assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


@pytest.mark.parametrize(
    "name, content, cause",
    [
        ("zero.jpg", b"", "empty file (0 bytes)"),
        ("text.png", b"hello, I am text", "not a recognised image format"),
        ("truncated.jpg", None, "corrupt or truncated"),
    ],
)
def test_bad_image_stops_or_is_skipped(tmp_path, small_dataset, name, content, cause):
    if content is None:
        content = next((SAMPLE / "pbc" / "platelet").glob("*.jpg")).read_bytes()[:2000]
    bad = small_dataset / "neutrophil" / name
    bad.write_bytes(content)
    out = tmp_path / "f.npz"
    _assert_one_line_error(run("extract", small_dataset, "-o", out), 3, name, cause)
    assert not out.exists()
    result = run("extract", small_dataset, "-o", out, "--skip-errors", "--json")
    assert result.exit_code == 0
    skipped = json.loads(result.stdout)["skipped"]
    assert [s["path"] for s in skipped] == [str(bad)] and cause in skipped[0]["reason"]


def test_empty_class_folder_single_class_and_missing_csv_row(tmp_path, small_dataset):
    (small_dataset / "empty").mkdir()
    _assert_one_line_error(run("train", small_dataset), 3, "empty", "has no images")
    shutil.rmtree(small_dataset / "empty")
    shutil.rmtree(small_dataset / "neutrophil")
    _assert_one_line_error(run("train", small_dataset, "--cv", "2"), 3, "1 class", "lymphocyte")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nsmall/lymphocyte/nothere.jpg,lymphocyte\n")
    _assert_one_line_error(run("train", manifest), 3, "nothere.jpg", "file not found")


def test_usage_errors(tmp_path):
    assert run("train", SAMPLE / "pbc", "--model", "bogus").exit_code == 2
    assert run("train", SAMPLE / "pbc", "--features", "nope").exit_code == 2
    assert run("extract", tmp_path / "does-not-exist", "-o", tmp_path / "x.npz").exit_code == 3


def test_bad_model_file(tmp_path):
    bad = tmp_path / "bad.bcm"
    bad.write_bytes(b"garbage")
    _assert_one_line_error(run("predict", bad, SAMPLE / "pbc"), 4, "bad.bcm")


def test_a_pickled_features_file_is_refused_without_running_it(tmp_path):
    import os
    import pickle

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    hostile = tmp_path / "features.joblib"
    hostile.write_bytes(pickle.dumps({"format": "bloodcli-features/1", "x": RunsCode()}))
    disguised = tmp_path / "features.npz"
    disguised.write_bytes(hostile.read_bytes())
    for path in (hostile, disguised):
        result = run("train", path, "-m", "logreg")
        assert result.exit_code == 3 and "features file" in result.stderr, result.output
    assert not (tmp_path / "ran").exists()
