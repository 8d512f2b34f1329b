"""The training profile in model files, and the warning when inputs look unlike the training images."""

from __future__ import annotations

import json
import shutil
import zipfile

import cv2
import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.learn.model_file import TrainedModel
from bloodcli.pipeline.data_profile import deviations, framing, input_warning, profile_images


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory):
    """A model trained on single-cell PBC crops (sample_data), saved to a file."""
    path = tmp_path_factory.mktemp("model") / "pbc.bcm"
    result = CliRunner().invoke(app, ["train", str(SAMPLE / "pbc"), "-o", str(path), "--no-cache"])
    assert result.exit_code == 0, result.output
    return path


def test_model_file_records_the_training_profile(crop_model):
    with zipfile.ZipFile(crop_model) as archive:
        profile = json.loads(archive.read("manifest.json"))["training_profile"]
    assert profile["n_images"] == 60
    assert profile["height"][1] == pytest.approx(363, abs=6) and profile["width"][1] == pytest.approx(360, abs=6)
    assert 40 < profile["cell_diameter"][1] < 250
    height_per_cell, width_per_cell = framing(profile)
    assert 1.2 < height_per_cell < 8 and 1.2 < width_per_cell < 8
    assert TrainedModel.load(crop_model).profile == profile


def test_predict_warns_once_on_whole_smears_given_to_a_crop_model(crop_model):
    result = CliRunner().invoke(app, ["predict", str(crop_model), str(SAMPLE / "bccd" / "JPEGImages")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "look unlike the model's training images" in line]
    assert len(lines) == 1 and "image width (px) 640" in lines[0]
    assert len(result.stdout.splitlines()) == 1 + len(list((SAMPLE / "bccd" / "JPEGImages").glob("*.jpg")))


def test_predict_stays_quiet_on_inputs_like_the_training_images(crop_model):
    result = CliRunner().invoke(app, ["predict", str(crop_model), str(SAMPLE / "pbc" / "neutrophil")])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_predict_warns_on_crops_at_another_magnification(crop_model, tmp_path):
    for image in sorted((SAMPLE / "pbc" / "neutrophil").glob("*.jpg"))[:6]:
        rgb = cv2.imread(str(image))
        cv2.imwrite(str(tmp_path / f"{image.stem}.png"), cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    result = CliRunner().invoke(app, ["predict", str(crop_model), str(tmp_path)])
    assert result.exit_code == 0 and "look unlike the model's training images" in result.stderr


def test_evaluate_reports_the_warning_in_its_json(crop_model, tmp_path):
    smears = tmp_path / "smears"
    (smears / "neutrophil").mkdir(parents=True)
    for image in sorted((SAMPLE / "bccd" / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(image, smears / "neutrophil" / image.name)
    result = CliRunner().invoke(app, ["evaluate", str(crop_model), str(smears), "--json"])
    assert result.exit_code == 0, result.output
    assert "look unlike" in json.loads(result.stdout)["input_warning"]
    same = CliRunner().invoke(app, ["evaluate", str(crop_model), str(SAMPLE / "pbc"), "--json"])
    assert same.exit_code == 0 and json.loads(same.stdout)["input_warning"] is None


def test_older_model_files_have_no_profile_and_never_warn():
    from conftest import ROOT

    model = TrainedModel.load(ROOT / "tests" / "data" / "model_0.1_svm.bcm")
    assert model.profile is None
    result = CliRunner().invoke(app, ["predict", str(ROOT / "tests" / "data" / "model_0.1_svm.bcm"), str(SAMPLE / "bccd" / "JPEGImages")])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_colour_far_outside_the_training_range_is_flagged():
    rng = np.random.default_rng(0)
    pink = [np.clip(rng.normal((220, 180, 190), 5, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(8)]
    blue = [np.clip(rng.normal((120, 175, 230), 5, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(8)]
    training = profile_images(pink)
    assert deviations(training, profile_images(pink[:4])) == []
    assert {d.quantity for d in deviations(training, profile_images(blue))} == {"red", "blue"}
    assert input_warning(training, profile_images(blue)).startswith("the inputs look unlike")
