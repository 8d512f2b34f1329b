"""What a new user hit (crashes, silent successes, noise, unreadable text): one test per defect, each failing before its fix."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.pipeline import featurize as featurize_module

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def rare_class(small_dataset):
    """small_dataset with a third class of only 2 images."""
    (small_dataset / "platelet").mkdir()
    for image in sorted((SAMPLE / "pbc" / "platelet").glob("*.jpg"))[:2]:
        shutil.copy(image, small_dataset / "platelet" / image.name)
    return small_dataset


@pytest.fixture
def no_extraction(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("extraction started")

    monkeypatch.setattr(featurize_module, "run_extraction", refuse)


def test_default_svm_trains_on_a_class_of_two_images(rare_class, tmp_path):
    result = run("train", rare_class, "-f", "color", "-o", tmp_path / "m.bcm")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.bcm").is_file()


@pytest.mark.parametrize("args, message", [
    (("train", "--folds", "3"), "class 'platelet' has 2 sample(s), fewer than the 3 folds"),
    (("train", "--folds", "2"), "svm needs at least 2 per class"),
    (("compare", "-m", "rf,svm", "--folds", "2", "--repeats", "1"), "svm needs at least 2 per class"),
])  # fmt: skip
def test_a_class_too_small_for_the_folds_is_refused_before_extraction(rare_class, no_extraction, args, message):
    result = run(args[0], rare_class, *args[1:])
    assert result.exit_code == 3 and message in result.stderr, result.output


def test_segment_into_an_existing_file_is_a_usage_error(tmp_path):
    target = tmp_path / "existing"
    target.write_text("keep me")
    result = run("segment", SAMPLE / "chula" / "JPEGImages", "--out-dir", target)
    assert result.exit_code == 2 and "exists and is not a folder" in result.stderr, result.output
    assert target.read_text() == "keep me"


def test_features_written_as_parquet_train_and_a_csv_export_is_refused_in_one_line(small_dataset, tmp_path):
    for name in ("feats.parquet", "feats.csv", "feats.npz"):
        assert run("extract", small_dataset, "-f", "color", "-o", tmp_path / name).exit_code == 0
    from_parquet = run("train", tmp_path / "feats.parquet", "-m", "logreg", "--folds", "3", "--json")
    from_npz = run("train", tmp_path / "feats.npz", "-m", "logreg", "--folds", "3", "--json")
    assert from_parquet.exit_code == 0, from_parquet.output
    assert json.loads(from_parquet.stdout)["metrics"] == json.loads(from_npz.stdout)["metrics"]
    from_csv = run("train", tmp_path / "feats.csv", "-m", "logreg")
    assert from_csv.exit_code == 3 and "exported as CSV keeps no extraction settings" in from_csv.stderr


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path, small_dataset):
    model = tmp_path / "m.bcm"
    assert run("train", small_dataset, "-f", "color", "-m", "logreg", "-o", model).exit_code == 0
    process = subprocess.Popen([sys.executable, "-m", "bloodcli", "predict", str(model), str(small_dataset)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    process.stdout.close()  # like `| head -0`: the first write meets a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and "internal error" not in stderr and "Traceback" not in stderr, stderr


def test_a_deep_run_prints_one_device_line_and_nothing_with_quiet(tmp_path, small_dataset):
    weights = SAMPLE / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    command = [sys.executable, "-m", "bloodcli", "extract", str(small_dataset), "-f", "mobilenetv2", "--weights", str(weights),
               "-F", "mobilenetv2.alpha=0.35", "-F", "mobilenetv2.input_size=96", "--no-cache"]  # fmt: skip
    quiet = subprocess.run([*command, "-o", str(tmp_path / "q.npz"), "-q"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    plain = subprocess.run([*command, "-o", str(tmp_path / "p.npz")], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and plain.stderr.splitlines() == [
        "using CPU", "12 samples, 1280 features (12 computed, 0 from cache)", f"wrote {tmp_path / 'p.npz'}"]  # fmt: skip
