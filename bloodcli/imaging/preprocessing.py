"""Preprocessing shared by every feature extractor.

The settings are a small frozen dataclass; they are part of every cache key and are stored in
trained models so ``predict`` reproduces exactly the features the model was trained on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from bloodcli.errors import UsageError

if TYPE_CHECKING:  # NumPy and OpenCV load in the functions that touch pixels: the settings load with the CLI's help
    import numpy as np


#: Largest --resize and --cell-diameter, in pixels: single-cell crops are far smaller, and an
#: image of this side already takes tens of megabytes per processing step.
MAX_SIDE = 4096
#: Largest median aperture (OpenCV's median of a larger aperture is a blur no cell survives).
MAX_MEDIAN = 99


def check_range(option: str, value, low: float, high: float) -> None:
    """Refuse (usage error) a value that is not a finite number in ``[low, high]``; NaN and infinity included."""
    try:
        ok = math.isfinite(float(value)) and low <= float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"{option} must be a number from {low:g} to {high:g}, got {value}")


@dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing applied before feature extraction, in the order of the fields.

    Parameters
    ----------
    cell_frame : float or None
        Crop a square of this many cell diameters around the central cell (e.g. 1.5), so
        datasets cropped tightly and loosely frame the cell alike.
    stain : {"reinhard", "macenko"} or None
        Stain normalisation towards ``stain_target`` (see :mod:`bloodcli.stain`).
    stain_target : tuple of float or None
        Reference statistics, fitted on training images by :func:`fit_references`.
    cell_diameter : float, "auto" or None
        Rescale so the central cell's equivalent diameter has this many pixels ("auto": the
        median of the training images, fitted by :func:`fit_references`).
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
    roi : {"cell", "image"}
        Where classical features are measured: the cell nearest the centre (found by its nuclear
        stain), or the whole image, for inputs that are not single-cell crops (e.g. photographs of a palm).
    """

    cell_frame: float | None = None
    stain: str | None = None
    stain_target: tuple[float, ...] | None = None
    cell_diameter: float | str | None = None
    resize: int | None = None
    gaussian_sigma: float = 0.0
    median_size: int = 0
    clahe_clip: float = 0.0
    grayscale: bool = False
    roi: str = "cell"

    def __post_init__(self):
        if self.stain is not None:
            from bloodcli.imaging.stain import STAIN_METHODS  # NumPy and OpenCV: only when a stain is named

            if self.stain not in STAIN_METHODS:
                raise UsageError(f"--stain must be one of {', '.join(STAIN_METHODS)}, got {self.stain!r}")
        if self.stain_target is not None:  # JSON gives lists; keep settings comparable
            object.__setattr__(self, "stain_target", tuple(float(v) for v in self.stain_target))
        if self.cell_diameter is not None and self.cell_diameter != "auto":
            try:
                object.__setattr__(self, "cell_diameter", float(self.cell_diameter))
            except ValueError:
                raise UsageError(f"--cell-diameter must be 'auto' or a number, got {self.cell_diameter!r}") from None
            check_range("--cell-diameter", self.cell_diameter, 1, MAX_SIDE)
        if self.cell_frame is not None:
            check_range("--cell-frame (cell diameters)", self.cell_frame, 1, 10)
        if self.resize is not None:
            check_range("--resize", self.resize, 8, MAX_SIDE)
        check_range("--gaussian", self.gaussian_sigma, 0, 100)
        check_range("--clahe", self.clahe_clip, 0, 1000)
        if self.median_size and (not 3 <= self.median_size <= MAX_MEDIAN or self.median_size % 2 == 0):
            raise UsageError(f"--median must be an odd number from 3 to {MAX_MEDIAN} (or 0 to disable), got {self.median_size}")
        if self.roi not in ("cell", "image"):
            raise UsageError(f"--roi must be 'cell' or 'image', got {self.roi!r}")

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["roi"] == "cell":  # the default is left out: settings recorded before --roi keep their fingerprints
            del data["roi"]
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> "Preprocessing":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def describe(self) -> str:
        active = [f"{k}={v}" for k, v in self.to_dict().items() if v not in (None, 0, 0.0, False) and k != "stain_target"]
        return ", ".join(active) or "none"

    @property
    def needs_fitting(self) -> bool:
        """True when a reference (stain statistics, cell size) must be fitted on training images first."""
        return self.stain is not None and self.stain_target is None or self.cell_diameter == "auto"

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Return the preprocessed RGB ``uint8`` image (the input is not modified)."""
        import cv2
        import numpy as np

        image = rgb
        if self.cell_frame:
            from bloodcli.imaging.stain import frame_cell

            image = frame_cell(image, float(self.cell_frame))
        if self.stain is not None:
            if self.stain_target is None:
                raise UsageError("stain normalisation needs a reference: fit it on training images first")
            from bloodcli.imaging.stain import normalise_stain

            image = normalise_stain(image, self.stain, self.stain_target)
        if self.cell_diameter == "auto":
            raise UsageError("--cell-diameter auto needs fitting on training images first")
        if self.cell_diameter:
            from bloodcli.imaging.stain import rescale_to_cell_diameter

            image = rescale_to_cell_diameter(image, self.cell_diameter)
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
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale == 1.0:
        return image
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, new_size, interpolation=interpolation)


def clahe(image: np.ndarray, clip_limit: float, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the Lab lightness channel."""
    import cv2

    from bloodcli.imaging.cielab import lab_to_rgb, rgb_to_lab

    lab = rgb_to_lab(image)
    equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    lab[..., 0] = equaliser.apply(lab[..., 0])
    return lab_to_rgb(lab)


def fit_references(preprocessing: Preprocessing, images) -> Preprocessing:
    """Fill in stain statistics and the "auto" cell diameter from training images.

    Parameters
    ----------
    preprocessing : Preprocessing
    images : iterable of RGB uint8 arrays
        Training images (a sample of them is enough); they use no labels.
    """
    from dataclasses import replace

    from bloodcli.imaging.stain import fit_reference

    if not preprocessing.needs_fitting:
        return preprocessing
    method = preprocessing.stain if preprocessing.stain_target is None else None
    fit_scale = preprocessing.cell_diameter == "auto"
    if preprocessing.cell_frame:  # references describe the images as the extractors will see them
        from bloodcli.imaging.stain import frame_cell

        images = (frame_cell(image, float(preprocessing.cell_frame)) for image in images)
    target, diameter = fit_reference(list(images), method, fit_scale)
    if method and target is None:
        raise UsageError(f"could not fit {method} stain statistics: no stained pixels in the training images")
    if fit_scale and diameter is None:
        raise UsageError("could not fit the cell diameter: no cell found in the training images")
    return replace(
        preprocessing,
        stain_target=target or preprocessing.stain_target,
        cell_diameter=diameter if fit_scale else preprocessing.cell_diameter,
    )
