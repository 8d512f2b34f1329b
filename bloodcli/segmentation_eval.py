"""Score segmentations against ground truth: VOC boxes (detection, counts) and white-cell masks.

Per image, :func:`score_image` compares one :class:`~bloodcli.segmentation.Segmentation` with
the truth available for it; :func:`summarize` pools the per-image scores into the reported
figures:

- ``wbc_precision/recall/f1``: white cells matched one-to-one to VOC ``WBC`` boxes at IoU >= 0.5.
- ``wbc_dice/wbc_iou``: mean per image of the white-cell mask overlap with the truth mask
  (``*_pooled``: over all pixels of all images).
- ``rbc_count_mae/mape`` and ``platelet_count_mae/mape``: per-image count errors against the
  number of VOC boxes; MAPE is a fraction (0.1 = 10 %) over images with at least one box.
- ``rbc_box_precision/recall``: red cells matched to VOC ``RBC`` boxes at IoU >= 0.5 (precision
  is a lower bound: unannotated cells count as false positives).
- ``rbc_count_*_complete``: the same over images whose VOC red-cell boxes cover at least 90 %
  of the segmented red-cell pixels, i.e. where the annotation is not missing cells.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bloodcli.datasets import Box, read_voc_boxes
from bloodcli.errors import ImageReadError, InputDataError
from bloodcli.imaging import atomic_write, read_image
from bloodcli.segmentation import Segmentation

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

    def to_dict(self) -> dict:
        return asdict(self)


def score_image(
    segmentation: Segmentation, image: str, boxes: list[tuple[str, Box]] | None = None, wbc_mask: np.ndarray | None = None
) -> ImageScore:
    """Score one segmentation against VOC ``(class, box)`` pairs and/or a white-cell mask."""
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
    return score


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


def find_truth(image: str | Path, voc_dir: str | Path | None, mask_dir: str | Path | None):
    """The VOC boxes and white-cell mask of an image, found by file stem (None where absent)."""
    stem = Path(image).stem
    boxes = None
    if voc_dir is not None:
        xml = _first_existing([Path(voc_dir) / "Annotations" / f"{stem}.xml", Path(voc_dir) / f"{stem}.xml"])
        boxes = read_voc_boxes(xml)[1] if xml is not None else None
    mask = None
    if mask_dir is not None:
        path = _first_existing([Path(mask_dir) / f"{stem}{ext}" for ext in (".png", ".bmp", ".tif", ".jpg")])
        mask = _read_mask(path) if path is not None else None
    return boxes, mask


def _first_existing(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _read_mask(path: Path) -> np.ndarray:
    return read_image(path)[..., 0] > 127  # any format/bit depth; errors name the file


# --- Batch runs: segment files, write outputs, score -------------------------------------------

#: Margin added around each object's box for crops, as a fraction of the box size.
CROP_MARGIN = 0.1


@dataclass
class SegmentRun:
    """What :func:`segment_files` did: per-image counts and scores, outputs and failures."""

    out_dir: Path
    counts: list[dict]  # one row per image: image, RBC, WBC, platelet
    n_objects: int
    scores: list[ImageScore]
    metrics: dict | None
    failures: list[tuple[str, str]]
    n_resumed: int = 0  # images whose finished outputs from an earlier, interrupted run were reused


@dataclass
class _ImageResult:
    image: str
    counts: dict
    rows: list[dict]
    score: ImageScore | None = None
    failure: str | None = None
    resumed: bool = False


def segment_files(
    paths: list[Path], out_dir: str | Path, method: str = "watershed", params=None, *, crops: bool = False,
    voc_dir: str | Path | None = None, mask_dir: str | Path | None = None, jobs: int = 1,
    skip_errors: bool = False, progress=None, executor=None,
) -> SegmentRun:  # fmt: skip
    """Segment image files, writing label masks, overlays, tables (and crops) to ``out_dir``.

    Writes ``labels/<stem>.png`` (16-bit ids), ``overlays/<stem>.png``, ``objects.csv``,
    ``counts.csv`` and, with ``crops``, ``crops/<class>/<stem>_<id>.png`` (a class-folder
    dataset). With ``voc_dir`` and/or ``mask_dir`` it also scores every image against the
    truth found by file stem and writes ``scores.csv`` and ``metrics.json``.

    Unreadable images raise :class:`ImageReadError`, or with ``skip_errors`` are listed in
    ``failures``. ``jobs > 1`` segments images in that many worker processes; an ``executor``
    (e.g. a Dask client) runs them there instead.

    Each finished image leaves a record in ``out_dir/.done/`` (written last, atomically), keyed
    by the image content and every setting; a rerun after an interruption reuses those images
    and produces the same tables as an uninterrupted run.
    """
    from bloodcli.segmentation import SegmentationParams, check_method

    params = params or SegmentationParams()
    check_method(method)
    out_dir = Path(out_dir)
    names = _unique_names(paths)
    evaluate = voc_dir is not None or mask_dir is not None
    task = (out_dir, method, params, crops, voc_dir, mask_dir, evaluate)
    results = []
    for result in _run(paths, names, task, jobs, executor):
        if result.failure is not None and not skip_errors:
            raise ImageReadError(result.image, result.failure)
        results.append(result)
        if progress is not None:
            progress(1, len(paths))
    return _finish(out_dir, results, evaluate)


def _unique_names(paths: list[Path]) -> list[str]:
    """Output name of each image: its stem, suffixed where two inputs share one."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _run(paths, names, task, jobs: int, executor=None):
    if executor is not None:
        from bloodcli.features.extraction import in_order

        submit = lambda item: executor.submit(_segment_one, *item, *task)  # noqa: E731
        return (future.result() for future in in_order(submit, zip(paths, names), ahead=64))
    if jobs <= 1 or len(paths) <= 1:
        return (_segment_one(p, n, *task) for p, n in zip(paths, names))
    import joblib

    parallel = joblib.Parallel(n_jobs=min(jobs, len(paths)), return_as="generator", batch_size=4)
    return parallel(joblib.delayed(_segment_one)(p, n, *task) for p, n in zip(paths, names))


