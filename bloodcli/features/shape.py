"""Shape of the segmented cell and of its nucleus, measured on the masks (not on boxes)."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.measure import regionprops

from bloodcli.features.base import CellImage, FeatureExtractor

REGION_PROPERTIES = (
    "area",
    "perimeter",
    "equivalent_diameter",
    "major_axis_length",
    "minor_axis_length",
    "eccentricity",
    "circularity",
    "solidity",
    "extent",
    "aspect_ratio",
)
NUCLEUS_PROPERTIES = ("area_ratio", "lobes", "area", "eccentricity", "circularity", "solidity")


def region_shape(mask: np.ndarray) -> dict[str, float]:
    """Shape descriptors of the largest region of a binary mask (zeros for an empty mask).

    ``circularity`` is 4*pi*area/perimeter^2 (1 for a disc); ``aspect_ratio`` is
    major/minor axis length.
    """
    if not mask.any():
        return dict.fromkeys(REGION_PROPERTIES, 0.0)
    regions = regionprops(mask.astype(np.uint8))
    region = regions[0]
    perimeter = float(region.perimeter)
    minor = float(region.axis_minor_length)
    major = float(region.axis_major_length)
    return {
        "area": float(region.area),
        "perimeter": perimeter,
        "equivalent_diameter": float(region.equivalent_diameter_area),
        "major_axis_length": major,
        "minor_axis_length": minor,
        "eccentricity": float(region.eccentricity),
        "circularity": float(min(4.0 * np.pi * region.area / perimeter**2, 1.5)) if perimeter > 0 else 0.0,
        "solidity": float(region.solidity),
        "extent": float(region.extent),
        "aspect_ratio": major / minor if minor > 0 else 0.0,
    }


def count_lobes(nucleus: np.ndarray, min_fraction: float = 0.05) -> int:
    """Number of nuclear lobes: connected components above ``min_fraction`` of the nucleus area.

    A light erosion first separates lobes joined by thin chromatin bridges, as in
    segmented neutrophils.
    """
    total = int(nucleus.sum())
    if total == 0:
        return 0
    eroded = cv2.erode(nucleus.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    count, _, stats, _ = cv2.connectedComponentsWithStats(eroded, connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= min_fraction * total).sum())


def hu_moments(mask: np.ndarray) -> np.ndarray:
    """Log-scaled Hu moment invariants of a binary mask (translation/scale/rotation invariant)."""
    hu = cv2.HuMoments(cv2.moments(mask.astype(np.uint8), binaryImage=True)).ravel()
    return -np.sign(hu) * np.log10(np.abs(hu) + 1e-30) * (np.abs(hu) > 1e-30)


class ShapeExtractor(FeatureExtractor):
    """Morphology of the cell mask (Otsu on saturation) and of the nucleus inside it."""

    name = "shape"
    version = "1"
    description = "cell and nucleus shape: area, perimeter, eccentricity, circularity, solidity, lobes, Hu moments"
    defaults = {"hu_moments": True}

    def feature_names(self) -> list[str]:
        names = [f"shape_cell_{p}" for p in REGION_PROPERTIES]
        names += [f"shape_nucleus_{p}" for p in NUCLEUS_PROPERTIES]
        if self.params["hu_moments"]:
            names += [f"shape_cell_hu{k}" for k in range(1, 8)]
        return names

    def compute(self, cell: CellImage) -> np.ndarray:
        cell_shape = region_shape(cell.cell_mask)
        nucleus = cell.nucleus_mask
        nucleus_shape = region_shape(nucleus)  # all lobes together: lobed nuclei have low solidity
        cell_area = cell_shape["area"]
        nucleus_area = float(nucleus.sum())
        values = [cell_shape[p] for p in REGION_PROPERTIES]
        values += [
            nucleus_area / cell_area if cell_area else 0.0,
            float(count_lobes(nucleus)),
            nucleus_area,
            nucleus_shape["eccentricity"],
            nucleus_shape["circularity"],
            nucleus_shape["solidity"],
        ]
        features = np.asarray(values, dtype=np.float64)
        if self.params["hu_moments"]:
            features = np.concatenate([features, hu_moments(cell.cell_mask)])
        return features.astype(np.float32)

