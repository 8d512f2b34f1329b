"""Fine-tuned CNN, 5-fold CV on ../shared/data/pbc (3,200 crops, 8 classes), on the machine it runs on.

MobileNetV2 from the shipped ImageNet weights (alpha 0.35, read from the file), the default
training recipe of :class:`bloodcli.learn.cnn.settings.CNNSettings` and its default on-the-fly
augmentation. The folds are those of ``bloodcli train --folds 5`` and ``compare`` (seed 0).
Prints accuracy and balanced accuracy (pooled and per fold), wall time per fold and per epoch,
training throughput (images seen per second) and inference throughput.

Images are framed as ``bloodcli train -m cnn`` frames them (``--framing auto`` by default; ``--framing
none``: as they are, the figure from before the framing step).

Usage: python benchmarks/cnn_pbc_cv.py [--folds 5] [--image-size 128] [--epochs 10] [--max-folds K] [--framing auto|none|N]
(writes benchmarks/results/cnn_pbc_cv.json)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from bloodcli.io.datasets import load_dataset
from bloodcli.learn.cnn.evaluation import validate_network
from bloodcli.learn.cnn.images import ImageSet
from bloodcli.learn.cnn.network import resolve_weights
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.splits import make_folds

ROOT = Path(__file__).resolve().parents[1]
PBC = ROOT.parent / "shared" / "data" / "pbc"
WEIGHTS = ROOT / "sample_data" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=None, help="Run only the first K folds (a partial estimate).")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=CNNSettings.epochs)
    parser.add_argument("--framing", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cnn_pbc_cv.json")
    args = parser.parse_args()
    if not PBC.is_dir():
        sys.exit(f"skipped: {PBC} not found")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    framing = args.framing if args.framing in ("auto", "none") else float(args.framing)
    settings = resolve_weights(CNNSettings(weights=str(WEIGHTS), image_size=args.image_size, epochs=args.epochs, framing=framing))
    start = time.perf_counter()
    dataset = load_dataset(PBC)
    settings = settings.framed_for(dataset.samples)  # as train does: "auto" framing measured on the images, no labels
    data = ImageSet.load(dataset, settings.image_size, framing=settings.framing_ratio)
    load_seconds = time.perf_counter() - start
    splits = make_folds(data.labels, data.groups, args.folds, 0)[: args.max_folds]
    fold_start = time.perf_counter()
    result, costs = validate_network(data, splits, settings, f"{args.folds}-fold CV", on_epoch=lambda line: print(line, flush=True))
    wall = time.perf_counter() - fold_start
    summary = {
        "settings": {k: v for k, v in settings.to_dict().items() if k != "weights"}, "n_images": len(data),
        "folds_run": len(splits), "folds": args.folds, "load_seconds": round(load_seconds, 1),
        "accuracy": result.metrics["accuracy"], "balanced_accuracy": result.metrics["balanced_accuracy"],
        "fold_accuracy": [m["accuracy"] for m in result.fold_metrics], "fold_costs": costs,
        "wall_seconds_per_fold": round(wall / len(splits), 1),
        "train_images_per_second": float(np.mean([1 / c["seconds_per_image"] for c in costs])),
        "predict_images_per_second": float(np.mean([1 / c["predict_seconds_per_image"] for c in costs])),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("settings", "fold_costs")}, indent=2))


if __name__ == "__main__":
    main()
