"""Extractor interface and the per-image context shared by all classical extractors.

:class:`CellImage` computes colour conversions and the cell/nucleus masks lazily and once, so
several extractors on the same image never repeat a conversion.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any, ClassVar

import cv2
import numpy as np

from bloodcli.errors import UsageError


class CellImage:
    """One preprocessed single-cell image with lazily computed views.

    Masks come from the whole image; extractors then work on ``box_*`` views cropped to the
    cell's bounding box, where the cell is, so conversions and counts skip most of the crop.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
    """

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb

    @cached_property
    def gray(self) -> np.ndarray:
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def hsv(self) -> np.ndarray:
        """HSV with OpenCV ranges: H in [0, 180), S and V in [0, 255]."""
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2HSV)

    @cached_property
    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        return segment_single_cell(self.rgb, self.hsv[..., 1])

    @property
    def cell_mask(self) -> np.ndarray:
        return self.masks[0]

    @property
    def nucleus_mask(self) -> np.ndarray:
        return self.masks[1]

    @cached_property
    def box(self) -> tuple[slice, slice]:
        """Row and column slices of the cell's bounding box (the whole image if no cell was found)."""
        if not self.cell_mask.any():
            return slice(None), slice(None)
        x, y, w, h = cv2.boundingRect(self.cell_mask.view(np.uint8))
        return slice(y, y + h), slice(x, x + w)

    @cached_property
    def box_rgb(self) -> np.ndarray:
        return np.ascontiguousarray(self.rgb[self.box])

    @cached_property
    def box_gray(self) -> np.ndarray:
        return cv2.cvtColor(self.box_rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def box_hsv(self) -> np.ndarray:
        return self.hsv[self.box]

    @cached_property
    def box_lab(self) -> np.ndarray:
        """8-bit Lab (OpenCV scaling: L*255/100, a+128, b+128)."""
        return cv2.cvtColor(self.box_rgb, cv2.COLOR_RGB2LAB)

    @cached_property
    def box_cell_mask(self) -> np.ndarray:
        """The cell mask inside the box; all True when no cell was found (use the whole image)."""
        mask = self.cell_mask[self.box]
        return mask if mask.any() else np.ones(mask.shape, bool)

    @cached_property
    def box_nucleus_mask(self) -> np.ndarray:
        return self.nucleus_mask[self.box] & self.box_cell_mask


def otsu_threshold(channel: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Otsu's threshold of a ``uint8`` channel, optionally over the pixels in ``mask``."""
    values = channel if mask is None else channel[mask]
    if values.size == 0:
        return 255.0
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * levels) / np.maximum(weight_low, 1e-12)
    total_mean = (hist * levels).sum()
    mean_high = (total_mean - np.cumsum(hist * levels)) / np.maximum(weight_high, 1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between[:-1]))


def segment_single_cell(rgb: np.ndarray, saturation: np.ndarray, reach: float = 0.045) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the cell nearest the image centre and of its nucleus.

    The nuclear stain is the most saturated colour on a smear, so Otsu's threshold on
    saturation finds nuclei (and platelets). Dilating them by ``reach`` (a fraction of the image
    size) joins the lobes of one nucleus and covers the cytoplasm around it; the dilated
    component nearest the centre, restricted to stained (non-background) pixels, is the cell.

    Returns
    -------
    cell, nucleus : ndarray of bool
        Both empty when the image has no stained object.
    """
    height, width = saturation.shape
    threshold = otsu_threshold(saturation)
    nuclear = (saturation > max(threshold, 15)).astype(np.uint8)
    nuclear = cv2.morphologyEx(nuclear, cv2.MORPH_OPEN, disc(1))
    radius = max(1, int(round(reach * max(height, width))))
    # Dilation by a disc == distance to the nearest nuclear pixel <= radius (faster for large radii).
    distance = cv2.distanceTransform(1 - nuclear, cv2.DIST_L2, cv2.DIST_MASK_3)
    chosen = _central_component((distance <= radius).view(np.uint8))
    if chosen is None:
        empty = np.zeros(saturation.shape, dtype=bool)
        return empty, empty
    nucleus = chosen & nuclear.astype(bool)
    stained = saturation > 0.5 * threshold
    cell = fill_holes((chosen & stained) | nucleus)
    return cell, nucleus


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border (OpenCV flood fill)."""
    padded = np.pad((mask > 0).view(np.uint8), 1)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    return (padded | (1 - outside)).astype(bool)[1:-1, 1:-1]


def disc(radius: float) -> np.ndarray:
    """Elliptical structuring element of the given radius (rounded, at least 1 pixel)."""
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


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


class FeatureExtractor:
    """Base class of feature extractors registered in :data:`bloodcli.features.EXTRACTORS`.

    Subclasses set ``name``, ``version`` (bump it whenever output values change, so cached
    features are recomputed), ``defaults`` (the tunable parameters) and implement
    :meth:`feature_names` and :meth:`compute`. Batched extractors (CNN backbones) set
    ``batched = True`` and implement :meth:`compute_batch` instead.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    defaults: ClassVar[dict[str, Any]] = {}
    batched: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UsageError(
                f"unknown option(s) for feature '{self.name}': {', '.join(sorted(unknown))} "
                f"(known: {', '.join(self.defaults) or 'none'})"
            )
        self.params = {**self.defaults, **{k: parse_like(self.defaults[k], v, f"{self.name}.{k}") for k, v in params.items()}}
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UsageError` for unusable parameter values."""

    def spec(self) -> dict:
        """JSON-serialisable description that recreates this extractor."""
        return {"name": self.name, "version": self.version, "params": self.params}

    def fingerprint(self) -> str:
        return hashlib.blake2b(json.dumps(self.spec(), sort_keys=True).encode(), digest_size=8).hexdigest()

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    def compute(self, cell: CellImage) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Per-image work a batched extractor does before :meth:`compute_batch` (runs in threads)."""
        return image

    def compute_batch(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.compute(CellImage(image)) for image in images])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def settings_from_pairs(cls, items, what: str):
    """An instance of dataclass ``cls`` from ``NAME=VALUE`` strings; names left out keep their defaults.

    Names are case-insensitive and may use ``-`` for ``_``; values take the type of the default
    (:func:`parse_like`). ``what`` names the settings in the one-line error.
    """
    import dataclasses

    defaults = cls()
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {}
    for item in items:
        name, equals, value = (part.strip() for part in item.partition("="))
        name = name.lower().replace("-", "_")
        if not equals or name not in names or not value:
            raise UsageError(f"bad {what} {item!r}: expected NAME=VALUE with NAME one of {', '.join(names)}")
        changes[name] = parse_like(getattr(defaults, name), value, f"{what} {name}")
    return cls(**changes)


def parse_like(default, value, name: str = "value"):
    """Convert a command-line string to the type of ``default`` (lists: comma-separated)."""
    if not isinstance(value, str):
        return list(value) if isinstance(default, (list, tuple)) else value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            item_type = type(default[0]) if default else float
            return [item_type(v) for v in value.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"bad value {value!r} for {name} (expected {type(default).__name__})") from None
    return value
