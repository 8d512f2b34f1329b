"""What a new user hit (crashes, silent successes, noise, unreadable text): one test per defect, each failing before its fix."""

import io
import json
import shutil
import subprocess
import sys

import pytest
from conftest import SAMPLE
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import ResourceUnavailableError, UsageError
from bloodcli.features import EXTRACTORS, deep
from bloodcli.features.weights_file import weights_alpha
from bloodcli.pipeline import featurize as featurize_module
from bloodcli.report.tables import comparison_table

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


def test_a_bad_image_stops_a_parallel_run_with_one_line(tmp_path):
    dataset = tmp_path / "cells"
    shutil.copytree(SAMPLE / "pbc", dataset)
    first = sorted((dataset / "eosinophil").glob("*.jpg"))[0]
    (dataset / "eosinophil" / "0_truncated.jpg").write_bytes(first.read_bytes()[:3000])
    result = subprocess.run([sys.executable, "-m", "bloodcli", "extract", str(dataset), "-o", str(tmp_path / "f.npz"),
                             "-j", "2", "--no-cache"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 3
    [line] = result.stderr.splitlines()  # no joblib warning after it
    assert line.startswith(f"error: {dataset / 'eosinophil' / '0_truncated.jpg'}: corrupt or truncated image"), line


def test_compare_tables_are_never_cut(small_dataset):
    result = run("compare", small_dataset, "-f", "glcm+shape+color", "glcm+shape+color+lbp", "-m", "logreg",
                 "--folds", "2", "--repeats", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout and "glcm+shape+color+lbp" in result.stdout  # a pipe gets the whole table
    data = json.loads(run("compare", small_dataset, "-f", "glcm+shape+color", "glcm+shape+color+lbp", "-m", "logreg",
                          "--folds", "2", "--repeats", "1", "--json").stdout)  # fmt: skip
    for width in (80, 120):  # a terminal narrower than the table: cells wrap, nothing is elided
        console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
        console.print(comparison_table(data))
        assert "…" not in console.export_text()


WEIGHTS = SAMPLE / "weights"


@pytest.mark.parametrize("name, backbone, alpha", [
    ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5", "mobilenetv2", 0.35),
    ("mobilenet_2_5_224_tf_no_top.h5", "mobilenet", 0.25),
])  # fmt: skip
def test_the_width_multiplier_is_read_from_the_weights_file(tmp_path, name, backbone, alpha):
    renamed = tmp_path / "weights.h5"  # the tensor shapes tell, not the file name
    shutil.copy(WEIGHTS / name, renamed)
    assert weights_alpha(renamed, backbone) == alpha
    assert EXTRACTORS[backbone](weights=str(renamed)).params["alpha"] == alpha
    with pytest.raises(UsageError, match=f"alpha {alpha}, but {backbone}.alpha=0.75 was asked"):
        EXTRACTORS[backbone](weights=str(renamed), alpha=0.75)


def test_an_offline_imagenet_failure_names_the_shipped_weights_and_keeps_its_cause(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
                        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5: None -- [Errno -2] Name or service not known")  # fmt: skip

    extractor = EXTRACTORS["mobilenetv2"]()
    with pytest.raises(ResourceUnavailableError) as failure:
        deep._instantiate(extractor, offline, {}, keras=None)
    message = str(failure.value)
    assert "Name or service not known)" in message and "--weights PATH.h5" in message
    assert str(WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5") in message


def test_help_and_listings_read_well(tmp_path, small_dataset):
    help_text = " ".join(run("extract", "--help").stdout.replace("│", " ").split())
    assert "(default: $BLOODCLI_CACHE_DIR or ~/.cache/bloodcli)" in help_text and "(default: all cores)" in help_text
    listing = run("features").stdout
    assert "mobilenetv2" in listing and "weights_sha256" not in listing  # filled in by bloodcli, not a -F option
    for index, image in enumerate(sorted((small_dataset / "lymphocyte").glob("*.jpg"))):
        Image.open(image).resize((100 + index, 100)).save(image)
    info = run("info", small_dataset)
    [sizes] = [line for line in info.stdout.splitlines() if line.startswith("image sizes:")]
    assert sizes.endswith("and 2 other sizes (2 images) from 104x100 to 105x100"), sizes


@pytest.mark.parametrize("args, message", [
    (("segment", SAMPLE / "chula" / "JPEGImages", "--out-dir", "seg", "--nucleus-sat", "300"), "nucleus_sat_min must be a saturation in [0, 255], got 300"),
    (("segment", SAMPLE / "chula" / "JPEGImages", "--out-dir", "seg", "--param", "blur=nan"), "blur must be a non-negative number, got nan"),
    (("cache", "clean", "--extractor", "glcmm"), "unknown feature extractor(s): glcmm"),
])  # fmt: skip
def test_out_of_range_settings_and_unknown_names_are_refused(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "seg").exists()


@pytest.mark.parametrize("option, folder, message", [
    ("--evaluate", SAMPLE / "pbc", "no image has its truth there"),
    ("--masks", SAMPLE / "pbc" / "platelet", "no image has its mask there"),
])  # fmt: skip
def test_a_truth_folder_that_matches_no_image_is_refused_before_segmenting(tmp_path, option, folder, message):
    result = run("segment", SAMPLE / "chula" / "JPEGImages", "--out-dir", tmp_path / "seg", option, folder)
    assert result.exit_code == 3 and f"{option} {folder}: {message}" in result.stderr, result.output
    assert not (tmp_path / "seg").exists()


def test_parallel_runs_in_one_process_resolve_relative_paths_where_the_caller_is(tmp_path, monkeypatch):
    """Worker pools outlive a call and keep the directory they started in: relative paths must resolve in the
    caller's current directory (a library caller may change directory between calls)."""
    (tmp_path / "first").mkdir()
    shutil.copytree(SAMPLE / "pbc", tmp_path / "second" / "cells")
    monkeypatch.chdir(tmp_path / "first")
    assert run("extract", SAMPLE / "pbc", "-o", "f.npz", "-j", "2", "--no-cache").exit_code == 0  # workers start here
    assert run("segment", SAMPLE / "pbc" / "platelet", "--out-dir", "seg", "-j", "2").exit_code == 0
    monkeypatch.chdir(tmp_path / "second")
    extracted = run("extract", "cells", "-o", "f.npz", "-j", "2", "--no-cache")
    assert extracted.exit_code == 0, extracted.output
    segmented = run("segment", "cells/platelet", "--out-dir", "seg", "-j", "2")
    assert segmented.exit_code == 0, segmented.output
    assert len(list((tmp_path / "second" / "seg" / "labels").iterdir())) == 15
