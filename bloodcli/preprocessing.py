"""Preprocessing shared by every feature extractor.

The settings are a small frozen dataclass; they are part of every cache key and are stored in
trained models so ``predict`` reproduces exactly the features the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from bloodcli.errors import UsageError


@dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing applied before feature extraction, in the order of the fields.

    Parameters
    ----------
    resize : int or None
        Scale so the longer side has this many pixels (aspect ratio kept).
    gaussian_sigma : float
        Gaussian blur standard deviation in pixels (0 = off).
    median_size : int
        Median filter aperture, odd (0 = off).
    clahe_clip : float
        CLAHE clip limit on the lightness channel of Lab (0 = off).
    grayscale : bool
        Replace colour by luminance (the result keeps three identical channels).
    """

    resize: int | None = None
    gaussian_sigma: float = 0.0
    median_size: int = 0
    clahe_clip: float = 0.0
    grayscale: bool = False

    def __post_init__(self):
        if self.resize is not None and self.resize < 8:
            raise UsageError(f"--resize must be at least 8 pixels, got {self.resize}")
        if self.gaussian_sigma < 0:
            raise UsageError("--gaussian must be >= 0")
        if self.median_size and (self.median_size < 3 or self.median_size % 2 == 0):
            raise UsageError("--median must be an odd number >= 3 (or 0 to disable)")
        if self.clahe_clip < 0:
            raise UsageError("--clahe must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Preprocessing":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def describe(self) -> str:
        active = [f"{k}={v}" for k, v in self.to_dict().items() if v not in (None, 0, 0.0, False)]
        return ", ".join(active) or "none"

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Return the preprocessed RGB ``uint8`` image (the input is not modified)."""
        image = rgb
        if self.resize:
            image = resize_longer_side(image, self.resize)
        if self.gaussian_sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), self.gaussian_sigma)
        if self.median_size:
            image = cv2.medianBlur(image, self.median_size)
        if self.clahe_clip > 0:
            image = clahe(image, self.clahe_clip)
        if self.grayscale:
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            image = np.repeat(grey[..., None], 3, axis=2)
        return image


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side equals ``size``; area interpolation when shrinking."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale == 1.0:
        return image
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, new_size, interpolation=interpolation)


def clahe(image: np.ndarray, clip_limit: float, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the Lab lightness channel."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    lab[..., 0] = equaliser.apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
