"""Smear segmentation on images nobody tuned for: another lab, other magnifications, other stains.

The defaults were tuned on BCCD only. This script measures, with default settings:

- ``chula`` (a second lab, every red cell marked by a point): red-cell count error against the
  points, point recall (points alone in a red-cell object) and merged objects per image, at the
  original size and on copies rescaled by 0.5, 0.75, 1.5 and 2 (points scaled alike);
- ``bccd``: white-cell F1 and Dice, red-cell count MAPE on the images whose VOC boxes are complete,
  and how far counts on copies rescaled by 0.75 and 1.5 move from the original's;
- both: how far a HED stain jitter of ±0.05 (one random draw per image, seeded) moves the counts;
- the estimated red-cell diameter per variant (it should scale with the copy).

Usage: python benchmarks/segment_generalisation.py [--shared DIR] [--limit N] [--jobs J] [--out FILE]
Writes benchmarks/results/segment_generalisation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import joblib
import numpy as np

from bloodcli.imaging.augmentation import hed_jitter
from bloodcli.io.files import atomic_write
from bloodcli.io.images import read_image
from bloodcli.segmentation.scoring import find_truth, score_image, summarize
from bloodcli.segmentation.smear import segment_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
CHULA_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)
BCCD_SCALES = (0.75, 1.0, 1.5)
HED_STRENGTH = 0.05


def variant(rgb: np.ndarray, scale: float, jitter_seed: int | None) -> np.ndarray:
    """The image rescaled by ``scale`` and, with a seed, stain-jittered."""
    if scale != 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    if jitter_seed is not None:
        rgb = hed_jitter(rgb, np.random.default_rng(jitter_seed), HED_STRENGTH)
    return rgb


def segment_variant(path: Path, truth_dir: Path, mask_dir: Path | None, scale: float, jitter_seed: int | None):
    """Counts, diameter, seconds and (at 1x without jitter, or for points at any scale) the score of one image."""
    rgb = variant(read_image(path), scale, jitter_seed)
    start = time.perf_counter()
    seg = segment_image(rgb)
    seconds = time.perf_counter() - start
    boxes, mask, points = find_truth(path, truth_dir, mask_dir)
    exact = scale == 1.0 and jitter_seed is None
    score = score_image(seg, str(path), boxes if exact else None, mask if exact else None,
                        None if points is None else points * scale)  # fmt: skip
    return {"image": path.name, **seg.counts, "rbc_diameter": seg.rbc_diameter, "seconds": seconds, "score": score}


def run(paths, truth_dir, mask_dir, scale, jitter, jobs):
    tasks = (joblib.delayed(segment_variant)(p, truth_dir, mask_dir, scale, i if jitter else None) for i, p in enumerate(paths))
    return joblib.Parallel(n_jobs=jobs)(tasks)


def count_shift(rows, reference, name="RBC") -> float:
    """Mean relative change of ``name`` counts against the reference rows (images with a count there)."""
    pairs = [(r[name], ref[name]) for r, ref in zip(rows, reference) if ref[name] > 0]
    return float(np.mean([abs(a - b) / b for a, b in pairs])) if pairs else float("nan")


def point_figures(rows) -> dict:
    metrics = summarize([r["score"] for r in rows])
    keys = ("rbc_points_count_mape", "rbc_points_count_bias", "rbc_points_count_mape_complete", "n_points_complete",
            "rbc_point_recall", "rbc_merged_per_image")  # fmt: skip
    return {k: metrics[k] for k in keys}


def describe(rows) -> dict:
    return {"median_rbc_diameter": float(np.median([r["rbc_diameter"] for r in rows])),
            "ms_per_image": 1000 * float(np.mean([r["seconds"] for r in rows]))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--limit", type=int, default=0, help="Use every k-th image so that at most N remain (0: all).")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "segment_generalisation.json")
    args = parser.parse_args()
    chula, bccd = args.shared / "chula", args.shared / "bccd"
    chula_paths, bccd_paths = (_subset(sorted((d / "JPEGImages").glob("*.jpg")), args.limit) for d in (chula, bccd))
    report: dict = {"chula": {}, "bccd": {}, "settings": "defaults (tuned on BCCD only)"}

    original = run(chula_paths, chula, None, 1.0, False, args.jobs)
    for scale in CHULA_SCALES:
        rows = original if scale == 1.0 else run(chula_paths, chula, None, scale, False, args.jobs)
        report["chula"][f"scale_{scale}"] = {**point_figures(rows), **describe(rows), "rbc_count_shift": count_shift(rows, original)}
        print("chula", scale, json.dumps(report["chula"][f"scale_{scale}"]), flush=True)
    jittered = run(chula_paths, chula, None, 1.0, True, args.jobs)
    report["chula"]["hed_0.05"] = {**point_figures(jittered), "rbc_count_shift": count_shift(jittered, original)}
    print("chula hed", json.dumps(report["chula"]["hed_0.05"]), flush=True)

    original = run(bccd_paths, bccd, bccd / "wbc_masks", 1.0, False, args.jobs)
    metrics = summarize([r["score"] for r in original])
    keys = ("wbc_f1", "wbc_dice", "rbc_count_mape_complete", "n_rbc_complete", "rbc_count_mape", "rbc_box_recall", "platelet_count_mae")
    report["bccd"]["scale_1.0"] = {**{k: metrics[k] for k in keys}, **describe(original)}
    print("bccd 1.0", json.dumps(report["bccd"]["scale_1.0"]), flush=True)
    for scale in BCCD_SCALES:
        if scale != 1.0:
            rows = run(bccd_paths, bccd, None, scale, False, args.jobs)
            report["bccd"][f"scale_{scale}"] = {"rbc_count_shift": count_shift(rows, original),
                                                "wbc_count_shift": count_shift(rows, original, "WBC"), **describe(rows)}  # fmt: skip
            print("bccd", scale, json.dumps(report["bccd"][f"scale_{scale}"]), flush=True)
    jittered = run(bccd_paths, bccd, None, 1.0, True, args.jobs)
    report["bccd"]["hed_0.05"] = {"rbc_count_shift": count_shift(jittered, original), "wbc_count_shift": count_shift(jittered, original, "WBC")}
    print("bccd hed", json.dumps(report["bccd"]["hed_0.05"]), flush=True)
    with atomic_write(args.out, "w") as handle:
        handle.write(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def _subset(paths: list[Path], limit: int) -> list[Path]:
    return paths if not limit or len(paths) <= limit else paths[:: -(-len(paths) // limit)]


if __name__ == "__main__":
    main()
