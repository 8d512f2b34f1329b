"""What a new user hit (crashes, silent successes, noise, unreadable text): one test per defect, each failing before its fix."""

import shutil

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
