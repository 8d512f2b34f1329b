"""How large red cells are in a smear image, estimated from the image itself.

Every size in :class:`~bloodcli.segmentation.smear.SegmentationParams` is given for red cells of
:data:`REFERENCE_DIAMETER` pixels; each image is analysed at the resolution that brings its own
red cells to that size, so one set of settings works at any magnification and camera.

The estimate: red-cell pixels are those clearly darker than the slide background (the image's own
brightest mode), pale centres filled; the distance transform's maximum inside each connected
region is the radius of the largest cell in it (touching cells keep their own centres, clumps
are no wider than their cells), and the median over regions ignores a few white cells, debris
and platelets.

Examples
--------
>>> import numpy as np, cv2
>>> image = np.full((240, 320, 3), 235, np.uint8)
>>> for x in (60, 160, 260):
...     _ = cv2.circle(image, (x, 120), 20, (200, 120, 130), -1)
>>> round(estimate_rbc_diameter(image))
40
"""

from __future__ import annotations

import cv2
import numpy as np

from bloodcli.imaging.morphology import disc, fill_holes
from bloodcli.segmentation.levels import background_level, red_cell_contrast

#: Red-cell diameter (full-resolution pixels) that the segmentation settings are written for:
#: the median estimate over the 364 BCCD smears the defaults were tuned on.
REFERENCE_DIAMETER = 96.0
#: Working resolution of the estimate (longer side, pixels) and the sizes it can report.
_WORKING_SIDE = 480
_MIN_RADIUS_PX = 2.0


def estimate_rbc_diameter(rgb: np.ndarray, contrast: float | None = None, background_percentile: float = 90.0) -> float | None:
    """Typical red-cell diameter of a smear image in its own pixels; None when no cell-like region is found.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
    contrast : float, optional
        How much darker (Lab L*, 0-255) than the background a pixel must be to belong to a cell
        (default: :func:`~bloodcli.segmentation.levels.red_cell_contrast` of the image).
    background_percentile : float
        Percentile of lightness taken as the slide background.
    """
    factor = min(1.0, _WORKING_SIDE / max(rgb.shape[:2]))
    small = rgb if factor == 1.0 else cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    lightness = cv2.cvtColor(cv2.GaussianBlur(small, (0, 0), 1.0), cv2.COLOR_RGB2LAB)[..., 0]
    background = background_level(lightness, background_percentile)
    if contrast is None:
        contrast = red_cell_contrast(lightness, background_percentile)
    cells = fill_holes(lightness.astype(np.int16) <= background - contrast).view(np.uint8)
    cells = cv2.morphologyEx(cells, cv2.MORPH_OPEN, disc(1))
    radius = median_opening_radius(cells)
    return None if radius is None else float(2.0 * radius / factor)


def median_opening_radius(mask: np.ndarray, steps: int = 48) -> float | None:
    """Granulometry: the disc radius whose opening removes half of ``mask``'s area (None for an empty mask).

    Opening by a disc of radius ``k`` keeps the pixels within ``k`` of a point deeper than ``k``
    inside the mask, so one distance transform per radius gives the whole size distribution.
    Discs of radius ``r``, touching or not, all vanish at ``k = r``; a few larger white cells or
    clumps and a few specks of debris move the median little.
    """
    total = int(np.count_nonzero(mask))
    if total == 0:
        return None
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    radii = np.geomspace(_MIN_RADIUS_PX, max(_MIN_RADIUS_PX + 1, float(depth.max())), steps)

    def halved(index: int) -> bool:  # does opening at radii[index] remove at least half the area?
        core = (depth > radii[index]).view(np.uint8)
        return not core.any() or np.count_nonzero(cv2.distanceTransform(1 - core, cv2.DIST_L2, 5) <= radii[index]) <= 0.5 * total

    low, high = 0, steps - 1  # the kept area only shrinks as the radius grows: bisect
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if halved(middle) else (middle + 1, high)
    return float(radii[low])
