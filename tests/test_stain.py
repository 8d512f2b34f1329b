"""Stain and scale normalisation: a reference maps to itself; a re-stained copy moves back to it."""

import json

import cv2
import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.imaging.preprocessing import Preprocessing, fit_references
from bloodcli.imaging.stain import (  # fmt: skip
    _central_cell,
    _stained,
    cell_diameter,
    frame_cell,
    macenko_statistics,
    normalise_stain,
    reinhard_statistics,
    rescale_to_cell_diameter,
)
from bloodcli.io.images import read_image

REFERENCE = SAMPLE / "pbc" / "neutrophil" / "BNE_225075.jpg"


def _restain(rgb: np.ndarray) -> np.ndarray:
    """Another lab's look: stronger, bluer stain (scaled optical density per channel)."""
    od = -np.log((rgb.astype(np.float64) + 1) / 256)
    od *= np.array([1.35, 1.1, 0.75])
    return np.clip(256 * np.exp(-od) - 1, 0, 255).astype(np.uint8)


def _error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over the reference's stained pixels (where stain matters)."""
    stained = _stained(read_image(REFERENCE))
    return float(np.abs(a.astype(float) - b.astype(float))[stained].mean())


@pytest.mark.parametrize("method, statistics", [("reinhard", reinhard_statistics), ("macenko", macenko_statistics)])
def test_reference_maps_to_itself(method, statistics):
    reference = read_image(REFERENCE)
    assert _error(normalise_stain(reference, method, statistics(reference)), reference) < 1.0


@pytest.mark.parametrize(
    "method, statistics, kept", [("reinhard", reinhard_statistics, 0.5), ("macenko", macenko_statistics, 0.75)]
)
def test_restained_copy_moves_close_to_the_reference(method, statistics, kept):
    reference = read_image(REFERENCE)
    restained = _restain(reference)
    normalised = normalise_stain(restained, method, statistics(reference))
    assert _error(normalised, reference) < kept * _error(restained, reference)


def test_blank_image_is_left_unchanged_by_macenko():
    blank = np.full((40, 40, 3), 240, np.uint8)
    target = macenko_statistics(read_image(REFERENCE))
    assert (normalise_stain(blank, "macenko", target) == blank).all()


def test_cell_rescaled_to_target_diameter():
    image = read_image(REFERENCE)
    original = cell_diameter(image)
    enlarged = cv2.resize(image, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)
    assert cell_diameter(enlarged) == pytest.approx(1.5 * original, rel=0.1)
    assert cell_diameter(rescale_to_cell_diameter(enlarged, original)) == pytest.approx(original, rel=0.1)


def test_tight_and_loose_crops_are_framed_alike():
    image = read_image(REFERENCE)  # a wide field: the cell fills about a third of it
    diameter = cell_diameter(image)
    framed = frame_cell(image, 1.5)
    assert framed.shape[0] == framed.shape[1] == pytest.approx(1.5 * cell_diameter(framed), rel=0.05)  # a fixed point
    ys, xs = np.nonzero(_central_cell(framed))
    assert abs(ys.mean() - framed.shape[0] / 2) < 0.1 * diameter and abs(xs.mean() - framed.shape[1] / 2) < 0.1 * diameter
    # A tight, off-centre crop (as a box annotation gives) needs mirrored borders but frames the same cell alike.
    cy, cx = np.argwhere(_central_cell(image)).mean(axis=0).astype(int)
    r = int(0.6 * diameter)
    tight = frame_cell(image[cy - r : cy + r + 10, cx - r - 5 : cx + r], 1.5)
    assert tight.shape[0] == pytest.approx(framed.shape[0], rel=0.05)
    masks = [cv2.resize(_central_cell(f).astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST) > 0 for f in (tight, framed)]
    assert (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum() > 0.6  # the cell sits alike in both frames
    assert frame_cell(np.full((40, 50, 3), 230, np.uint8), 1.5).shape == (40, 50, 3)  # no cell: unchanged


def test_fitting_fills_references_and_refuses_unfitted_use():
    images = [read_image(p) for p in sorted((SAMPLE / "pbc" / "lymphocyte").glob("*.jpg"))[:5]]
    fitted = fit_references(Preprocessing(stain="macenko", cell_diameter="auto"), images)
    assert len(fitted.stain_target) == 8 and fitted.cell_diameter > 20 and not fitted.needs_fitting
    assert Preprocessing.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted
    with pytest.raises(Exception, match="needs a reference"):
        Preprocessing(stain="reinhard").apply(images[0])


def test_model_stores_the_fitted_references_for_predict(tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.bcm"
    result = runner.invoke(app, ["train", str(SAMPLE / "pbc"), "-m", "logreg", "-o", str(model), "--stain", "reinhard",
                                 "--cell-diameter", "auto", "--cell-frame", "1.5", "-f", "color,shape", "-j", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    preprocessing = json.loads(runner.invoke(app, ["info", str(model), "--json"]).stdout)["features"]["preprocessing"]
    assert preprocessing["stain"] == "reinhard" and len(preprocessing["stain_target"]) == 6
    assert preprocessing["cell_diameter"] > 20 and preprocessing["cell_frame"] == 1.5
    predicted = runner.invoke(app, ["predict", str(model), str(SAMPLE / "pbc" / "platelet")])
    assert predicted.exit_code == 0 and predicted.stdout.count("platelet") >= 10
