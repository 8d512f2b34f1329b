"""The mask of the cell nearest the image centre, and of its nucleus."""

from __future__ import annotations

import cv2
import numpy as np

from bloodcli.imaging.morphology import disc, fill_holes, otsu_threshold

#: Reach of the cytoplasm around the nucleus, in nucleus radii, and the share of the nuclear saturation
#: threshold that stained cytoplasm exceeds. Chosen on the even-numbered BCCD images' white-cell crops
#: (cell Dice against ``wbc_masks``); the odd-numbered ones report it (0.848 before, 0.900 after).
CYTOPLASM_REACH = 0.6
CYTOPLASM_SATURATION = 0.5


def segment_single_cell(rgb: np.ndarray, saturation: np.ndarray, join: float = 0.045) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the cell nearest the image centre and of its nucleus.

    The nuclear stain is the most saturated colour on a smear, so Otsu's threshold on saturation
    finds nuclei (and platelets). Nuclear blobs within ``join`` of the image size of each other are
    one nucleus (the lobes of a neutrophil); the one nearest the centre is the cell's. Its cytoplasm
    is the stained (moderately saturated) pixels connected to it within :data:`CYTOPLASM_REACH`
    nucleus radii, so the reach follows the cell, not the framing of the crop; the cell is the
    convex hull of nucleus and cytoplasm (blood cells are round).

    Returns
    -------
    cell, nucleus : ndarray of bool
        Both empty when the image has no stained object.
    """
    found = _central_nucleus(saturation, join)
    if found is None:
        return _nothing(saturation.shape)
    chosen, nucleus, threshold, distance = found
    nucleus_radius = float(np.sqrt(nucleus.sum() / np.pi))
    stained = (saturation > CYTOPLASM_SATURATION * threshold) & (distance <= max(1.0, CYTOPLASM_REACH * nucleus_radius))
    count, regions = cv2.connectedComponents((stained | nucleus).view(np.uint8), connectivity=8)
    cell = np.isin(regions, np.unique(regions[nucleus]))
    cell = cv2.morphologyEx(cell.view(np.uint8), cv2.MORPH_OPEN, disc(max(1.0, 0.1 * nucleus_radius))).astype(bool)
    return _convex_hull(cell | nucleus), nucleus


def segment_single_cell_v1(rgb: np.ndarray, saturation: np.ndarray, reach: float = 0.045) -> tuple[np.ndarray, np.ndarray]:
    """The first single-cell masks (cytoplasm within a fixed share of the image size of the nucleus).

    Kept so that model files trained on version-2 classical features still get exactly their features.

    The nuclear stain is the most saturated colour on a smear, so Otsu's threshold on
    saturation finds nuclei (and platelets). Dilating them by ``reach`` (a fraction of the image
    size) joins the lobes of one nucleus and covers the cytoplasm around it; the dilated
    component nearest the centre, restricted to stained (non-background) pixels, is the cell.

    Returns
    -------
    cell, nucleus : ndarray of bool
        Both empty when the image has no stained object.
    """
    found = _central_nucleus(saturation, reach)
    if found is None:
        return _nothing(saturation.shape)
    chosen, nucleus, threshold, _ = found
    stained = saturation > 0.5 * threshold
    cell = fill_holes((chosen & stained) | nucleus)
    return cell, nucleus


def _central_nucleus(saturation: np.ndarray, join: float):
    """The nuclear blobs within ``join`` of the image size of each other that lie nearest the centre.

    Returns that joined region, the nucleus in it, the nuclear saturation threshold and the distance
    of every pixel to the nearest nuclear pixel; None when the image has no stained object.
    """
    height, width = saturation.shape
    threshold = otsu_threshold(saturation)
    nuclear = (saturation > max(threshold, 15)).astype(np.uint8)
    nuclear = cv2.morphologyEx(nuclear, cv2.MORPH_OPEN, disc(1))
    # Dilation by a disc == distance to the nearest nuclear pixel <= radius (faster for large radii).
    distance = cv2.distanceTransform(1 - nuclear, cv2.DIST_L2, cv2.DIST_MASK_3)
    chosen = _central_component((distance <= max(1, int(round(join * max(height, width))))).view(np.uint8))
    if chosen is None:
        return None
    return chosen, chosen & nuclear.astype(bool), threshold, distance


def _nothing(shape) -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros(shape, dtype=bool)
    return empty, empty


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    points = cv2.findNonZero(mask.view(np.uint8))
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(points)], 1)
    return hull.astype(bool)


def _central_component(mask: np.ndarray, min_fraction: float = 0.002) -> np.ndarray | None:
    """The connected component nearest the centre, favouring large ones; None if there is none."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = mask.shape
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    large = areas >= min_fraction * height * width
    if count <= 1 or not large.any():
        return None
    distance = np.linalg.norm(centroids[1:] - [width / 2.0, height / 2.0], axis=1) / max(height, width)
    score = np.where(large, areas / areas.max() - 2.0 * distance, -np.inf)
    return labels == int(np.argmax(score)) + 1


#: Outline colours (RGB) of the single-cell mask overlays: cell green, nucleus blue.
CELL_COLOUR, NUCLEUS_COLOUR = (0, 200, 0), (20, 60, 255)


def draw_cell_masks(rgb: np.ndarray, cell: np.ndarray, nucleus: np.ndarray) -> np.ndarray:
    """The image with the outlines of the cell (green) and nucleus (blue) masks features are measured on."""
    out = rgb.copy()
    thickness = max(1, round(max(rgb.shape[:2]) / 300))
    for mask, colour in ((cell, CELL_COLOUR), (nucleus, NUCLEUS_COLOUR)):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, thickness, lineType=cv2.LINE_AA)
    return out
