"""Red-cell count error on BCCD against how complete each image's VOC red-cell boxes are.

Segments every BCCD image (watershed, defaults), scores it against the VOC boxes, and groups
images by *box coverage*: the fraction of segmented red-cell pixels that lie inside some VOC
``RBC`` box. If the count error came from the segmenter, it would not depend on coverage; if it
comes from unboxed cells, our per-image count stays flat while the VOC count and the error
track coverage. Also writes a contact sheet of the lowest-coverage images (VOC boxes in
yellow over our outlines) so a person can check the unboxed cells by eye.

Usage: python benchmarks/segment_voc_gaps.py [--data DIR] [--sheet N]
Writes benchmarks/results/segment_voc_gaps.json and segment_voc_gaps.jpg.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bloodcli.io.datasets import read_voc_boxes
from bloodcli.io.files import atomic_write
from bloodcli.segmentation.batch import segment_files

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd"
RESULTS = Path(__file__).resolve().parent / "results"
BINS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)
YELLOW = (0, 255, 255)  # BGR


def coverage_table(scores) -> list[dict]:
    """Count error per box-coverage bin (images with at least one VOC red-cell box)."""
    boxed = [s for s in scores if s.rbc_true]
    rows = []
    for low, high in zip(BINS, BINS[1:]):
        group = [s for s in boxed if low <= s.rbc_box_coverage < high]
        if not group:
            continue
        found = np.array([s.rbc for s in group], float)
        truth = np.array([s.rbc_true for s in group], float)
        rows.append({
            "coverage": f"[{low:.1f}, {min(high, 1.0):.1f}]", "n_images": len(group),
            "rbc_count_mape": round(float((np.abs(found - truth) / truth).mean()), 3),
            "rbc_count_bias": round(float((found - truth).mean()), 2),
            "mean_found": round(float(found.mean()), 1), "mean_voc_boxes": round(float(truth.mean()), 1),
        })  # fmt: skip
    return rows


def contact_sheet(out_dir: Path, scores, count: int, columns: int = 3, data: Path = BCCD) -> np.ndarray:
    """Overlays of the ``count`` lowest-coverage images with the VOC red-cell boxes drawn on."""
    worst = sorted((s for s in scores if s.rbc_true), key=lambda s: s.rbc_box_coverage)[:count]
    tiles = []
    for score in worst:
        stem = Path(score.image).stem
        tile = cv2.imread(str(out_dir / "overlays" / f"{stem}.png"))
        for name, (xmin, ymin, xmax, ymax) in read_voc_boxes(data / "Annotations" / f"{stem}.xml")[1]:
            if name == "RBC":
                cv2.rectangle(tile, (xmin, ymin), (xmax, ymax), YELLOW, 2)
        tile = cv2.resize(tile, (480, 360), interpolation=cv2.INTER_AREA)
        caption = f"{stem}: found {score.rbc} red cells, VOC {score.rbc_true} boxes"
        cv2.rectangle(tile, (0, 0), (480, 24), (0, 0, 0), -1)
        cv2.putText(tile, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BCCD)
    parser.add_argument("--sheet", type=int, default=6, help="images on the contact sheet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = segment_files(sorted((args.data / "JPEGImages").glob("*.jpg")), tmp, voc_dir=args.data / "Annotations", jobs=2)
        sheet = contact_sheet(Path(tmp), run.scores, args.sheet, data=args.data)
    result = {
        "command": "bloodcli segment BCCD --method watershed --evaluate BCCD",
        "metrics": {k: v for k, v in run.metrics.items() if k.startswith("rbc")},
        "by_box_coverage": coverage_table(run.scores),
    }
    text = json.dumps(result, indent=2)
    print(text)
    with atomic_write(RESULTS / "segment_voc_gaps.json", "w") as handle:
        handle.write(text + "\n")
    ok, jpeg = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 80])
    with atomic_write(RESULTS / "segment_voc_gaps.jpg", "wb") as handle:
        handle.write(jpeg.tobytes())


if __name__ == "__main__":
    main()
