"""Segmentation that reads its sizes and thresholds from each image: any magnification, another lab, point truth."""

import json

import cv2
import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import InputDataError
from bloodcli.io.images import read_image
from bloodcli.segmentation.scale import REFERENCE_DIAMETER, estimate_rbc_diameter
from bloodcli.segmentation.scoring import (
    point_coverage,
    point_hits,
    read_points,
    score_image,
    summarize,
)
from bloodcli.segmentation.smear import CellObject, Segmentation, segment_image

CHULA = SAMPLE / "chula"
#: Default-settings counts of the sample images from the second lab, and (points, points alone in an object, merged objects).
CHULA_GOLDEN = {
    "285": ({"RBC": 44, "WBC": 0, "platelet": 1}, (43, 42, 0)),
    "298": ({"RBC": 77, "WBC": 0, "platelet": 3}, (79, 76, 0)),
    "264": ({"RBC": 130, "WBC": 0, "platelet": 0}, (133, 122, 2)),
    "208": ({"RBC": 116, "WBC": 0, "platelet": 14}, (20, 19, 0)),  # only 20 of its red cells are marked
}


def synthetic_smear(radius: int, spacing: float) -> tuple[np.ndarray, int]:
    """Pale-centred discs on a light slide: two alone, two touching pairs and a touching triple (9 cells)."""
    width, height = max(640, 16 * radius), max(480, 12 * radius)
    image = np.full((height, width, 3), (228, 222, 226), np.uint8)
    centres = [(0.15 * width, 0.25 * height), (0.15 * width, 0.75 * height)]
    for y in (0.25 * height, 0.75 * height):
        centres += [(0.45 * width - spacing * radius / 2, y), (0.45 * width + spacing * radius / 2, y)]
    for angle in np.deg2rad([90, 210, 330]):
        distance = spacing * radius / np.sqrt(3)
        centres.append((0.78 * width + distance * np.cos(angle), 0.5 * height + distance * np.sin(angle)))
    for x, y in centres:
        centre = (int(round(x)), int(round(y)))
        cv2.circle(image, centre, radius, (205, 140, 150), -1, lineType=cv2.LINE_AA)
        cv2.circle(image, centre, max(1, radius // 3), (215, 170, 178), -1, lineType=cv2.LINE_AA)  # central pallor
    return cv2.GaussianBlur(image, (0, 0), 1.0), len(centres)


@pytest.mark.parametrize("radius", [8, 10, 12, 16, 20, 25, 30, 40, 50])
@pytest.mark.parametrize("spacing", [2.0, 1.9], ids=["touching", "overlapping"])
def test_touching_discs_are_counted_exactly_at_every_size(radius, spacing):
    image, cells = synthetic_smear(radius, spacing)
    seg = segment_image(image)
    assert seg.counts == {"RBC": cells, "WBC": 0, "platelet": 0}
    assert 1.9 * radius <= seg.rbc_diameter <= 2.3 * radius  # the size was read from the image


def test_the_size_estimate_follows_the_magnification():
    image = read_image(CHULA / "JPEGImages" / "298.jpg")
    diameter = estimate_rbc_diameter(image)
    for scale in (0.5, 2.0):
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        assert estimate_rbc_diameter(resized) == pytest.approx(scale * diameter, rel=0.08)


@pytest.mark.parametrize("stem", sorted(CHULA_GOLDEN))
def test_golden_counts_and_point_scores_on_the_second_lab(stem):
    seg = segment_image(read_image(CHULA / "JPEGImages" / f"{stem}.jpg"))
    counts, hits = CHULA_GOLDEN[stem]
    assert seg.counts == counts
    assert point_hits(seg, read_points(CHULA / "points" / f"{stem}.txt")) == hits


def test_counts_survive_rescaling():
    image = read_image(CHULA / "JPEGImages" / "285.jpg")
    reference = segment_image(image).counts["RBC"]
    for scale in (0.5, 1.5):
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        assert abs(segment_image(resized).counts["RBC"] - reference) <= 0.1 * reference


@pytest.mark.parametrize("colour", [(255, 255, 255), (226, 220, 224), (0, 0, 0)], ids=["white", "slide", "black"])
def test_blank_and_background_images_have_no_cells(colour):
    seg = segment_image(np.full((240, 320, 3), colour, np.uint8))
    assert seg.counts == {"RBC": 0, "WBC": 0, "platelet": 0}
    assert seg.rbc_diameter == REFERENCE_DIAMETER  # nothing to measure: the reference size


def _hand_made() -> Segmentation:
    """Three red cells (ids 1-3) and a platelet (4) on a 20x40 label image."""
    labels = np.zeros((20, 40), np.uint16)
    labels[2:10, 2:10], labels[2:10, 12:20], labels[12:18, 2:30], labels[14:16, 34:36] = 1, 2, 3, 4
    objects = [CellObject(i, cls, (0, 0, 1, 1), (0.0, 0.0), 1) for i, cls in ((1, "RBC"), (2, "RBC"), (3, "RBC"), (4, "platelet"))]
    return Segmentation(labels, objects, "watershed", rbc_diameter=8.0)


def test_point_scoring_on_a_hand_made_case():
    seg = _hand_made()
    # cell 1: one point (hit); cell 2: none; cell 3: two points (merged); one on the platelet, one on background,
    # one outside the image
    points = np.array([[5, 5], [5, 14], [20, 14], [34, 14], [30, 5], [100, 100]], float)
    assert point_hits(seg, points) == (6, 1, 1)
    score = score_image(seg, "hand-made", points=points)
    assert (score.rbc, score.rbc_points, score.rbc_point_hits, score.rbc_merged) == (3, 6, 1, 1)
    summary = summarize([score])
    assert summary["rbc_point_recall"] == pytest.approx(1 / 6) and summary["rbc_points_count_mape"] == pytest.approx(0.5)
    assert 0 < point_coverage(seg, points) < 1
    assert point_coverage(seg, np.argwhere(seg.labels > 0)[:, ::-1].astype(float)) == 1.0  # a point on every pixel


def test_point_files_are_read_and_bad_lines_named(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("10 20 0\n\n30.5 40\n")
    np.testing.assert_array_equal(read_points(good), [[10, 20], [30.5, 40]])
    bad = tmp_path / "b.txt"
    bad.write_text("10 20 0\nten 20\n")
    with pytest.raises(InputDataError, match="b.txt: line 2"):
        read_points(bad)


def test_cli_scores_against_point_files_and_reports_the_size(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(CHULA / "JPEGImages"), "--out-dir", str(out), "--evaluate", str(CHULA), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["n_with_points"] == 4 and metrics["rbc_point_recall"] > 0.9
    assert metrics["n_points_complete"] == 3  # 208 marks only some of its cells
    assert metrics["rbc_points_count_mape_complete"] < 0.05
    counts = (out / "counts.csv").read_text().splitlines()
    assert counts[0].endswith(",rbc_diameter") and all(float(line.rsplit(",", 1)[1]) > 20 for line in counts[1:])


def test_a_given_diameter_replaces_the_estimate():
    from bloodcli.segmentation.smear import SegmentationParams

    image, cells = synthetic_smear(20, 2.0)
    told = segment_image(image, params=SegmentationParams(rbc_diameter=42))
    assert told.rbc_diameter == 42.0 and told.counts["RBC"] == cells
    misled = segment_image(image, params=SegmentationParams(rbc_diameter=100))  # cells taken for 2.4x their size
    assert misled.rbc_diameter == 100.0 and misled.counts["RBC"] < cells  # analysed too coarsely, they merge


def test_pixel_size_or_diameter_replace_the_estimate_on_the_command_line(tmp_path):
    image = CHULA / "JPEGImages" / "285.jpg"
    run = lambda *args: CliRunner().invoke(app, ["segment", str(image), "--out-dir", str(tmp_path / "o"), "--json", *args])  # noqa: E731
    data = json.loads(run("--pixel-size", "0.2").stdout)
    assert data["params"]["rbc_diameter"] == pytest.approx(7.5 / 0.2)
    assert json.loads(run("--rbc-diameter", "40").stdout)["params"]["rbc_diameter"] == 40
    both = run("--pixel-size", "0.2", "--rbc-diameter", "40")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_extract_draws_the_single_cell_masks(tmp_path):
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, ["extract", str(SAMPLE / "pbc"), "-o", str(tmp_path / "f.npz"), "-f", "shape",
                                      "--masks-out", str(out), "--no-cache"])  # fmt: skip
    assert result.exit_code == 0, result.output
    drawn = sorted(out.rglob("*.png"))
    assert len(drawn) == 60 and {p.parent.name for p in drawn} == {"eosinophil", "lymphocyte", "neutrophil", "platelet"}
    overlay = read_image(drawn[0])
    assert ((overlay == (0, 200, 0)).all(axis=2)).any()  # the cell outline is there