def _segment_one(path, name, out_dir, method, params, crops, voc_dir, mask_dir, evaluate) -> _ImageResult:
    """Segment one file and write its outputs; input errors come back as ``failure``.

    Errors are returned, not raised, so one bad file in a worker process neither loses the
    other results nor has to survive pickling as an exception.
    """
    from bloodcli.imaging import content_hash, read_bytes

    try:
        data = read_bytes(path)
    except ImageReadError as exc:
        return _ImageResult(str(path), {}, [], failure=exc.cause)
    settings = [content_hash(data), method, params.to_dict(), crops, str(voc_dir), str(mask_dir), str(path)]
    record = out_dir / ".done" / f"{name}.json"
    fingerprint = content_hash(json.dumps(settings, sort_keys=True, default=str).encode())
    finished = _read_record(record, fingerprint)
    if finished is not None:
        return finished
    result = _segment_and_write(path, data, name, out_dir, method, params, crops, voc_dir, mask_dir, evaluate)
    if result.failure is None:
        with atomic_write(record, "w") as handle:
            json.dump({"fingerprint": fingerprint, "result": asdict(result)}, handle, default=_plain_number)
    return result


def _read_record(record: Path, fingerprint: str) -> _ImageResult | None:
    """The result stored by an earlier run with identical inputs and settings, if any."""
    try:
        stored = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if stored.get("fingerprint") != fingerprint:
        return None
    result = _ImageResult(**stored["result"])
    result.score = ImageScore(**result.score) if result.score else None
    result.resumed = True
    return result


def _segment_and_write(path, data, name, out_dir, method, params, crops, voc_dir, mask_dir, evaluate) -> _ImageResult:
    from bloodcli.imaging import decode_image, write_image
    from bloodcli.segmentation import draw_overlay, segment_image

    try:
        rgb = decode_image(data, path)
        seg = segment_image(rgb, method, params)
        score = score_image(seg, str(path), *find_truth(path, voc_dir, mask_dir)) if evaluate else None
    except ImageReadError as exc:  # the image itself, or its truth mask (then named in the cause)
        return _ImageResult(str(path), {}, [], failure=exc.cause if exc.path == str(path) else str(exc))
    except (InputDataError, OSError) as exc:
        return _ImageResult(str(path), {}, [], failure=str(exc).removeprefix(f"{path}: "))
    write_image(out_dir / "labels" / f"{name}.png", seg.labels)
    write_image(out_dir / "overlays" / f"{name}.png", draw_overlay(rgb, seg))
    if crops:
        _write_crops(rgb, seg, out_dir / "crops", name)
    # Plain Python numbers, so a resumed run (read back from JSON) writes identical tables.
    rows = json.loads(json.dumps([{"image": str(path), **obj.to_row()} for obj in seg.objects], default=_plain_number))
    return _ImageResult(str(path), {"image": str(path), **seg.counts}, rows, score)


def _plain_number(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_crops(rgb: np.ndarray, seg: Segmentation, crop_dir: Path, name: str) -> None:
    from bloodcli.datasets import _pad_box, crop
    from bloodcli.imaging import write_image

    for obj in seg.objects:
        write_image(crop_dir / obj.cls / f"{name}_{obj.object_id}.png", crop(rgb, _pad_box(obj.bbox, CROP_MARGIN)))


def _finish(out_dir: Path, results: list[_ImageResult], evaluate: bool) -> SegmentRun:
    from bloodcli.segmentation import CLASSES, REGION_PROPERTIES

    done = [r for r in results if r.failure is None]
    rows = [row for r in done for row in r.rows]
    columns = ["image", "object_id", "class", "xmin", "ymin", "xmax", "ymax", "centroid_x", "centroid_y", "area"]
    columns += [f"shape_{p}" for p in REGION_PROPERTIES if p != "area"]
    _write_csv(out_dir / "objects.csv", columns, rows)
    counts = [r.counts for r in done]
    _write_csv(out_dir / "counts.csv", ["image", *CLASSES], counts)
    scores = [r.score for r in done if r.score is not None]
    metrics = None
    if evaluate:
        metrics = summarize(scores)
        _write_csv(out_dir / "scores.csv", list(ImageScore.__dataclass_fields__), [s.to_dict() for s in scores])
        with atomic_write(out_dir / "metrics.json", "w") as handle:
            handle.write(json.dumps(metrics, indent=2) + "\n")
    failures = [(r.image, r.failure) for r in results if r.failure is not None]
    resumed = sum(r.resumed for r in done)
    return SegmentRun(out_dir, counts, len(rows), scores, metrics, failures, resumed)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
