"""Shape of the segmented cell and of its nucleus, measured on the masks (not on boxes)."""

from __future__ import annotations

import cv2
import numpy as np

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
    """Shape descriptors of all foreground pixels of a binary mask (zeros for an empty mask).

    Computed with OpenCV contours and moments. Axis lengths follow scikit-image's definition
    (4 * sqrt of the eigenvalues of the pixel covariance); ``perimeter`` is the length of the
    outer contours; ``solidity`` is area / area of the filled convex hull of all components;
    ``circularity`` is 4*pi*area/perimeter^2 (about 0.9 for a digitised disc).
    """
    pixels = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    area = float(cv2.countNonZero(pixels))
    if area == 0:
        return dict.fromkeys(REGION_PROPERTIES, 0.0)
    contours, _ = cv2.findContours(pixels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate(contours)
    perimeter = float(sum(cv2.arcLength(c, True) for c in contours))
    x, y, w, h = cv2.boundingRect(points)
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points) - [x, y], 1)
    major, minor = _axis_lengths(cv2.moments(pixels, binaryImage=True))
    return {
        "area": area,
        "perimeter": perimeter,
        "equivalent_diameter": float(np.sqrt(4.0 * area / np.pi)),
        "major_axis_length": major,
        "minor_axis_length": minor,
        "eccentricity": float(np.sqrt(max(0.0, 1.0 - (minor / major) ** 2))) if major > 0 else 0.0,
        "circularity": float(min(4.0 * np.pi * area / perimeter**2, 1.5)) if perimeter > 0 else 0.0,
        "solidity": area / max(float(hull.sum()), area),
        "extent": area / float(w * h),
        "aspect_ratio": major / minor if minor > 0 else 0.0,
    }


def _axis_lengths(moments: dict) -> tuple[float, float]:
    """Major and minor axis lengths of the ellipse with the same second moments."""
    count = moments["m00"]
    mu20, mu02, mu11 = moments["mu20"] / count, moments["mu02"] / count, moments["mu11"] / count
    root = np.sqrt(((mu20 - mu02) / 2.0) ** 2 + mu11**2)
    mean = (mu20 + mu02) / 2.0
    return 4.0 * float(np.sqrt(mean + root)), 4.0 * float(np.sqrt(max(mean - root, 0.0)))


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
    version = "2"
    description = "cell and nucleus shape: area, perimeter, eccentricity, circularity, solidity, lobes, Hu moments"
    defaults = {"hu_moments": True}

    def feature_names(self) -> list[str]:
        names = [f"shape_cell_{p}" for p in REGION_PROPERTIES]
        names += [f"shape_nucleus_{p}" for p in NUCLEUS_PROPERTIES]
        if self.params["hu_moments"]:
            names += [f"shape_cell_hu{k}" for k in range(1, 8)]
        return names

    def compute(self, cell: CellImage) -> np.ndarray:
        cell_mask = cell.cell_mask[cell.box]  # empty when no cell was found: all shape values 0
        cell_shape = region_shape(cell_mask)
        nucleus = cell.box_nucleus_mask & cell_mask
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
            features = np.concatenate([features, hu_moments(cell_mask)])
        return features.astype(np.float32)

