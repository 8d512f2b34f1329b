"""CNN framing (:mod:`bloodcli.learn.cnn.framing`): every image cut to the same number of red-cell diameters.

Synthetic smears of red discs of known diameter on a light slide, with one dark "white cell" in a
known place: the framing measured, the square cut, and what stays the same when the magnification
or the crop changes. No network is trained here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import UsageError
from bloodcli.io.datasets import Sample
from bloodcli.learn.cnn.framing import frame, measure_framing
from bloodcli.learn.cnn.images import load_images
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.segmentation.scale import estimate_rbc_diameter

RBC = 40  # red-cell diameter of the synthetic smear, pixels


def smear(height: int = 360, width: int = 480, scale: float = 1.0) -> np.ndarray:
    """Red discs on a grid with a white cell at the centre, drawn at ``scale`` (so sizes scale exactly)."""
    image = np.full((round(height * scale), round(width * scale), 3), 235, np.uint8)
    radius = RBC * scale / 2
    for y in np.arange(radius + 4 * scale, image.shape[0] - radius, RBC * scale * 1.3):
        for x in np.arange(radius + 4 * scale, image.shape[1] - radius, RBC * scale * 1.3):
            cv2.circle(image, (round(x), round(y)), round(radius), (205, 120, 130), -1)
    cv2.circle(image, (image.shape[1] // 2, image.shape[0] // 2), round(RBC * scale * 0.8), (90, 40, 140), -1)
    return image


def test_the_square_is_framing_times_the_red_cell_diameter_centred_on_the_cell():
    image = smear()
    diameter = estimate_rbc_diameter(image)
    assert diameter == pytest.approx(RBC, rel=0.1)
    framed = frame(image, None, 4.0, diameter)
    assert framed.shape[0] == framed.shape[1] == 2 * round(4.0 * diameter / 2)
    centre = framed[framed.shape[0] // 2, framed.shape[1] // 2]
    assert tuple(centre) == (90, 40, 140)  # the white cell is in the middle


def test_a_box_is_framed_in_the_whole_smear_around_its_centre():
    image = smear()
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    box = (cx - 30, cy - 30, cx + 30, cy + 30)  # a tight box around the white cell
    framed_box = frame(image, box, 4.0, RBC)
    framed_all = frame(image, None, 4.0, RBC)
    np.testing.assert_array_equal(framed_box, framed_all)  # the smear's own pixels around the box, not mirrored ones


def test_without_red_cells_the_image_is_kept_as_it_is():
    image = np.full((50, 60, 3), 200, np.uint8)
    assert frame(image, (5, 5, 25, 35), 4.0, None).shape == (30, 20, 3)


def white_cell_share(network_input: np.ndarray) -> float:
    """Share of the input the dark white cell covers: how large the network sees it."""
    return float((network_input[..., 1] < 80).mean())


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_magnification_drops_out_once_framed_and_resized(scale):
    """The same smear imaged at another magnification shows the white cell at the same size to the network."""
    shares, unframed = [], []
    for factor in (1.0, scale):
        image = smear(scale=factor)
        framed = frame(image, None, 5.0, estimate_rbc_diameter(image))
        shares.append(white_cell_share(cv2.resize(framed, (64, 64), interpolation=cv2.INTER_AREA)))
        cy, cx = image.shape[0] // 2, image.shape[1] // 2
        unframed.append(white_cell_share(cv2.resize(image[cy - 80 : cy + 80, cx - 80 : cx + 80], (64, 64))))
    assert shares[1] == pytest.approx(shares[0], rel=0.25)  # estimates of a drawn grid move by a pixel or two
    assert shares[0] > 0.02
    assert unframed[1] == pytest.approx(unframed[0] * scale**2, rel=0.3)  # what framing takes away: 4x or 1/4


def test_training_framing_is_the_median_side_in_red_cell_diameters(tmp_path):
    samples = []
    for index, side in enumerate((240, 300, 360)):
        path = tmp_path / f"crop{index}.png"
        cv2.imwrite(str(path), smear(side, side))
        samples.append(Sample(path, "a"))
    assert measure_framing(samples) == pytest.approx(300 / RBC, rel=0.1)
    boxed = [Sample(samples[2].path, "a", box=(90, 90, 270, 270))]  # a box of the 360 px smear: its own side counts
    assert measure_framing(boxed) == pytest.approx(180 / RBC, rel=0.1)


def test_framed_loading_gives_the_same_input_for_a_crop_and_its_box_in_the_smear(tmp_path):
    whole = smear(480, 640)
    cv2.imwrite(str(tmp_path / "smear.png"), cv2.cvtColor(whole, cv2.COLOR_RGB2BGR))
    crop = whole[60:420, 140:500]  # a 360 px crop centred on the white cell
    cv2.imwrite(str(tmp_path / "crop.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    box = Sample(tmp_path / "smear.png", "a", box=(300, 220, 340, 260))
    images, kept, _, failures = load_images([Sample(tmp_path / "crop.png", "a"), box], 64, framing=6.0)
    assert list(kept) == [0, 1] and not failures
    assert white_cell_share(images[1]) == pytest.approx(white_cell_share(images[0]), rel=0.15)
    tight = load_images([box], 64)[0][0]  # the box as it is: the cell fills the frame
    assert white_cell_share(tight) > 3 * white_cell_share(images[1])


def test_framing_setting_is_checked_and_measured_once():
    with pytest.raises(UsageError, match="--framing"):
        CNNSettings(weights="none", framing=0.5)
    with pytest.raises(UsageError, match="--framing"):
        CNNSettings(weights="none", framing="tight")
    fixed = CNNSettings(weights="none", framing=3.0)
    assert fixed.framed_for([]) is fixed and fixed.framing_ratio == 3.0
    assert CNNSettings(weights="none", framing="none").framing_ratio is None
    assert CNNSettings(weights="none").framed_for([]).framing == "none"  # nothing to measure on: images as they are


def test_cli_refuses_a_bad_framing_before_any_image(tmp_path):
    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing"), "-m", "cnn", "--framing", "0.2", "-o", str(tmp_path / "m.bcm")])
    assert result.exit_code == 2 and "--framing" in result.output
    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing"), "--framing", "4", "-o", str(tmp_path / "m.bcm")])
    assert result.exit_code == 2 and "only apply with -m cnn" in result.output
