"""Colour statistics and histograms of the cell, its nucleus and its cytoplasm.

Every channel is 8-bit, so all statistics, region means included, come from 256-bin histograms
of the nucleus and the cytoplasm per channel, counted by OpenCV: no sorting, no float copies of
the image.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features.base import CellImage, FeatureExtractor

CHANNELS = (("rgb", "r"), ("rgb", "g"), ("rgb", "b"), ("hsv", "h"), ("hsv", "s"), ("hsv", "v"),
            ("lab", "l"), ("lab", "a"), ("lab", "b"))  # fmt: skip
STATISTICS = ("mean", "std", "p10", "p50", "p90")
PERCENTILES = (0.10, 0.50, 0.90)
HISTOGRAMS = (("hsv", "h", 180), ("hsv", "s", 256), ("lab", "a", 256), ("lab", "b", 256))
_LEVELS = np.arange(256, dtype=np.float64)


def histogram_statistics(histograms: np.ndarray) -> np.ndarray:
    """Mean, std and the 10th/50th/90th percentiles (lower nearest rank) of each histogram row."""
    counts = np.maximum(histograms.sum(axis=1, keepdims=True), 1)
    mean = (histograms * _LEVELS).sum(axis=1, keepdims=True) / counts
    variance = (histograms * (_LEVELS - mean) ** 2).sum(axis=1, keepdims=True) / counts
    cumulative = np.cumsum(histograms, axis=1) / counts
    percentiles = np.stack([(cumulative < q).sum(axis=1) for q in PERCENTILES], axis=1).astype(np.float64)
    return np.concatenate([mean, np.sqrt(variance), np.minimum(percentiles, 255)], axis=1)


class ColorExtractor(FeatureExtractor):
    """Per-channel RGB/HSV/Lab statistics over the cell; mean colour of nucleus and cytoplasm;
    normalised histograms of hue, saturation and the Lab chroma channels over the cell.

    Channels use OpenCV's 8-bit ranges (hue in [0, 180)).
    """

    name = "color"
    version = "4"  # 3: single-cell masks reach the whole cytoplasm (convex hull); 4: masks found coarse to fine
    mask_versions = {"2": 1, "3": 2}  # earlier versions' masks, still reproduced for earlier model files
    description = "RGB/HSV/Lab statistics of cell, nucleus and cytoplasm; hue/saturation/chroma histograms"
    defaults = {"bins": 16}

    def validate(self) -> None:
        if not 2 <= self.params["bins"] <= 256:
            raise UsageError("color bins must be between 2 and 256")

    def feature_names(self) -> list[str]:
        names = [f"color_{space}_{ch}_{stat}" for space, ch in CHANNELS for stat in STATISTICS]
        names += [f"color_{region}_{space}_{ch}_mean" for region in ("nucleus", "cytoplasm") for space, ch in CHANNELS]
        names += [
            f"color_{space}_{ch}_hist{k:02d}" for space, ch, _ in HISTOGRAMS for k in range(self.params["bins"])
        ]
        return names

    def compute(self, cell: CellImage) -> np.ndarray:
        nucleus, cytoplasm = region_histograms((cell.box_rgb, cell.box_hsv, cell.box_lab), cell.box_cell_mask, cell.box_nucleus_mask)
        whole = nucleus + cytoplasm  # the nucleus mask lies inside the cell mask
        stats = histogram_statistics(whole)
        nucleus_mean = _histogram_mean(nucleus, stats[:, 0])
        cytoplasm_mean = _histogram_mean(cytoplasm, stats[:, 0])
        levels = whole[_HISTOGRAM_ROWS]
        merged = np.einsum("kl,klb->kb", levels, _rebinning(self.params["bins"]))  # integer counts: exact in any order
        histograms = merged / np.maximum(levels.sum(axis=1, keepdims=True), 1)
        return np.concatenate([stats.ravel(), nucleus_mean, cytoplasm_mean, histograms.ravel()]).astype(np.float32)


#: Rows of :data:`CHANNELS` the :data:`HISTOGRAMS` are taken from.
_HISTOGRAM_ROWS = [CHANNELS.index((space, ch)) for space, ch, _ in HISTOGRAMS]


@functools.cache
def _rebinning(bins: int) -> np.ndarray:
    """0/1 matrices merging each histogram's 256 levels into ``bins`` equal bins over ``[0, top)``, shape (4, 256, bins)."""
    targets = [np.minimum((np.arange(256) * bins) // top, bins - 1) for _, _, top in HISTOGRAMS]
    return np.stack([np.eye(bins)[target] for target in targets])


def region_histograms(images, cell: np.ndarray, nucleus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """256-bin histograms of every channel of 3-channel ``uint8`` images over the nucleus and over the rest of the cell.

    One 2-D histogram per channel against a region image (0 outside, 1 cytoplasm, 2 nucleus) counts
    both regions in one pass. ``nucleus`` must lie inside ``cell``. Each result has shape ``(3 * len(images), 256)``.
    """
    regions = cell.view(np.uint8) + nucleus.view(np.uint8)
    counts = np.stack([cv2.calcHist([regions, image], [0, 1 + c], None, [3, 256], [0, 3, 0, 256]) for image in images for c in range(3)])
    return counts[:, 2].astype(np.float64), counts[:, 1].astype(np.float64)


def _histogram_mean(histograms: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Mean level of each histogram row; ``fallback`` for an empty region."""
    counts = histograms.sum(axis=1)
    return (histograms @ _LEVELS) / counts if counts[0] > 0 else fallback
