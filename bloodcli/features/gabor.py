"""Gabor texture: energy of a small filter bank over wavelengths and orientations, inside the cell.

Each filter is the complex Gabor kernel of :func:`skimage.filters.gabor_kernel`, applied with OpenCV
(``filter2D``, mirrored borders as ``skimage.filters.gabor``); the feature is the mean and standard
deviation of the response magnitude over the cell mask, per wavelength and orientation.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features.base import CHANNELS, CellImage, FeatureExtractor


@lru_cache(maxsize=64)
def gabor_kernels(wavelength: float, angle_degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the Gabor kernel of ``skimage.filters.gabor_kernel(1 / wavelength, theta)``."""
    from skimage.filters import gabor_kernel

    kernel = gabor_kernel(1.0 / wavelength, theta=np.deg2rad(angle_degrees))
    return np.ascontiguousarray(kernel.real, np.float32), np.ascontiguousarray(kernel.imag, np.float32)


def gabor_magnitude(gray: np.ndarray, wavelength: float, angle_degrees: float) -> np.ndarray:
    """Magnitude of the complex Gabor response (equal to ``hypot(*skimage.filters.gabor(...))``)."""
    image = gray.astype(np.float32)
    real, imaginary = gabor_kernels(float(wavelength), float(angle_degrees))
    # filter2D correlates: the same as convolving for the even real part, a sign flip for the odd one (squared away).
    responses = [cv2.filter2D(image, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT) for k in (real, imaginary)]
    return np.hypot(*responses)


class GaborExtractor(FeatureExtractor):
    """Mean and spread of Gabor energy inside the cell for each wavelength and orientation."""

    name = "gabor"
    version = "2"  # 2: single-cell masks found coarse to fine
    mask_versions = {"1": 2}  # version 1's masks, still reproduced for earlier model files
    description = "Gabor texture: mean and std of filter-bank energy inside the cell (3 wavelengths x 4 orientations)"
    defaults = {"wavelengths": [4.0, 8.0, 16.0], "angles": [0, 45, 90, 135], "channel": "gray"}

    def validate(self) -> None:
        if not self.params["wavelengths"] or min(self.params["wavelengths"]) < 2:
            raise UsageError("gabor wavelengths must be at least 2 pixels")
        if not self.params["angles"]:
            raise UsageError("gabor needs at least one angle")
        self.check_choice("channel", CHANNELS)

    def feature_names(self) -> list[str]:
        return [f"gabor_l{w:g}_o{a:g}_{stat}" for w in self.params["wavelengths"] for a in self.params["angles"]
                for stat in ("mean", "std")]  # fmt: skip

    def compute(self, cell: CellImage) -> np.ndarray:
        gray, mask = cell.box_channel(self.params["channel"]), cell.box_cell_mask
        values = []
        for wavelength in self.params["wavelengths"]:
            for angle in self.params["angles"]:
                energy = gabor_magnitude(gray, wavelength, angle)[mask]
                values += [energy.mean(), energy.std()]
        return np.asarray(values, dtype=np.float32)
