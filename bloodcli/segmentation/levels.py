"""Slide background and red-cell contrast, read from each image's own lightness.

Red cells are found as pixels clearly darker than the slide background. How much darker depends on
the stain, the lamp and the camera, so the threshold is a fixed fraction of this image's gap
between the background (a high percentile of Lab lightness) and the typical cell (the median of the
darker Otsu class), kept within bounds.
"""

from __future__ import annotations

import numpy as np

from bloodcli.imaging.morphology import otsu_threshold

#: Threshold as a fraction of the background-to-cell gap: the median gap over the BCCD smears the
#: defaults were tuned on is 40 L* levels, and 0.45 of it is their former fixed contrast of 18.
CONTRAST_FRACTION = 0.45
CONTRAST_BOUNDS = (6.0, 30.0)


def background_level(lightness: np.ndarray, percentile: float = 90.0) -> float:
    """Lightness of the slide background: the smear's bright majority."""
    return float(np.percentile(lightness, percentile))


def red_cell_contrast(lightness: np.ndarray, percentile: float = 90.0, fraction: float = CONTRAST_FRACTION,
                      bounds: tuple[float, float] = CONTRAST_BOUNDS) -> float:  # fmt: skip
    """How much darker than the background (Lab L*, 0-255) a pixel must be to belong to a red cell.

    Parameters
    ----------
    lightness : ndarray of uint8
        Lab L* of the (lightly blurred) image.
    percentile : float
        Percentile taken as the background.
    fraction : float
        Share of the gap between background and typical cell lightness.
    bounds : (float, float)
        Smallest and largest threshold: a blank slide does not lower it into the noise.
    """
    background = background_level(lightness, percentile)
    darker = lightness[lightness <= otsu_threshold(lightness)]
    gap = background - float(np.median(darker)) if darker.size else 0.0
    return float(np.clip(fraction * gap, *bounds))
