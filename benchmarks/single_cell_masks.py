"""How well the single-cell mask (what classical features are measured on) finds the whole white cell.

Crops every BCCD white cell as ``extract`` does (VOC box plus a 10 % margin), runs
:func:`bloodcli.imaging.cell_mask.segment_single_cell` on it, and compares the cell mask with the
white-cell mask of ``bccd/wbc_masks`` cropped alike (Dice). Also on copies of the crops with a
40 % margin (a looser framing) and rescaled by 0.5 and 2.

Then, on --pbc-limit PBC crops (every n-th, all classes) as they are and rescaled 2x, the current
masks (version 3, distances on a reduced copy) against version 2 (every step at full resolution):
Dice of the cell and nucleus masks, and milliseconds per crop of each on one core (same run).

Usage: python benchmarks/single_cell_masks.py [--bccd DIR] [--pbc DIR] [--pbc-limit 800] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from bloodcli.imaging.cell_mask import segment_single_cell, segment_single_cell_v2
from bloodcli.io.datasets import _pad_box, crop, read_voc_boxes
from bloodcli.io.files import atomic_write
from bloodcli.io.images import read_image
from bloodcli.segmentation.scoring import mask_overlap

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd"
PBC = SHARED.parent / "pbc"
RESULTS = Path(__file__).resolve().parent / "results"


def crops(bccd: Path, margin: float):
    """(image crop, truth mask crop) of every WBC box with a white-cell mask."""
    for xml in sorted((bccd / "Annotations").glob("*.xml")):
        mask_path = bccd / "wbc_masks" / f"{xml.stem}.png"
        if not mask_path.is_file():
            continue
        image, truth = read_image(bccd / "JPEGImages" / f"{xml.stem}.jpg"), read_image(mask_path)[..., 0] > 127
        for name, box in read_voc_boxes(xml)[1]:
            if name == "WBC":
                box = _pad_box(box, margin)
                yield crop(image, box), crop(truth, box)


def dice_of(rgb: np.ndarray, truth: np.ndarray, scale: float = 1.0) -> float:
    if scale != 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        truth = cv2.resize(truth.astype(np.uint8), rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    cell, _ = segment_single_cell(rgb)
    return mask_overlap(cell, truth)[0]


def against_version_2(images: list[np.ndarray]) -> dict:
    """Agreement of the current masks with version 2's, and the time per image of each (best of two passes)."""
    import time

    cv2.setNumThreads(1)
    seconds = {}
    for name, segment in (("v2", segment_single_cell_v2), ("current", segment_single_cell)):
        passes = []
        for _ in range(2):
            start = time.perf_counter()
            masks = [segment(image) for image in images]
            passes.append(time.perf_counter() - start)
        seconds[name], seconds[name + "_masks"] = min(passes), masks
    cell = np.array([mask_overlap(a[0], b[0])[0] for a, b in zip(seconds["current_masks"], seconds["v2_masks"])])
    nucleus = np.array([mask_overlap(a[1], b[1])[0] for a, b in zip(seconds["current_masks"], seconds["v2_masks"])])
    return {"n": len(images), "cell_dice_median": float(np.median(cell)), "cell_dice_p5": float(np.percentile(cell, 5)),
            "cell_dice_mean": float(cell.mean()), "nucleus_dice_median": float(np.median(nucleus)),
            "v2_ms_per_image": 1e3 * seconds["v2"] / len(images), "current_ms_per_image": 1e3 * seconds["current"] / len(images),
            "speedup": seconds["v2"] / seconds["current"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", type=Path, default=SHARED)
    parser.add_argument("--pbc", type=Path, default=PBC)
    parser.add_argument("--pbc-limit", type=int, default=800)
    parser.add_argument("--out", type=Path, default=RESULTS / "single_cell_masks.json")
    args = parser.parse_args()
    report = {}
    for label, margin, scale in (("box+10%", 0.1, 1.0), ("box+40%", 0.4, 1.0), ("box+10% x0.5", 0.1, 0.5), ("box+10% x2", 0.1, 2.0)):
        scores = np.array([dice_of(rgb, truth, scale) for rgb, truth in crops(args.bccd, margin)])
        report[label] = {"n": int(len(scores)), "dice_mean": float(scores.mean()), "dice_median": float(np.median(scores)),
                         "share_below_0.8": float((scores < 0.8).mean())}  # fmt: skip
        print(label, json.dumps(report[label]), flush=True)
    files = sorted(args.pbc.glob("*/*.jpg"))
    files = files[:: max(1, len(files) // args.pbc_limit)][: args.pbc_limit]
    for scale in (1.0, 2.0):
        images = [read_image(f) for f in files]
        if scale != 1.0:
            images = [cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for image in images]
        label = f"PBC crops x{scale:g}: version 3 against 2"
        report[label] = against_version_2(images)
        print(label, json.dumps(report[label]), flush=True)
    with atomic_write(args.out, "w") as handle:
        handle.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
