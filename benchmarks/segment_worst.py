"""Contact sheet of the images segmentation counts worst, with their ground truth drawn on the overlays.

Chula: the three images with the largest red-cell count error among those whose points mark every
cell (points cover >= 90 % of the red-cell pixels), and the two with the lowest point coverage (the
annotation marks only some cells). BCCD: the three largest count errors among images whose VOC
boxes are complete. Points are yellow dots, VOC red-cell boxes yellow rectangles; the overlay
colours are segmentation's (red cells red, white cells blue, platelets green).

Usage: python benchmarks/segment_worst.py [--shared DIR] [--out FILE]   (default benchmarks/results/segment_worst.jpg)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bloodcli.io.files import atomic_write
from bloodcli.io.images import read_image
from bloodcli.segmentation.scoring import find_truth, score_image
from bloodcli.segmentation.smear import draw_overlay, segment_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
TILE = (480, 360)


def scored(folder: Path):
    """(path, segmentation, score, points, boxes) of every image of a data set."""
    for path in sorted((folder / "JPEGImages").glob("*.jpg")):
        boxes, _, points = find_truth(path, folder, None)
        seg = segment_image(read_image(path))
        yield path, seg, score_image(seg, path.name, boxes, None, points), points, boxes


def tile(path: Path, seg, score, points, boxes, caption: str) -> np.ndarray:
    image = draw_overlay(read_image(path), seg)
    for x, y in [] if points is None else points:
        cv2.circle(image, (int(x), int(y)), 3, (255, 230, 0), -1)
    for name, (xmin, ymin, xmax, ymax) in boxes or []:
        if name == "RBC":
            cv2.rectangle(image, (xmin, ymin), (xmax, ymax), (255, 230, 0), 1)
    image = cv2.resize(image, TILE, interpolation=cv2.INTER_AREA)
    cv2.rectangle(image, (0, 0), (TILE[0], 22), (255, 255, 255), -1)
    cv2.putText(image, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=RESULTS / "segment_worst.jpg")
    args = parser.parse_args()
    chula = list(scored(args.shared / "chula"))
    complete = [c for c in chula if c[2].rbc_point_coverage >= 0.9]
    worst = sorted(complete, key=lambda c: -abs(c[2].rbc - c[2].rbc_points) / c[2].rbc_points)[:3]
    partial = sorted(chula, key=lambda c: c[2].rbc_point_coverage)[:2]
    bccd = [b for b in scored(args.shared / "bccd") if b[2].rbc_true and b[2].rbc_box_coverage >= 0.9]
    worst_bccd = sorted(bccd, key=lambda b: -abs(b[2].rbc - b[2].rbc_true) / b[2].rbc_true)[:3]
    tiles = [tile(*c, f"chula {c[0].stem}: {c[2].rbc} found, {c[2].rbc_points} points") for c in worst]
    tiles += [tile(*c, f"chula {c[0].stem}: points cover {c[2].rbc_point_coverage:.0%}") for c in partial]
    tiles += [tile(*b, f"bccd {b[0].stem[-5:]}: {b[2].rbc} found, {b[2].rbc_true} boxes") for b in worst_bccd]
    tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + 3]) for i in range(0, 9, 3)]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    with atomic_write(args.out) as handle:
        handle.write(encoded.tobytes())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
