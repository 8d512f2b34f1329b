"""Segmentation feeds training: manifests of the segmented cells that ``train``, ``compare`` and ``evaluate`` read.

``segment --crops`` writes ``crops.csv`` beside ``objects.csv``: one row per object with
``path,label,group,xmin,ymin,xmax,ymax``, where ``path`` is the source smear (relative to the manifest),
``label`` the segmentation class, ``group`` the smear, and the box the object's. Loaded as a CSV
manifest, each row is the same crop as ``crops/<class>/`` holds (the loader pads boxes by the same
margin), and its group keeps every cell of a smear on one side of a split.

With labels (``image,label``: one white-cell subtype per smear image), ``labelled_crops.csv`` lists the
white cells those labels name: the smear's only segmented white cell, or, when it has several and a
VOC folder is given, the one overlapping the smear's single annotated white-cell box best.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from bloodcli.errors import DatasetError
from bloodcli.io.files import atomic_write
from bloodcli.segmentation.scoring import box_iou, find_truth

MANIFEST_COLUMNS = ("path", "label", "group", "xmin", "ymin", "xmax", "ymax")
BOX = ("xmin", "ymin", "xmax", "ymax")
#: A segmented white cell is the annotated one when their boxes overlap at least this much (IoU).
MIN_BOX_OVERLAP = 0.3


@dataclass
class LabelledCrops:
    """What the labels named: white cells labelled, and smears whose label could not be placed (with why)."""

    n_labelled: int = 0
    unplaced: dict[str, str] = field(default_factory=dict)  # smear image -> reason


def read_labels(path: str | Path) -> dict[str, str]:
    """``image,label`` rows keyed by resolved image path and by file name (both lower-case-insensitive on name)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read labels ({exc})") from None
    if not rows or not {"image", "label"} <= {c.strip().lower() for c in rows[0]}:
        raise DatasetError(f"{path}: labels need 'image' and 'label' columns")
    labels: dict[str, str] = {}
    for row in rows:
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if row["image"] and row["label"]:
            labels[str((path.parent / row["image"]).resolve())] = row["label"]
            labels.setdefault(Path(row["image"]).name, row["label"])
    return labels


def write_manifests(out_dir: str | Path, labels: dict[str, str] | None = None, voc_dir=None) -> LabelledCrops | None:
    """Write ``crops.csv`` (and with ``labels`` ``labelled_crops.csv``) from ``out_dir/objects.csv``."""
    out_dir = Path(out_dir)
    with open(out_dir / "objects.csv", newline="") as handle:
        objects = list(csv.DictReader(handle))
    rows = [_manifest_row(out_dir, obj, obj["class"]) for obj in objects]
    _write(out_dir / "crops.csv", rows)
    if labels is None:
        return None
    summary = LabelledCrops()
    labelled = []
    cells_by_image = _white_cells_by_image(objects)
    for image, cells in cells_by_image.items():
        label = _label_of(labels, image)
        if label is None:
            continue
        chosen, reason = _named_cell(image, cells, voc_dir)
        if chosen is None:
            summary.unplaced[image] = reason
        else:
            labelled.append(_manifest_row(out_dir, chosen, label))
    with open(out_dir / "counts.csv", newline="") as handle:
        segmented = [row["image"] for row in csv.DictReader(handle)]
    for image in segmented:
        if image not in cells_by_image and _label_of(labels, image):
            summary.unplaced[image] = "no white cell segmented"
    summary.n_labelled = len(labelled)
    _write(out_dir / "labelled_crops.csv", labelled)
    return summary


def _label_of(labels: dict[str, str], image: str) -> str | None:
    return labels.get(str(Path(image).resolve())) or labels.get(Path(image).name)


def _white_cells_by_image(objects: list[dict]) -> dict[str, list[dict]]:
    cells: dict[str, list[dict]] = {}
    for obj in objects:
        if obj["class"] == "WBC":
            cells.setdefault(obj["image"], []).append(obj)
    return cells


def _named_cell(image: str, cells: list[dict], voc_dir) -> tuple[dict | None, str]:
    """The white cell a per-image label names, or None and why not."""
    if len(cells) == 1:
        return cells[0], ""
    if voc_dir is None:
        return None, f"{len(cells)} white cells segmented (give the VOC folder to pick by box overlap)"
    boxes = find_truth(image, voc_dir, None)[0] or []
    annotated = [box for name, box in boxes if name == "WBC"]
    if len(annotated) != 1:
        return None, f"{len(cells)} white cells segmented and {len(annotated)} annotated"
    overlap, best = max((box_iou(_box(cell), annotated[0]), index) for index, cell in enumerate(cells))
    if overlap < MIN_BOX_OVERLAP:
        return None, f"no segmented white cell overlaps the annotated one (best IoU {overlap:.2f})"
    return cells[best], ""


def _box(obj: dict) -> tuple[int, ...]:
    return tuple(int(obj[c]) for c in BOX)


def _relative(out_dir: Path, image: str) -> str:
    return Path(os.path.relpath(Path(image).resolve(), out_dir.resolve())).as_posix()


def _manifest_row(out_dir: Path, obj: dict, label: str) -> dict:
    return {"path": _relative(out_dir, obj["image"]), "label": label, "group": Path(obj["image"]).stem,
            **{c: obj[c] for c in BOX}}  # fmt: skip


def _write(path: Path, rows: list[dict]) -> None:
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
