"""Smear segmentation: golden counts, edge cases, output files, CLI contract and scoring."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
from conftest import SAMPLE, require_shared
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import UsageError
from bloodcli.io.datasets import load_dataset, read_voc_boxes
from bloodcli.io.images import read_image
from bloodcli.segmentation.scoring import (
    ImageScore,
    box_iou,
    mask_overlap,
    match_boxes,
    score_image,
    summarize,
)
from bloodcli.segmentation.smear import (
    CLASSES,
    SegmentationParams,
    draw_overlay,
    segment_image,
)

BCCD = SAMPLE / "bccd"
runner = CliRunner()

# Counts of the final default parameters (watershed), pinned; VOC counts beside them for scale.
GOLDEN = {
    "BloodImage_00117": {"RBC": 11, "WBC": 1, "platelet": 2},  # VOC: 10, 1, 2 (the lower-left cells are unboxed; pale ones at the bottom edge are missed)
    "BloodImage_00189": {"RBC": 13, "WBC": 1, "platelet": 0},  # VOC: 13, 1, 0
    "BloodImage_00307": {"RBC": 12, "WBC": 1, "platelet": 0},  # VOC: 12, 1, 1
    "BloodImage_00391": {"RBC": 13, "WBC": 1, "platelet": 0},  # VOC: 14, 1, 0
}


def image(stem: str) -> np.ndarray:
    return read_image(BCCD / "JPEGImages" / f"{stem}.jpg")


def voc_counts(stem: str) -> dict[str, int]:
    boxes = read_voc_boxes(BCCD / "Annotations" / f"{stem}.xml")[1]
    return {cls: sum(n == voc for n, _ in boxes) for cls, voc in (("RBC", "RBC"), ("WBC", "WBC"), ("platelet", "Platelets"))}


@pytest.fixture(scope="module")
def segmentations():
    return {stem: segment_image(image(stem), "watershed") for stem in GOLDEN}


@pytest.mark.parametrize("stem", sorted(GOLDEN))
def test_golden_counts_match_and_are_close_to_voc(segmentations, stem):
    counts = segmentations[stem].counts
    assert counts == GOLDEN[stem]
    truth = voc_counts(stem)
    assert counts["WBC"] == truth["WBC"]
    assert abs(counts["platelet"] - truth["platelet"]) <= 1
    # VOC boxes miss some red cells: the count may exceed them, but only by a few
    assert -2 <= counts["RBC"] - truth["RBC"] <= 5


def test_white_cell_mask_matches_ground_truth(segmentations):
    for stem, seg in segmentations.items():
        truth = cv2.imread(str(BCCD / "wbc_masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
        dice, _ = mask_overlap(seg.class_mask("WBC"), truth)
        assert dice > 0.85, stem


def test_object_table_is_consistent(segmentations):
    seg = segmentations["BloodImage_00117"]
    assert seg.labels.dtype == np.uint16 and seg.labels.shape == (480, 640)
    assert [o.object_id for o in seg.objects] == list(range(1, len(seg.objects) + 1))
    assert int(seg.labels.max()) == len(seg.objects)
    for obj in seg.objects:
        xmin, ymin, xmax, ymax = obj.bbox
        assert obj.cls in CLASSES
        assert obj.area == int((seg.labels == obj.object_id).sum())
        assert xmin <= obj.centroid[0] < xmax and ymin <= obj.centroid[1] < ymax
        assert obj.shape["area"] == obj.area and 0 < obj.shape["solidity"] <= 1


def test_hsv_method_finds_the_same_white_cells(segmentations):
    for stem, seg in segmentations.items():
        hsv = segment_image(image(stem), "hsv")
        assert hsv.counts["WBC"] == seg.counts["WBC"]
        assert hsv.counts["RBC"] <= seg.counts["RBC"]  # components never split touching cells


def test_clumps_are_cut_into_cell_sized_parts():
    from bloodcli.segmentation.red_cells import split_clumps

    labels = np.zeros((100, 200), np.int32)
    cv2.circle(labels, (40, 50), 20, 1, -1)  # one cell: left whole
    cv2.ellipse(labels, (130, 50), (45, 20), 0, 0, 360, 2, -1)  # two fused cells, no waist to cut at
    typical = np.pi * 20**2
    split = split_clumps(labels, typical, factor=1.8)
    assert len(np.unique(split[labels == 1])) == 1
    left, right = np.unique(split[labels == 2])
    sizes = [(split == left).sum(), (split == right).sum()]
    assert abs(sizes[0] - sizes[1]) < 0.2 * sum(sizes)  # two halves, not a sliver
    assert np.array_equal(split > 0, labels > 0)  # no pixel gained or lost
    assert np.array_equal(split_clumps(labels, 0.0 + typical * 10, factor=2.0), labels)


def blank(value) -> np.ndarray:
    return np.full((240, 320, 3), value, np.uint8)


@pytest.mark.parametrize("rgb", [blank(0), blank(255), blank((222, 226, 214))], ids=["black", "white", "background"])
@pytest.mark.parametrize("method", ["hsv", "watershed"])
def test_empty_images_give_zero_counts(rgb, method):
    seg = segment_image(rgb, method)
    assert seg.counts == {"RBC": 0, "WBC": 0, "platelet": 0}
    assert not seg.labels.any() and seg.objects == []


def red_cells_only() -> np.ndarray:
    """Pale background with six separate red discs and two touching ones: no stained cells."""
    rgb = blank((222, 226, 214)).copy()
    rgb = np.ascontiguousarray(np.repeat(np.repeat(rgb, 2, 0), 2, 1))  # 640x480
    for x, y in [(80, 80), (240, 80), (400, 80), (80, 380), (240, 380), (560, 380), (380, 250), (458, 250)]:
        cv2.circle(rgb, (x, y), 45, (205, 150, 150), -1)
    return rgb


def test_image_without_white_cells_counts_only_red_cells():
    ws = segment_image(red_cells_only(), "watershed")
    assert ws.counts == {"RBC": 8, "WBC": 0, "platelet": 0}
    assert segment_image(red_cells_only(), "hsv").counts == {"RBC": 7, "WBC": 0, "platelet": 0}


def test_unknown_method_and_bad_parameters_are_usage_errors():
    with pytest.raises(UsageError):
        segment_image(blank(0), "kmeans")
    with pytest.raises(UsageError):
        SegmentationParams.from_strings(["no_such=1"])
    with pytest.raises(UsageError):
        SegmentationParams.from_strings(["rbc_contrast=high"])
    assert SegmentationParams.from_strings(["rbc-contrast=20", "wbc_convex=false"]).rbc_contrast == 20


def test_overlay_outlines_objects_in_class_colours(segmentations):
    rgb = image("BloodImage_00117")
    overlay = draw_overlay(rgb, segmentations["BloodImage_00117"])
    assert overlay.shape == rgb.shape and overlay.dtype == np.uint8
    changed = (overlay != rgb).any(axis=2)
    assert 0.01 < changed.mean() < 0.2  # outlines, not filled regions
    assert ((overlay[..., 2] > 200) & (overlay[..., 0] < 80)).any()  # blue white-cell outline


# --- scoring -----------------------------------------------------------------------------------


def test_mask_overlap_on_synthetic_masks():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True  # 50 pixels
    b[:, 2:7] = True  # 50 pixels, 30 shared
    dice, iou = mask_overlap(a, b)
    assert dice == pytest.approx(0.6) and iou == pytest.approx(30 / 70)
    assert mask_overlap(a, a) == (1.0, 1.0)
    assert mask_overlap(a, ~a) == (0.0, 0.0)
    assert mask_overlap(np.zeros_like(a), np.zeros_like(a)) == (1.0, 1.0)


def test_box_matching_at_iou_half():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    truth = [(0, 0, 10, 10), (50, 50, 60, 60)]
    predicted = [(1, 0, 11, 10), (0, 0, 9, 10), (100, 100, 110, 110)]
    assert match_boxes(predicted, truth) == (1, 2, 1)  # one box matches once; the duplicate is a false positive
    assert match_boxes([], truth) == (0, 0, 2)


def test_summary_pools_detection_and_count_errors():
    scores = [
        ImageScore("a", rbc=12, wbc=1, platelet=1, rbc_true=10, wbc_true=1, platelet_true=0, wbc_tp=1, wbc_fp=0, wbc_fn=0,
                   wbc_dice=0.9, wbc_iou=0.8, wbc_intersection=9, wbc_pixels=10, wbc_pixels_true=10, rbc_box_coverage=1.0,
                   rbc_tp=9, rbc_fp=3, rbc_fn=1),
        ImageScore("b", rbc=8, wbc=2, platelet=2, rbc_true=10, wbc_true=1, platelet_true=2, wbc_tp=1, wbc_fp=1, wbc_fn=0,
                   wbc_dice=0.7, wbc_iou=0.6, wbc_intersection=7, wbc_pixels=10, wbc_pixels_true=10, rbc_box_coverage=0.5,
                   rbc_tp=7, rbc_fp=1, rbc_fn=3),
    ]  # fmt: skip
    summary = summarize(scores)
    assert summary["n_images"] == 2
    assert summary["wbc_precision"] == pytest.approx(2 / 3) and summary["wbc_recall"] == 1.0
    assert summary["wbc_f1"] == pytest.approx(0.8)
    assert summary["wbc_dice"] == pytest.approx(0.8) and summary["wbc_iou"] == pytest.approx(0.7)
    assert summary["rbc_count_mae"] == 2.0 and summary["rbc_count_mape"] == pytest.approx(0.2)
    assert summary["platelet_count_mae"] == 0.5
    assert summary["n_rbc_complete"] == 1 and summary["rbc_count_mape_complete"] == pytest.approx(0.2)
    assert summary["rbc_box_precision"] == pytest.approx(0.8) and summary["rbc_box_recall"] == pytest.approx(0.8)


def test_score_image_against_sample_truth(segmentations):
    stem = "BloodImage_00189"
    boxes = read_voc_boxes(BCCD / "Annotations" / f"{stem}.xml")[1]
    truth = cv2.imread(str(BCCD / "wbc_masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
    score = score_image(segmentations[stem], stem, boxes, truth)
    assert (score.wbc_tp, score.wbc_fp, score.wbc_fn) == (1, 0, 0)
    assert score.wbc_dice > 0.85 and score.rbc_true == voc_counts(stem)["RBC"]


# --- command line ------------------------------------------------------------------------------


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("segment")
    result = run("segment", BCCD, "-o", out, "--crops", "--overlays", "--evaluate", BCCD, "--masks", BCCD / "wbc_masks", "--json", "-j", "2")
    return result, out


def test_cli_writes_masks_overlays_tables(cli_run):
    result, out = cli_run
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_images"] == 8
    for key in ("wbc_precision", "wbc_recall", "wbc_f1", "wbc_dice", "wbc_iou", "rbc_count_mae", "rbc_count_mape",
                "platelet_count_mae", "n_images"):  # fmt: skip
        assert data["metrics"][key] is not None, key
    assert data["metrics"]["wbc_f1"] >= 0.9 and data["metrics"]["wbc_dice"] >= 0.85
    labels = cv2.imread(str(out / "labels" / "BloodImage_00117.png"), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and labels.shape == (480, 640)
    assert int(labels.max()) == sum(GOLDEN["BloodImage_00117"].values())
    overlay = cv2.imread(str(out / "overlays" / "BloodImage_00117.png"), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (480, 640, 3) and overlay.dtype == np.uint8
    with open(out / "counts.csv", newline="") as handle:
        counts = {row["image"].rsplit("/", 1)[-1]: row for row in csv.DictReader(handle)}
    assert len(counts) == 8 and int(counts["BloodImage_00117.jpg"]["RBC"]) == GOLDEN["BloodImage_00117"]["RBC"]
    with open(out / "objects.csv", newline="") as handle:
        objects = list(csv.DictReader(handle))
    assert len(objects) == data["n_objects"]
    assert {"image", "object_id", "class", "xmin", "centroid_x", "area", "shape_solidity"} <= set(objects[0])
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 8


def test_cli_crops_form_a_class_folder_dataset(cli_run):
    _, out = cli_run
    dataset = load_dataset(out / "crops")
    assert set(dataset.classes) <= set(CLASSES) and {"RBC", "WBC"} <= set(dataset.classes)
    assert dataset.class_counts()["WBC"] == 8


def test_cli_hsv_method_without_truth(tmp_path):
    result = run("segment", BCCD / "JPEGImages" / "BloodImage_00117.jpg", "-o", tmp_path, "--method", "hsv", "--rbc-contrast", "18")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "labels" / "BloodImage_00117.png").exists() and not (tmp_path / "overlays").exists()  # overlays: opt-in
    assert "WBC: 1" in result.stdout
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "crops").exists()


def test_cli_unreadable_image_is_one_line_error_or_skipped(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(BCCD / "JPEGImages" / "BloodImage_00117.jpg", images)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    result = run("segment", images, "-o", tmp_path / "out")
    assert result.exit_code == 3
    assert "broken.jpg" in result.stderr and "Traceback" not in result.output
    result = run("segment", images, "-o", tmp_path / "out", "--skip-errors", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_images"] == 1 and [s["path"].rsplit("/", 1)[-1] for s in data["skipped"]] == ["broken.jpg"]


def test_cli_usage_errors(tmp_path):
    image_path = BCCD / "JPEGImages" / "BloodImage_00117.jpg"
    assert run("segment", image_path, "-o", tmp_path, "--method", "kmeans").exit_code == 2
    assert run("segment", image_path, "-o", tmp_path, "-P", "bogus=1").exit_code == 2
    assert run("segment", image_path).exit_code == 2  # --out-dir is required


# --- full BCCD (development machines only) -----------------------------------------------------


def test_full_bccd_subset_scores():
    root = require_shared("bccd")
    from bloodcli.segmentation.scoring import find_truth

    scores = []
    for path in sorted((root / "JPEGImages").glob("*.jpg"))[::12]:  # 31 images: a fast spot check
        scores.append(score_image(segment_image(read_image(path)), str(path), *find_truth(path, root, root / "wbc_masks")))
    summary = summarize(scores)
    assert summary["wbc_f1"] >= 0.9 and summary["wbc_dice"] >= 0.85
