"""The feature envelope: inputs unlike every training class are counted and warned about; known ones are not."""

import shutil
import zipfile

import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import ModelFileError
from bloodcli.learn.model_file import ENVELOPE_ENTRY, TrainedModel
from bloodcli.learn.novelty import FeatureEnvelope

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_held_out_rows_of_known_classes_stay_inside_and_far_rows_fall_outside():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 20))
    labels = np.repeat(["a", "b", "c"], 400)
    values = centres[np.repeat(np.arange(3), 400)] + rng.normal(0, 1, (1200, 20))
    envelope = FeatureEnvelope.fit(values, labels)
    fresh = centres[np.repeat(np.arange(3), 300)] + rng.normal(0, 1, (900, 20))
    assert envelope.outside(fresh).mean() < 0.03  # ~1 % by construction
    assert envelope.warning(fresh) is None
    unseen = rng.normal(0, 5, 20) + rng.normal(0, 1, (50, 20))
    assert envelope.outside(unseen).all()
    assert envelope.warning(unseen).startswith("50 of 50 inputs lie farther from every training class")
    assert envelope.outside(np.full((1, 20), np.nan)).all()


@pytest.fixture
def three_class_model(tmp_path):
    """A model of eosinophils, lymphocytes and neutrophils (10 each); the other 5 of each are held out."""
    train, held_out = tmp_path / "train", tmp_path / "held_out"
    for cls in ("eosinophil", "lymphocyte", "neutrophil"):
        images = sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))
        (train / cls).mkdir(parents=True)
        held_out.mkdir(exist_ok=True)
        for image in images[:10]:
            shutil.copy(image, train / cls / image.name)
        for image in images[10:]:
            shutil.copy(image, held_out / image.name)
    model = tmp_path / "m.bcm"
    assert run("train", train, "-m", "logreg", "-o", model).exit_code == 0
    return model, held_out


def test_cells_of_another_lab_warn_and_held_out_cells_of_the_training_lab_do_not(three_class_model):
    model, held_out = three_class_model
    known = run("predict", model, held_out)
    assert known.exit_code == 0 and "farther from every training class" not in known.stderr, known.stderr
    other_lab = run("predict", model, SAMPLE / "bccd")  # every VOC box of 8 smears of another lab
    assert other_lab.exit_code == 0, other_lab.output
    assert "101 of 101 inputs lie farther from every training class" in other_lab.stderr, other_lab.stderr


def test_a_damaged_envelope_is_a_damaged_model_file(three_class_model, tmp_path):
    model, _ = three_class_model
    assert TrainedModel.load(model).envelope is not None
    damaged = tmp_path / "damaged.bcm"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == ENVELOPE_ENTRY:
                envelope = FeatureEnvelope.from_bytes(data, 192, 3)
                data = FeatureEnvelope(envelope.center[:5], envelope.scale, envelope.centroids, envelope.limit, 30).to_bytes()
            target.writestr(item, data)
    with pytest.raises(ModelFileError, match="feature_envelope.npz is damaged"):
        TrainedModel.load(damaged)
    assert run("predict", damaged, SAMPLE / "pbc" / "platelet").exit_code == 4


def test_a_limit_from_few_training_rows_expects_more_crossings():
    rng = np.random.default_rng(1)
    envelope = FeatureEnvelope.fit(rng.normal(0, 1, (12, 5)), np.repeat(["a", "b"], 6))
    assert envelope.expected_share == 1 / 13  # a new row beats the largest of 12 held-out distances that often
    values = rng.normal(0, 1, (10, 5))
    values[:3] = envelope.center + 0.9 * envelope.limit * 5 * envelope.scale  # 3 of 10 just outside
    assert envelope.outside(values)[:3].all() and envelope.warning(values) is None


def test_analyze_warns_when_the_white_cells_of_another_lab_lie_outside(tmp_path):
    """Crops resized to the training size hide the lab from the image profile; the feature envelope still sees it."""
    model = tmp_path / "pbc.bcm"
    assert run("train", SAMPLE / "pbc", "-m", "logreg", "-o", model).exit_code == 0
    result = run("analyze", *sorted((SAMPLE / "bccd" / "JPEGImages").glob("*.jpg")), "--model", model, "--out-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "inputs lie farther from every training class" in result.stderr, result.stderr
