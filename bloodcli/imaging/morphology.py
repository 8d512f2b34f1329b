"""Binary-mask morphology shared by single-cell masks, smear segmentation and shape features."""

from __future__ import annotations

import cv2
import numpy as np


def otsu_threshold(channel: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Otsu's threshold of a ``uint8`` channel, optionally over the pixels in ``mask``."""
    hist = cv2.calcHist([np.ascontiguousarray(channel, np.uint8)], [0], None if mask is None else mask.view(np.uint8), [256], [0, 256])
    hist = hist.ravel().astype(np.float64)
    if hist.sum() == 0:
        return 255.0
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * levels) / np.maximum(weight_low, 1e-12)
    total_mean = (hist * levels).sum()
    mean_high = (total_mean - np.cumsum(hist * levels)) / np.maximum(weight_high, 1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between[:-1]))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border (OpenCV flood fill)."""
    padded = np.pad((mask > 0).view(np.uint8), 1)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    return (padded | (1 - outside)).astype(bool)[1:-1, 1:-1]


def fill_round_holes(mask: np.ndarray, max_area: float, min_solidity: float = 0.8) -> np.ndarray:
    """Fill the holes of ``mask`` that are small and convex, like the pale centre of a red cell.

    The background enclosed between touching cells is concave (a curved triangle between three
    discs) and background enclosed by a ring of cells is large: both stay background, so cells
    around them keep their own centres.
    """
    mask = mask > 0
    holes = fill_holes(mask) & ~mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(holes.view(np.uint8), connectivity=4)
    keep = np.zeros(count, bool)
    for index in np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_area):
        if index == 0:
            continue
        x, y, w, h, area = stats[index]
        if area < 5 or _solidity(labels[y : y + h, x : x + w] == index, area) >= min_solidity:
            keep[index] = True
    return mask | keep[labels]


def _solidity(region: np.ndarray, area: int) -> float:
    contours, _ = cv2.findContours(region.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
    return float(area / hull) if hull > 0 else 1.0


def disc(radius: float) -> np.ndarray:
    """Elliptical structuring element of the given radius (rounded, at least 1 pixel)."""
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


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


def region_shape(mask: np.ndarray, moments: dict | None = None) -> dict[str, float]:
    """Shape descriptors of all foreground pixels of a binary mask (zeros for an empty mask).

    Computed with OpenCV contours and moments (``moments``: the mask's binary-image moments when
    already computed). Axis lengths follow scikit-image's definition (4 * sqrt of the eigenvalues
    of the pixel covariance); ``perimeter`` is the length of the outer contours; ``solidity`` is
    area / area of the filled convex hull of all components; ``circularity`` is
    4*pi*area/perimeter^2 (about 0.9 for a digitised disc).
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
    major, minor = _axis_lengths(moments or cv2.moments(pixels, binaryImage=True))
    return {
        "area": area,
        "perimeter": perimeter,
        "equivalent_diameter": float(np.sqrt(4.0 * area / np.pi)),
        "major_axis_length": major,
        "minor_axis_length": minor,
        "eccentricity": float(np.sqrt(max(0.0, 1.0 - (minor / major) ** 2))) if major > 0 else 0.0,
        "circularity": float(min(4.0 * np.pi * area / perimeter**2, 1.5)) if perimeter > 0 else 0.0,
        "solidity": area / max(float(cv2.countNonZero(hull)), area),
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
