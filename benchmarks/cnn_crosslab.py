"""Cross-lab check of the fine-tuned CNN: train on PBC white cells, test on BCCD white cells.

Train: ../shared/data/pbc {neutrophil, lymphocyte, monocyte, eosinophil} (1,600 crops). Test: the BCCD
white cells of those classes (339 crops around the single VOC WBC box, 10 % margin; built as in
``benchmarks/crosslab.py``). The network and its recipe are the defaults of ``bloodcli train -m cnn``
(MobileNetV2 alpha 0.35 from the shipped weights, 128 px, on-the-fly augmentation fixed from the
literature before any BCCD score was seen); no setting here was chosen by looking at BCCD scores.
The default framing (``--framing auto``: every image cut to the PBC crops' median side in red-cell
diameters, estimated per image) was designed from image geometry alone, before its BCCD score was run.
``--framing none`` gives the images as they are (the earlier default). ``--cell-frame F`` adds the
framing step of the classical ablation (which was chosen while looking at BCCD scores: reported apart,
never as the default).

The same network is then scored on shifted copies of the BCCD test set, none of which it or any setting
saw: smears rescaled 0.5x and 2x (boxes scaled alike) and HED stain-jittered (strength 0.05, seeded).

Usage: python benchmarks/cnn_crosslab.py [--image-size 128] [--epochs N] [--framing auto|none|N] [--cell-frame F]
(a non-default image size, framing or cell frame is named in the output file)
(writes benchmarks/results/cnn_crosslab*.json)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from crosslab import SHARED, WEIGHTS, bccd_white_cells, pbc_white_cells

from bloodcli import api
from bloodcli.imaging.augmentation import hed_jitter
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.learn.cnn.settings import CNNSettings

ROOT = Path(__file__).resolve().parents[1]


def _rescaled(factor: float):
    def change(image: np.ndarray, box: list[int]):
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC), [round(v * factor) for v in box]

    return change


def _stain_jittered(image: np.ndarray, box: list[int]):
    return hed_jitter(image, np.random.default_rng(int(image.sum()) % 2**32), 0.05), box


SHIFTS = {"rescaled_0.5x": _rescaled(0.5), "rescaled_2x": _rescaled(2.0), "hed_jitter_0.05": _stain_jittered}


def shifted_copy(manifest: Path, folder: Path, change) -> Path:
    """A copy of a box manifest whose images (and boxes) went through ``change(image, box)``."""
    folder.mkdir()
    rows = list(csv.DictReader(open(manifest)))
    for row in rows:
        box = [int(float(row[k])) for k in ("xmin", "ymin", "xmax", "ymax")]
        target = folder / Path(row["path"]).name
        image, box = change(cv2.cvtColor(cv2.imread(row["path"]), cv2.COLOR_BGR2RGB), box)
        if not target.exists():
            cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        row.update(path=str(target), xmin=box[0], ymin=box[1], xmax=box[2], ymax=box[3])
    with open(folder / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "manifest.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=CNNSettings.image_size)
    parser.add_argument("--epochs", type=int, default=CNNSettings.epochs)
    parser.add_argument("--cell-frame", type=float, default=None)
    parser.add_argument("--framing", default="auto")
    args = parser.parse_args()
    if not (SHARED / "pbc").is_dir() or not (SHARED / "bccd").is_dir():
        sys.exit(f"skipped: {SHARED}/pbc or bccd not found")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    framing = args.framing if args.framing in ("auto", "none") else float(args.framing)
    settings = CNNSettings(weights=str(WEIGHTS), image_size=args.image_size, epochs=args.epochs, framing=framing)
    preprocessing = Preprocessing(cell_frame=args.cell_frame)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        test = bccd_white_cells(Path(folder))
        run = api.train_and_test_cnn(pbc_white_cells(), test, settings, preprocessing,
                                     on_epoch=lambda line: print(line, flush=True))  # fmt: skip
        shifted = {name: round(api.evaluate_cnn(run.model, shifted_copy(test, Path(folder) / name, change))[0]["balanced_accuracy"], 4)
                   for name, change in SHIFTS.items()}  # fmt: skip
    metrics = run.metrics
    summary = {
        "protocol": metrics["protocol"], "preprocessing": preprocessing.describe(), "n_test": metrics.get("n_samples"),
        "framing": run.model.settings.framing, "balanced_accuracy": metrics["balanced_accuracy"], "accuracy": metrics["accuracy"],
        "recall": {c: m.get("recall") for c, m in metrics.get("per_class", {}).items()},
        "shifted_test_balanced_accuracy": shifted, "training_cost": run.model.provenance["training_cost"], "wall_seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    suffix = ("" if args.cell_frame is None else f"_frame{args.cell_frame:g}") + ("" if args.framing == "auto" else f"_framing_{args.framing}")
    suffix += "" if args.image_size == CNNSettings.image_size else f"_{args.image_size}px"
    out = ROOT / "benchmarks" / "results" / f"cnn_crosslab{suffix}.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
