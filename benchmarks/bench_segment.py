"""Smear segmentation speed: milliseconds per 640x480 image on one core.

Times :func:`bloodcli.segmentation.smear.segment_image` alone (images decoded beforehand, so disk and
JPEG decoding are excluded) in one process with OpenCV limited to one thread, for each method.
Reports the median of ``--repeats`` passes over the images; the target is <= 50 ms per image
with watershed.

Usage: python benchmarks/bench_segment.py [--data DIR] [--limit N] [--repeats R]
Prints JSON and writes benchmarks/results/segment.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: no hidden threading in numpy/scipy

import cv2  # noqa: E402

from bloodcli.io.files import atomic_write  # noqa: E402
from bloodcli.io.images import read_image  # noqa: E402
from bloodcli.segmentation.smear import METHODS, segment_image  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "JPEGImages"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "bccd" / "JPEGImages"
RESULTS = Path(__file__).resolve().parent / "results"


def time_method(images, method: str, repeats: int) -> dict:
    """Median and best per-image time over ``repeats`` passes (after one warm-up image)."""
    segment_image(images[0], method)
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for image in images:
            segment_image(image, method)
        passes.append((time.perf_counter() - start) / len(images) * 1000.0)
    return {"ms_per_image": round(statistics.median(passes), 2), "ms_per_image_best": round(min(passes), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.is_dir() else SAMPLE)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    paths = sorted(args.data.glob("*.jpg"))[: args.limit]
    images = [read_image(p) for p in paths]
    result = {
        "benchmark": "segment_image per 640x480 image, one core",
        "data": str(args.data), "n_images": len(images), "repeats": args.repeats,
        "image_size": f"{images[0].shape[1]}x{images[0].shape[0]}",
        "methods": {m: time_method(images, m, args.repeats) for m in METHODS},
        "target_ms_watershed": 50, "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }  # fmt: skip
    result["meets_target"] = result["methods"]["watershed"]["ms_per_image"] <= 50
    text = json.dumps(result, indent=2)
    print(text)
    with atomic_write(RESULTS / "segment.json", "w") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
