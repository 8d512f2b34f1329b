"""CNN training and inference throughput on this machine: MobileNetV2 alpha 0.35 (shipped weights), 128 px.

Fits the default recipe on every 4th image of ../shared/data/pbc (800 images) for two epochs of each phase and
prints each epoch's training images per second (the validation pass included; the first epoch of a phase also
traces the step), then inference images per second on decoded images in memory (twice: the first includes tracing).

Usage: python benchmarks/cnn_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bloodcli.io.datasets import Dataset, load_dataset
from bloodcli.learn.cnn.images import ImageSet
from bloodcli.learn.cnn.network import resolve_weights
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.cnn.training import fit_network, predict_probabilities
from bloodcli.learn.labels import encode_labels

ROOT = Path(__file__).resolve().parents[1]
PBC = ROOT.parent / "shared" / "data" / "pbc"
WEIGHTS = ROOT / "sample_data" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


def main() -> None:
    if not PBC.is_dir():
        sys.exit(f"skipped: {PBC} not found")
    dataset = load_dataset(PBC)
    data = ImageSet.load(Dataset(dataset.samples[::4], str(PBC), "folder"), 128)
    settings = resolve_weights(CNNSettings(weights=str(WEIGHTS), epochs=2, head_epochs=2, patience=10))
    classes = sorted(set(data.labels))
    fitted = fit_network(data.images, encode_labels(data.labels, classes), len(classes), settings)
    for epoch in fitted.history:
        print(f"{epoch['phase']} epoch {epoch['epoch']}: {epoch['seconds']:.1f} s, {fitted.n_train / epoch['seconds']:.0f} training img/s")
    for _ in range(2):
        start = time.perf_counter()
        predict_probabilities(fitted.model, data.images, settings)
        print(f"inference: {len(data) / (time.perf_counter() - start):.0f} img/s (decoded images in memory)")


if __name__ == "__main__":
    main()
