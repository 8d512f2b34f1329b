"""The extractor interface (:class:`FeatureExtractor`) and the per-image context shared by classical extractors.

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
from bloodcli.imaging.cell_mask import MASK_VERSION, SINGLE_CELL_MASKS
from bloodcli.imaging.cielab import rgb_to_lab
from bloodcli.imaging.stain import hematoxylin_channel
from bloodcli.settings import parse_like


#: Grey channels texture extractors read (:meth:`CellImage.box_channel`).
CHANNELS = ("gray", "hematoxylin")


class CellImage:
    """One preprocessed single-cell image with lazily computed views.

    Masks come from the whole image; extractors then work on ``box_*`` views cropped to the
    cell's bounding box, where the cell is, so conversions and counts skip most of the crop.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
    """

    def __init__(self, rgb: np.ndarray, mask_version: int = MASK_VERSION, roi: str = "cell"):
        self.rgb = rgb
        self.mask_version = mask_version
        self.roi = roi  # "image": the whole image is the region measured (inputs that are not single cells)

    @cached_property
    def gray(self) -> np.ndarray:
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        if self.roi == "image":
            return np.ones(self.rgb.shape[:2], bool), np.zeros(self.rgb.shape[:2], bool)
        return SINGLE_CELL_MASKS[self.mask_version](self.rgb)

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

    def box_channel(self, name: str) -> np.ndarray:
        """The cell's box as one ``uint8`` channel: ``"gray"`` (luminance) or ``"hematoxylin"`` (nuclear stain density)."""
        if name == "gray":
            return self.box_gray
        if "hematoxylin" not in self.__dict__:
            self.__dict__["hematoxylin"] = hematoxylin_channel(self.box_rgb)
        return self.__dict__["hematoxylin"]

    @cached_property
    def box_hsv(self) -> np.ndarray:
        """HSV of the cell's box with OpenCV ranges: H in [0, 180), S and V in [0, 255]."""
        return cv2.cvtColor(self.box_rgb, cv2.COLOR_RGB2HSV)

    @cached_property
    def box_lab(self) -> np.ndarray:
        """8-bit Lab (OpenCV scaling: L*255/100, a+128, b+128)."""
        return rgb_to_lab(self.box_rgb)

    @cached_property
    def box_cell_mask(self) -> np.ndarray:
        """The cell mask inside the box; all True when no cell was found (use the whole image)."""
        mask = self.cell_mask[self.box]
        return mask if mask.any() else np.ones(mask.shape, bool)

    @cached_property
    def box_nucleus_mask(self) -> np.ndarray:
        return self.nucleus_mask[self.box] & self.box_cell_mask


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

    #: Earlier versions this code still computes exactly, each with the single-cell mask version it used.
    mask_versions: ClassVar[dict[str, int]] = {}
    #: Parameters bloodcli fills in itself (recorded for reproduction, not for ``-F``).
    derived_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def tunable_defaults(cls) -> dict[str, Any]:
        """The ``defaults`` a user sets with ``-F NAME.PARAM=VALUE``."""
        return {k: v for k, v in cls.defaults.items() if k not in cls.derived_params}

    def __init__(self, check_resources: bool = True, version: str | None = None, **params):
        self.version = str(version or type(self).version)  # an earlier version when a model file asks for one
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UsageError(
                f"unknown option(s) for feature '{self.name}': {', '.join(sorted(unknown))} "
                f"(known: {', '.join(self.defaults) or 'none'})"
            )
        self.params = {**self.defaults, **{k: parse_like(self.defaults[k], v, f"{self.name}.{k}") for k, v in params.items()}}
        self.validate()
        if check_resources:
            self.check_resources()

    def validate(self) -> None:
        """Raise :class:`UsageError` for unusable parameter values (depends on the parameters only)."""

    def check_choice(self, param: str, choices: tuple[str, ...]) -> None:
        """A :class:`UsageError` unless parameter ``param`` is one of ``choices``."""
        if self.params[param] not in choices:
            raise UsageError(f"{self.name} {param} must be " + " or ".join(f"'{c}'" for c in choices))

    def check_resources(self) -> None:
        """Find (and fingerprint) what computing needs beyond the parameters, e.g. a weights file.

        Skipped with ``check_resources=False`` where only :meth:`feature_names` is needed.
        """

    def spec(self) -> dict:
        """JSON-serialisable description that recreates this extractor."""
        return {"name": self.name, "version": self.version, "params": self.params}

    def fingerprint(self) -> str:
        return hashlib.blake2b(json.dumps(self.spec(), sort_keys=True).encode(), digest_size=8).hexdigest()

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    @cached_property
    def n_features(self) -> int:
        """Length of :meth:`compute`'s vector (the parameters are fixed, so counted once)."""
        return len(self.feature_names())

    def compute(self, cell: CellImage) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Per-image work a batched extractor does before :meth:`compute_batch` (runs in threads)."""
        return image

    @property
    def mask_version(self) -> int:
        """Version of the single-cell masks this extractor's version is computed on."""
        return self.mask_versions.get(self.version, MASK_VERSION)

    def compute_batch(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.compute(CellImage(image, self.mask_version)) for image in images])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"
