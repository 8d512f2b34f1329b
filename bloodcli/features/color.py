"""Colour statistics and histograms of the cell, its nucleus and its cytoplasm."""

from __future__ import annotations

import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features.base import CellImage, FeatureExtractor

CHANNELS = (("rgb", "r"), ("rgb", "g"), ("rgb", "b"), ("hsv", "h"), ("hsv", "s"), ("hsv", "v"),
            ("lab", "l"), ("lab", "a"), ("lab", "b"))  # fmt: skip
STATISTICS = ("mean", "std", "p10", "p50", "p90")
HISTOGRAMS = (("hsv", "h", 180), ("hsv", "s", 256), ("lab", "a", 256), ("lab", "b", 256))


class ColorExtractor(FeatureExtractor):
    """Per-channel RGB/HSV/Lab statistics over the cell; mean colour of nucleus and cytoplasm;
    normalised histograms of hue, saturation and the Lab chroma channels over the cell.

    Channels use OpenCV's 8-bit ranges (hue in [0, 180)).
    """

    name = "color"
    version = "1"
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
        mask = cell.cell_mask if cell.cell_mask.any() else np.ones(cell.gray.shape, bool)
        stack = np.concatenate([cell.rgb, cell.hsv, cell.lab], axis=2)  # (H, W, 9)
        cell_pixels = stack[mask].astype(np.float32)  # (N, 9)
        percentiles = np.percentile(cell_pixels, [10, 50, 90], axis=0)
        stats = np.stack([cell_pixels.mean(0), cell_pixels.std(0), *percentiles], axis=1).ravel()
        nucleus = cell.nucleus_mask & mask
        cytoplasm = mask & ~nucleus
        region_means = [_mean_or(stack, region, cell_pixels.mean(0)) for region in (nucleus, cytoplasm)]
        histograms = [self._histogram(stack, mask, space, channel, top) for space, channel, top in HISTOGRAMS]
        return np.concatenate([stats, *region_means, *histograms]).astype(np.float32)

    def _histogram(self, stack, mask, space, channel, top) -> np.ndarray:
        index = [c for c in CHANNELS].index((space, channel))
        values = stack[..., index][mask]
        counts = np.bincount((values.astype(np.int32) * self.params["bins"]) // top, minlength=self.params["bins"])
        return counts[: self.params["bins"]] / max(values.size, 1)


def _mean_or(stack: np.ndarray, region: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return stack[region].mean(axis=0) if region.any() else fallback
