"""White cells cropped from a smear as the model's training crops were framed.

A model file's training profile (:mod:`bloodcli.pipeline.data_profile`) records the median crop height
and width and the median diameter of the cell at their centre. A white cell found in a smear is cut
out as a window of the same size *relative to its own diameter*, centred on the cell (shifted to stay
inside the smear; where the window is larger than the smear, the rest is slide-coloured), then resized to the training crop size, so the cell also has the training
diameter in pixels: the classifier sees crops like those it was fitted on, whatever the smear's
magnification. The cell's diameter is first taken from its segmented area, then measured again in
that first window with the single-cell mask the training diameters were measured with. Models without a recorded profile get the crops ``segment --crops`` writes (the
object's box plus :data:`~bloodcli.segmentation.batch.CROP_MARGIN`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bloodcli.imaging.stain import cell_diameter, centred_window
from bloodcli.io.datasets import _pad_box, crop
from bloodcli.pipeline.data_profile import framing
from bloodcli.segmentation.batch import CROP_MARGIN


@dataclass(frozen=True)
class Framing:
    """Crop size per cell diameter and the crop size in pixels of the training images (None: box crops)."""

    height_per_diameter: float | None = None
    width_per_diameter: float | None = None
    size: tuple[int, int] | None = None  # (height, width)

    @classmethod
    def of(cls, profile: dict | None) -> "Framing":
        ratios = framing(profile)
        if ratios is None:
            return cls()
        return cls(ratios[0], ratios[1], (round(profile["height"][1]), round(profile["width"][1])))

    @property
    def known(self) -> bool:
        return self.size is not None

    def describe(self) -> str:
        if not self.known:
            return f"box + {CROP_MARGIN:.0%} margin (the model file records no training framing)"
        return (f"{self.height_per_diameter:.2f} x {self.width_per_diameter:.2f} cell diameters, "
                f"resized to {self.size[1]}x{self.size[0]} px as the training crops")  # fmt: skip

    def to_dict(self) -> dict:
        return {"height_per_diameter": self.height_per_diameter, "width_per_diameter": self.width_per_diameter,
                "size": list(self.size) if self.size else None, "description": self.describe()}  # fmt: skip

    def crop(self, rgb: np.ndarray, box: tuple[int, int, int, int], centroid: tuple[float, float], area: float) -> np.ndarray:
        """The crop of the cell with bounding ``box``, ``centroid`` (x, y) and ``area`` (pixels) in ``rgb``."""
        if not self.known:
            return crop(rgb, _pad_box(box, CROP_MARGIN))
        centre = (round(centroid[1]), round(centroid[0]))
        diameter = max(2.0, float(np.sqrt(4.0 * area / np.pi)))
        window = self._window(rgb, centre, diameter)
        # Measured again as the training crops were (the single-cell mask), so both sides use one ruler.
        measured = cell_diameter(window)
        if 0.5 * diameter <= measured <= 2.0 * diameter:
            window = self._window(rgb, centre, measured)
        height, width = self.size
        shrink = height * width < window.shape[0] * window.shape[1]
        return cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def _window(self, rgb: np.ndarray, centre: tuple[int, int], diameter: float) -> np.ndarray:
        half_height = max(2, round(self.height_per_diameter * diameter / 2))
        half_width = max(2, round(self.width_per_diameter * diameter / 2))
        # Shifted to stay inside the smear where it fits, and filled, not mirrored, beyond it: a mirror copies cells.
        cy, cx = _inside(centre[0], half_height, rgb.shape[0]), _inside(centre[1], half_width, rgb.shape[1])
        return centred_window(rgb, cy, cx, half_height, half_width, fill=_background(rgb))


def _background(rgb: np.ndarray) -> np.ndarray:
    """The slide's colour: the median of its brightest tenth of pixels (fills a window larger than the smear)."""
    pixels = rgb.reshape(-1, 3)
    brightness = pixels.sum(axis=1, dtype=np.int32)
    return np.median(pixels[brightness >= np.percentile(brightness, 90)], axis=0)


def _inside(centre: int, half: int, size: int) -> int:
    return min(max(centre, half), size - half) if 2 * half <= size else centre
