"""Scoring a smear segmentation against its ground truth: VOC boxes, white-cell masks or red-cell points.

Point files (``x y [type]`` per line, one line per red cell, as in the Chula RBC-12 data) give a
complete count and say whether each cell got an object of its own: a point is *recalled* when it
falls in a red-cell object that holds no other point; objects holding two or more points are
merged cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bloodcli.errors import InputDataError
from bloodcli.io.datasets import Box, read_voc_boxes
from bloodcli.io.images import read_image
from bloodcli.segmentation.smear import Segmentation

#: VOC class name of each segmentation class.
VOC_NAMES = {"RBC": "RBC", "WBC": "WBC", "platelet": "Platelets"}


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (xmin, ymin, xmax, ymax) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def match_boxes(predicted: list[Box], truth: list[Box], threshold: float = 0.5) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of a greedy one-to-one matching.

    Pairs are taken in order of decreasing IoU, so each truth box matches its best prediction.
    """
    pairs = sorted(
        ((box_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)), reverse=True
    )
    used_p, used_t = set(), set()
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    tp = len(used_p)
    return tp, len(predicted) - tp, len(truth) - tp


def mask_overlap(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks (both 1.0 when both masks are empty)."""
    inter = float(np.logical_and(predicted, truth).sum())
    total = float(predicted.sum() + truth.sum())
    if total == 0:
        return 1.0, 1.0
    return 2.0 * inter / total, inter / (total - inter)


@dataclass
class ImageScore:
    """Comparison of one image's segmentation with its ground truth (None: truth not given)."""

    image: str
    rbc: int
    wbc: int
    platelet: int
    rbc_true: int | None = None
    wbc_true: int | None = None
    platelet_true: int | None = None
    wbc_tp: int | None = None
    wbc_fp: int | None = None
    wbc_fn: int | None = None
    wbc_dice: float | None = None
    wbc_iou: float | None = None
    wbc_intersection: int | None = None
    wbc_pixels: int | None = None
    wbc_pixels_true: int | None = None
    rbc_tp: int | None = None  # red cells matched to VOC RBC boxes at IoU >= 0.5
    rbc_fp: int | None = None
    rbc_fn: int | None = None
    rbc_box_coverage: float | None = None  # fraction of segmented red-cell pixels inside VOC RBC boxes
    rbc_points: int | None = None  # red cells marked by a point
    rbc_point_hits: int | None = None  # points alone in a red-cell object
    rbc_merged: int | None = None  # red-cell objects holding two or more points
    rbc_point_coverage: float | None = None  # fraction of red-cell pixels near a point (1: every cell marked)

    def to_dict(self) -> dict:
        return asdict(self)


def score_image(
    segmentation: Segmentation, image: str, boxes: list[tuple[str, Box]] | None = None, wbc_mask: np.ndarray | None = None,
    points: np.ndarray | None = None,
) -> ImageScore:  # fmt: skip
    """Score one segmentation against VOC ``(class, box)`` pairs, a white-cell mask and/or red-cell points ``(n, 2)`` as x, y."""
    counts = segmentation.counts
    score = ImageScore(str(image), counts["RBC"], counts["WBC"], counts["platelet"])
    if boxes is not None:
        truth = {name: [b for n, b in boxes if n == voc] for name, voc in VOC_NAMES.items()}
        score.rbc_true, score.wbc_true, score.platelet_true = (len(truth[n]) for n in ("RBC", "WBC", "platelet"))
        score.wbc_tp, score.wbc_fp, score.wbc_fn = match_boxes(segmentation.boxes("WBC"), truth["WBC"])
        score.rbc_tp, score.rbc_fp, score.rbc_fn = match_boxes(segmentation.boxes("RBC"), truth["RBC"])
        score.rbc_box_coverage = _box_coverage(segmentation.class_mask("RBC"), truth["RBC"])
    if wbc_mask is not None:
        if wbc_mask.shape != segmentation.labels.shape:
            raise InputDataError(f"{image}: white-cell mask is {wbc_mask.shape[1]}x{wbc_mask.shape[0]}, "
                                 f"image is {segmentation.labels.shape[1]}x{segmentation.labels.shape[0]}")  # fmt: skip
        predicted = segmentation.class_mask("WBC")
        score.wbc_dice, score.wbc_iou = mask_overlap(predicted, wbc_mask)
        score.wbc_intersection = int(np.logical_and(predicted, wbc_mask).sum())
        score.wbc_pixels, score.wbc_pixels_true = int(predicted.sum()), int(wbc_mask.sum())
    if points is not None:
        score.rbc_points, score.rbc_point_hits, score.rbc_merged = point_hits(segmentation, points)
        score.rbc_point_coverage = point_coverage(segmentation, points)
    return score


def point_coverage(segmentation: Segmentation, points: np.ndarray, reach: float = 0.75) -> float:
    """Fraction of red-cell pixels within ``reach`` red-cell diameters of a point (1.0 without red cells).

    Where every red cell is marked, nearly every red-cell pixel lies near its cell's point;
    a low coverage flags an image whose annotation leaves cells out, whatever the object count.
    """
    mask = segmentation.class_mask("RBC")
    total = int(mask.sum())
    if total == 0:
        return 1.0
    seeds = np.ones(mask.shape, np.uint8)
    xy = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(int)
    xy = xy[(xy[:, 0] >= 0) & (xy[:, 0] < mask.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < mask.shape[0])]
    seeds[xy[:, 1], xy[:, 0]] = 0
    distance = cv2.distanceTransform(seeds, cv2.DIST_L2, 5)
    return float((mask & (distance <= reach * segmentation.rbc_diameter)).sum() / total)


def point_hits(segmentation: Segmentation, points: np.ndarray) -> tuple[int, int, int]:
    """Points, points alone in a red-cell object, and red-cell objects holding two or more points."""
    height, width = segmentation.labels.shape
    xy = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(int)
    xy = xy[(xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)]
    red = np.zeros(int(segmentation.labels.max()) + 1, bool)
    red[[o.object_id for o in segmentation.objects if o.cls == "RBC"]] = True
    ids = segmentation.labels[xy[:, 1], xy[:, 0]].astype(int)
    ids = ids[red[ids]]
    per_object = np.bincount(ids, minlength=len(red))
    return len(points), int((per_object[ids] == 1).sum()), int((per_object >= 2).sum())


def read_points(path: str | Path) -> np.ndarray:
    """Red-cell centres ``(n, 2)`` as x, y from a point file (``x y [type]`` per line; blank lines skipped)."""
    rows = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            rows.append((float(fields[0]), float(fields[1])))
        except (ValueError, IndexError):
            raise InputDataError(f"{path}: line {number}: expected 'x y [type]', got {line.strip()[:60]!r}") from None
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def _box_coverage(mask: np.ndarray, boxes: list[Box]) -> float:
    """Fraction of ``mask`` inside the union of ``boxes`` (1.0 for an empty mask)."""
    total = int(mask.sum())
    if total == 0:
        return 1.0
    inside = np.zeros(mask.shape, bool)
    for xmin, ymin, xmax, ymax in boxes:
        inside[ymin:ymax, xmin:xmax] = True
    return float((mask & inside).sum() / total)


def summarize(scores: list[ImageScore], complete_coverage: float = 0.9) -> dict:
    """Pool per-image scores into detection, overlap and count-error figures (None: no truth)."""
    boxed = [s for s in scores if s.rbc_true is not None]
    masked = [s for s in scores if s.wbc_dice is not None]
    summary: dict = {"n_images": len(scores), "n_with_boxes": len(boxed), "n_with_masks": len(masked)}
    summary.update(_detection(boxed))
    summary.update(_overlap(masked))
    for name in ("rbc", "platelet"):
        summary.update(_count_errors(name, [(getattr(s, name), getattr(s, f"{name}_true")) for s in boxed]))
    summary.update(_count_errors("wbc", [(s.wbc, s.wbc_true) for s in boxed]))
    # VOC red-cell boxes are missing on crowded images; where the boxes cover nearly all the
    # segmented red-cell pixels the annotation is complete and the count error is meaningful.
    complete = [(s.rbc, s.rbc_true) for s in boxed if s.rbc_box_coverage >= complete_coverage]
    errors = _count_errors("rbc", complete)
    summary.update({f"{k}_complete": v for k, v in errors.items() if not k.endswith("bias")})
    summary["n_rbc_complete"] = len(complete)
    if boxed:  # box-level recall shows whether the annotated red cells are found at all
        tp, fp, fn = (sum(getattr(s, k) for s in boxed) for k in ("rbc_tp", "rbc_fp", "rbc_fn"))
        summary.update(rbc_box_precision=tp / max(tp + fp, 1), rbc_box_recall=tp / max(tp + fn, 1))
    summary.update(_point_scores([s for s in scores if s.rbc_points is not None]))
    return summary


def _point_scores(scores: list[ImageScore], complete_coverage: float = 0.9) -> dict:
    """Red-cell count error against points, point recall and merged objects.

    The count error is also given on the images whose points cover at least ``complete_coverage``
    of the red-cell pixels, where the annotation marks (nearly) every cell.
    """
    summary = {"n_with_points": len(scores)}
    errors = _count_errors("rbc", [(s.rbc, s.rbc_points) for s in scores])
    summary.update({k.replace("rbc_", "rbc_points_", 1): v for k, v in errors.items()})
    complete = [s for s in scores if s.rbc_point_coverage >= complete_coverage]
    errors = _count_errors("rbc", [(s.rbc, s.rbc_points) for s in complete])
    summary.update({k.replace("rbc_", "rbc_points_", 1) + "_complete": v for k, v in errors.items()})
    summary["n_points_complete"] = len(complete)
    points = sum(s.rbc_points for s in scores) if scores else 0
    summary["rbc_point_recall"] = sum(s.rbc_point_hits for s in scores) / points if points else None
    summary["rbc_merged_per_image"] = float(np.mean([s.rbc_merged for s in scores])) if scores else None
    return summary


def _detection(scores: list[ImageScore]) -> dict:
    if not scores:
        return dict.fromkeys(("wbc_precision", "wbc_recall", "wbc_f1"))
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("wbc_tp", "wbc_fp", "wbc_fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"wbc_precision": precision, "wbc_recall": recall, "wbc_f1": f1, "wbc_tp": tp, "wbc_fp": fp, "wbc_fn": fn}


def _overlap(scores: list[ImageScore]) -> dict:
    if not scores:
        return dict.fromkeys(("wbc_dice", "wbc_iou", "wbc_dice_pooled", "wbc_iou_pooled"))
    inter = sum(s.wbc_intersection for s in scores)
    total = sum(s.wbc_pixels + s.wbc_pixels_true for s in scores)
    return {
        "wbc_dice": float(np.mean([s.wbc_dice for s in scores])),
        "wbc_iou": float(np.mean([s.wbc_iou for s in scores])),
        "wbc_dice_pooled": 2 * inter / total if total else 1.0,
        "wbc_iou_pooled": inter / (total - inter) if total else 1.0,
    }


def _count_errors(name: str, pairs: list[tuple[int, int]]) -> dict:
    if not pairs:
        return dict.fromkeys((f"{name}_count_mae", f"{name}_count_mape", f"{name}_count_bias"))
    predicted, truth = (np.asarray(v, dtype=np.float64) for v in zip(*pairs))
    error = predicted - truth
    nonzero = truth > 0
    return {
        f"{name}_count_mae": float(np.abs(error).mean()),
        f"{name}_count_mape": float((np.abs(error[nonzero]) / truth[nonzero]).mean()) if nonzero.any() else None,
        f"{name}_count_bias": float(error.mean()),  # positive: more objects found than annotated
    }


def find_truth(image: str | Path, truth_dir: str | Path | None, mask_dir: str | Path | None):
    """The VOC boxes, white-cell mask and red-cell points of an image, found by file stem (None where absent).

    ``truth_dir`` is a VOC folder (``Annotations/<stem>.xml`` or ``<stem>.xml``) or a folder of point
    files (``points/<stem>.txt`` or ``<stem>.txt``).
    """
    xml, text, mask = truth_files(image, truth_dir, mask_dir)
    boxes = read_voc_boxes(xml)[1] if xml is not None else None
    points = read_points(text) if text is not None else None
    return boxes, _read_mask(mask) if mask is not None else None, points


def truth_files(image: str | Path, truth_dir: str | Path | None, mask_dir: str | Path | None) -> tuple[Path | None, ...]:
    """The VOC file, points file and mask file of an image (None where absent): :func:`find_truth` without reading."""
    stem = Path(image).stem
    xml = text = mask = None
    if truth_dir is not None:
        root = Path(truth_dir)
        xml = _first_existing([root / "Annotations" / f"{stem}.xml", root / f"{stem}.xml"])
        text = _first_existing([root / "points" / f"{stem}.txt", root / f"{stem}.txt"])
    if mask_dir is not None:
        mask = _first_existing([Path(mask_dir) / f"{stem}{ext}" for ext in (".png", ".bmp", ".tif", ".jpg")])
    return xml, text, mask


def check_truth_found(images: Sequence[str | Path], truth_dir: str | Path | None, mask_dir: str | Path | None) -> None:
    """Refuse a truth folder in which no image finds its file (a run would score nothing)."""
    found = [truth_files(image, truth_dir, mask_dir) for image in images]
    if truth_dir is not None and not any(xml or text for xml, text, _ in found):
        raise InputDataError(f"--evaluate {truth_dir}: no image has its truth there (expected Annotations/<stem>.xml, "
                             "<stem>.xml, points/<stem>.txt or <stem>.txt)")  # fmt: skip
    if mask_dir is not None and not any(mask for _, _, mask in found):
        raise InputDataError(f"--masks {mask_dir}: no image has its mask there (expected <stem>.png, .bmp, .tif or .jpg)")


def _first_existing(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _read_mask(path: Path) -> np.ndarray:
    return read_image(path)[..., 0] > 127  # any format/bit depth; errors name the file
