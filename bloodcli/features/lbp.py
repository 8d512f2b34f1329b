"""Local binary patterns: uniform LBP histograms of the cell at a few radii.

Each pixel's pattern compares ``points`` neighbours on a circle of ``radius`` with the centre
(:func:`skimage.feature.local_binary_pattern`, rotation-invariant uniform variant: ``points + 2``
codes). The histogram is counted over the cell mask only, so the slide background does not dilute it.
"""

from __future__ import annotations

import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features.base import CHANNELS, CellImage, FeatureExtractor


def lbp_histogram(gray: np.ndarray, radius: int, points: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalised histogram of rotation-invariant uniform LBP codes (``points + 2`` bins) inside ``mask``."""
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(gray, points, radius, method="uniform").astype(np.intp)
    values = codes if mask is None else codes[mask]
    counts = np.bincount(values.ravel(), minlength=points + 2).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


class LBPExtractor(FeatureExtractor):
    """Uniform LBP histograms of the grey (or haematoxylin) image inside the cell, one per (radius, points)."""

    name = "lbp"
    version = "2"  # 2: single-cell masks found coarse to fine
    mask_versions = {"1": 2}  # version 1's masks, still reproduced for earlier model files
    description = "local binary patterns: uniform LBP histograms inside the cell at radii 1, 2, 3"
    defaults = {"radii": [1, 2, 3], "points": [8, 16, 24], "channel": "gray"}

    def validate(self) -> None:
        radii, points = self.params["radii"], self.params["points"]
        if not radii or len(radii) != len(points):
            raise UsageError("lbp radii and points must be lists of the same, non-zero length")
        if min(radii) < 1 or min(points) < 4 or max(points) > 64:
            raise UsageError("lbp radii must be >= 1 and points between 4 and 64")
        self.check_choice("channel", CHANNELS)

    def feature_names(self) -> list[str]:
        return [f"lbp_r{r}_p{p}_u{code}" for r, p in zip(self.params["radii"], self.params["points"]) for code in range(p + 2)]

    def compute(self, cell: CellImage) -> np.ndarray:
        gray, mask = cell.box_channel(self.params["channel"]), cell.box_cell_mask
        hists = [lbp_histogram(gray, r, p, mask) for r, p in zip(self.params["radii"], self.params["points"])]
        return np.concatenate(hists).astype(np.float32)
