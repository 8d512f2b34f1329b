"""Segment whole smear images into red cells, white cells and platelets.

The pipeline works on the stain colours of a Wright–Giemsa smear (HSV) and on lightness:

1. *Nuclear stain*: nuclei and platelets are the most saturated purple pixels. Nearby
   purple blobs are joined (lobes of one nucleus); large groups are white cells, small ones
   platelets, tiny ones debris.
2. *White cell body*: the cytoplasm around a nucleus shares its purple hue at a lower
   saturation; purple pixels within ``wbc_reach`` of a nucleus, hole-filled and convex, make
   the whole white cell (nucleus + cytoplasm), as drawn in the BCCD ``wbc_masks``.
3. *Red cells*: outside white cells and platelets, the band of pixels at least
   ``rbc_contrast`` darker (Lab L*) than the image's own background; pale red cells have too
   little saturation for a hue test. ``"hsv"`` takes each connected component as one red
   cell; ``"watershed"`` splits touching red cells from the peaks of the distance transform.
   Cells cut by the image edge count only when ``rbc_edge_min_area`` of them shows.

Sizes come from the image: its typical red-cell diameter is estimated first
(:mod:`bloodcli.segmentation.scale`, or given as ``rbc_diameter``), and the image is analysed at
the resolution that gives its red cells the reference size (:data:`REFERENCE_DIAMETER` pixels
times ``params.scale``). Lengths and areas in :class:`SegmentationParams` are in pixels of that
reference magnification, so the same settings hold for any microscope and camera. They were
tuned on BCCD (640x480 images, red cells about 96 pixels across).

Examples
--------
>>> from bloodcli.imaging import read_image
>>> from bloodcli.segmentation import segment_image
>>> seg = segment_image(read_image("sample_data/bccd/JPEGImages/BloodImage_00117.jpg"))  # doctest: +SKIP
>>> seg.counts                                                                            # doctest: +SKIP
{'RBC': 12, 'WBC': 1, 'platelet': 2}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi

from bloodcli.errors import UsageError
from bloodcli.imaging.cielab import rgb_to_lab
from bloodcli.imaging.morphology import disc, fill_holes, fill_round_holes, region_shape
from bloodcli.segmentation.levels import background_level
from bloodcli.segmentation.red_cells import (
    REFERENCE_CELL_AREA,
    drop_small,
    median_area,
    merge_fragments,
    split_clumps,
    split_touching,
)
from bloodcli.segmentation import RBC_DIAMETER_UM
from bloodcli.segmentation.scale import REFERENCE_DIAMETER, measure_smear
from bloodcli.settings import settings_from_pairs

CLASSES = ("RBC", "WBC", "platelet")
METHODS = ("hsv", "watershed")
#: Outline colour (RGB) of each class in overlays: red cells red, white cells blue, platelets green.
CLASS_COLOURS = {"RBC": (230, 30, 30), "WBC": (20, 60, 255), "platelet": (0, 200, 0)}


#: Bounds of the parameters that are not just non-negative: (low, high, what the user reads).
_RANGES = {
    **{name: (0, 180, "a hue in [0, 180]") for name in ("nucleus_hue_min", "nucleus_hue_max", "cytoplasm_hue_min", "cytoplasm_hue_max")},
    **{name: (0, 255, "a saturation in [0, 255]") for name in ("nucleus_sat_min", "cytoplasm_sat_min")},
    "rbc_contrast": (0, 255, "a lightness step in [0, 255] (0 = from the image)"),
    "background_percentile": (0, 100, "a percentile in [0, 100]"),
}


@dataclass(frozen=True)
class SegmentationParams:
    """Every threshold of the segmentation; hue in OpenCV units [0, 180), S in [0, 255].

    Lengths and areas are in pixels of the reference magnification (red cells
    :data:`REFERENCE_DIAMETER` pixels across); each image is rescaled to it (masks are returned at
    the image's own size).
    """

    scale: float = 0.4  # analysis resolution relative to the reference magnification (1 = full)
    rbc_diameter: float = 0.0  # red-cell diameter in the image's own pixels; 0 = estimate it per image
    blur: float = 1.5  # Gaussian sigma (full-res pixels) before thresholding
    nucleus_hue_min: int = 110
    nucleus_hue_max: int = 155
    nucleus_sat_min: int = 80
    nucleus_join: int = 12  # nuclear blobs closer than this belong to one cell
    wbc_nucleus_min_area: int = 1500  # a nuclear group at least this large is a white cell
    platelet_min_area: int = 60  # smaller nuclear blobs are debris
    cytoplasm_hue_min: int = 112
    cytoplasm_hue_max: int = 158
    cytoplasm_sat_min: int = 22
    wbc_reach: int = 45  # cytoplasm lies within this distance of the nucleus
    wbc_convex: bool = True  # white cells are round: take the convex hull of the body
    background_percentile: float = 90.0  # lightness of the bright background, per image
    rbc_contrast: int = 0  # red cells are this much darker (Lab L*, 0-255) than background; 0 = from the image
    rbc_open: int = 3  # opening radius that cuts thin bridges and speckle
    rbc_min_area: int = 1200  # smaller red fragments are debris
    rbc_edge_min_area: int = 6000  # red cells cut by the image edge count only when this much shows
    peak_min_distance: int = 45  # watershed seeds: distance-transform peaks this far apart (about half a cell)
    peak_min_height: float = 12.0  # ... at least this deep inside the cell (pixels); a region without one gets its deepest point
    rbc_typical_area: int = 0  # area of one red cell; 0 = the median watershed region of each image
    rbc_clump_factor: float = 2.0  # a watershed region this many red cells large is a clump; 0 turns splitting off
    rbc_fragment_factor: float = 0.5  # a watershed region below this share of a red cell joins its neighbour

    def __post_init__(self) -> None:
        if not 0.1 <= self.scale <= 1.0:
            raise UsageError(f"segmentation scale must be in [0.1, 1], got {self.scale}")
        if not (self.rbc_diameter == 0 or 4 <= self.rbc_diameter <= 1000):
            raise UsageError(f"rbc_diameter must be 0 (estimate) or 4 to 1000 pixels, got {self.rbc_diameter}")
        for name in (f.name for f in dataclasses.fields(self)):
            value = getattr(self, name)
            low, high, unit = _RANGES.get(name, (0, math.inf, "a non-negative number"))
            if not isinstance(value, bool) and not low <= value <= high:  # NaN fails too
                raise UsageError(f"{name} must be {unit}, got {value}")

    @classmethod
    def from_strings(cls, items: list[str] | None) -> "SegmentationParams":
        """Parameters from ``NAME=VALUE`` strings (command line), the rest left at defaults."""
        return settings_from_pairs(cls, items or [], "segmentation parameter")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CellObject:
    """One segmented object; ``bbox`` is (xmin, ymin, xmax, ymax) with exclusive max."""

    object_id: int
    cls: str
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]  # (x, y)
    area: int
    shape: dict[str, float] = field(default_factory=dict)

    def to_row(self) -> dict:
        xmin, ymin, xmax, ymax = self.bbox
        row = {"object_id": self.object_id, "class": self.cls, "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}
        row.update(centroid_x=round(self.centroid[0], 2), centroid_y=round(self.centroid[1], 2), area=self.area)
        row.update({f"shape_{k}": round(v, 5) for k, v in self.shape.items() if k != "area"})
        return row


@dataclass
class Segmentation:
    """Label image (0 = background, ``object_id`` elsewhere) and the table of objects."""

    labels: np.ndarray  # uint16, (H, W)
    objects: list[CellObject]
    method: str
    rbc_diameter: float = REFERENCE_DIAMETER  # the red-cell diameter the image was analysed for (its own pixels)

    @property
    def counts(self) -> dict[str, int]:
        return {name: sum(o.cls == name for o in self.objects) for name in CLASSES}

    def class_mask(self, name: str) -> np.ndarray:
        """Boolean mask of every object of class ``name``."""
        ids = [o.object_id for o in self.objects if o.cls == name]
        return np.isin(self.labels, ids) if ids else np.zeros(self.labels.shape, dtype=bool)

    def boxes(self, name: str) -> list[tuple[int, int, int, int]]:
        return [o.bbox for o in self.objects if o.cls == name]


def segment_image(rgb: np.ndarray, method: str = "watershed", params: SegmentationParams | None = None) -> Segmentation:
    """Segment an RGB smear image into red cells, white cells and platelets.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
    method : {"hsv", "watershed"}
        How red cells are separated: connected components, or a distance-transform watershed
        that splits touching cells.
    params : SegmentationParams, optional

    Returns
    -------
    Segmentation
        Blank or background-only images give no objects.
    """
    check_method(method)
    params = params or SegmentationParams()
    height, width = rgb.shape[:2]
    levels = measure_smear(rgb, params.rbc_contrast or None, params.background_percentile)
    contrast = levels.contrast
    # Without red cells to measure nothing depends on their size: the reference does.
    diameter = params.rbc_diameter or levels.rbc_diameter or REFERENCE_DIAMETER
    small = _resize(rgb, analysis_factor(rgb.shape, diameter, params.scale))
    smooth = _blur(small, params.blur * params.scale)
    wbc, platelets = _stained_objects(cv2.cvtColor(smooth, cv2.COLOR_RGB2HSV), params)
    rbc = _red_cells(rgb_to_lab(smooth)[..., 0], wbc > 0, platelets > 0, method, params, contrast)
    layers = [("WBC", wbc), ("platelet", platelets), ("RBC", rbc)]
    labels, classes = _combine(layers, (height, width))
    return Segmentation(labels, _describe(labels, classes), method, float(diameter))


def with_known_size(params: SegmentationParams, rbc_diameter: float | None = None, pixel_size: float | None = None) -> SegmentationParams:
    """``params`` with the red-cell diameter given in pixels, or from the pixel size (micrometres per pixel)."""
    if rbc_diameter is not None and pixel_size is not None:
        raise UsageError("give either --rbc-diameter or --pixel-size, not both")
    if pixel_size is not None:
        if pixel_size <= 0:
            raise UsageError(f"--pixel-size must be positive, got {pixel_size}")
        rbc_diameter = RBC_DIAMETER_UM / pixel_size
    return params if rbc_diameter is None else dataclasses.replace(params, rbc_diameter=float(rbc_diameter))


def check_method(method: str) -> None:
    """Raise :class:`UsageError` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise UsageError(f"unknown segmentation method {method!r} (choose {' or '.join(METHODS)})")


#: Largest analysis image (pixels): bounds time and memory when tiny cells call for upsampling.
MAX_ANALYSIS_PIXELS = 4_000_000


def analysis_factor(shape: tuple[int, ...], diameter: float, scale: float) -> float:
    """The resize factor that gives red cells of ``diameter`` pixels the reference size times ``scale``."""
    factor = scale * REFERENCE_DIAMETER / diameter
    return min(factor, float(np.sqrt(MAX_ANALYSIS_PIXELS / (shape[0] * shape[1]))))


def _resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return rgb
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def _hue_in(hue: np.ndarray, low: int, high: int) -> np.ndarray:
    return (hue >= low) & (hue <= high)


def _stained_objects(hsv: np.ndarray, p: SegmentationParams) -> tuple[np.ndarray, np.ndarray]:
    """Label images of white cells (whole cell) and platelets, at analysis scale."""
    hue, sat = hsv[..., 0], hsv[..., 1]
    area_scale = p.scale**2
    nuclear = (_hue_in(hue, p.nucleus_hue_min, p.nucleus_hue_max) & (sat >= p.nucleus_sat_min)).astype(np.uint8)
    # Closing joins the lobes of one nucleus so a segmented neutrophil counts once.
    grouped = cv2.morphologyEx(nuclear, cv2.MORPH_CLOSE, disc(p.nucleus_join * p.scale / 2))
    count, groups, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    stained = np.bincount(groups[nuclear > 0], minlength=count)  # nuclear pixels per group, not closed area
    wbc_seed = np.zeros(count, bool)
    platelet = np.zeros(count, bool)
    wbc_seed[1:] = stained[1:] >= p.wbc_nucleus_min_area * area_scale
    platelet[1:] = (stained[1:] >= p.platelet_min_area * area_scale) & ~wbc_seed[1:]
    wbc = _white_cells(hue, sat, wbc_seed[groups], p)
    platelets = cv2.connectedComponents((platelet[groups] & (wbc == 0)).astype(np.uint8), connectivity=8)[1]
    return wbc, platelets


def _white_cells(hue: np.ndarray, sat: np.ndarray, nuclei: np.ndarray, p: SegmentationParams) -> np.ndarray:
    """Whole white cells grown from their nuclei through purple cytoplasm."""
    if not nuclei.any():
        return np.zeros(nuclei.shape, np.int32)
    reach = cv2.dilate(nuclei.astype(np.uint8), disc(p.wbc_reach * p.scale)) > 0
    cytoplasm = _hue_in(hue, p.cytoplasm_hue_min, p.cytoplasm_hue_max) & (sat >= p.cytoplasm_sat_min)
    body = ((cytoplasm & reach) | nuclei).astype(np.uint8)
    body = cv2.morphologyEx(body, cv2.MORPH_OPEN, disc(2 * p.scale * 2))  # detach touching red-cell rims
    body = cv2.morphologyEx(body, cv2.MORPH_CLOSE, disc(4 * p.scale * 2)) | nuclei
    count, labels = cv2.connectedComponents(fill_holes(body).view(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[nuclei])] = True
    keep[0] = False
    labels = cv2.connectedComponents(keep[labels].astype(np.uint8), connectivity=8)[1]
    return _convex(labels) if p.wbc_convex else labels


def _convex(labels: np.ndarray) -> np.ndarray:
    out = np.zeros(labels.shape, np.int32)
    for index in range(1, int(labels.max()) + 1):
        points = cv2.findNonZero((labels == index).astype(np.uint8))
        if points is not None:
            hull = cv2.convexHull(points)
            cv2.fillPoly(out, [hull], int(index))  # later hulls overwrite an overlap: rare, harmless
    return out


def _red_cells(lightness, wbc: np.ndarray, platelets: np.ndarray, method: str, p: SegmentationParams, contrast: float) -> np.ndarray:
    # Pale red cells have too little saturation for a hue test but are clearly darker than the
    # background; measuring against this image's own background absorbs exposure changes.
    background = background_level(lightness, p.background_percentile)
    red = lightness.astype(np.int16) <= background - contrast
    red = fill_round_holes(red, 0.5 * REFERENCE_CELL_AREA * p.scale**2) & ~wbc  # a pale centre is part of its cell
    red = cv2.morphologyEx(red.astype(np.uint8), cv2.MORPH_OPEN, disc(p.rbc_open * p.scale))
    red = (red | (platelets & cv2.dilate(red, disc(1)))) > 0  # platelets on a red cell leave no hole
    if method == "watershed":
        labels = split_touching(red, p.peak_min_distance * p.scale, p.peak_min_height * p.scale)
        area_scale = p.scale**2
        typical = p.rbc_typical_area * area_scale or median_area(labels, p.rbc_min_area * area_scale, REFERENCE_CELL_AREA * area_scale)
        labels = merge_fragments(labels, p.rbc_fragment_factor * typical)
    else:
        labels = cv2.connectedComponents(red.astype(np.uint8), connectivity=8)[1]
    labels = drop_small(labels, p.rbc_min_area * p.scale**2, p.rbc_edge_min_area * p.scale**2)
    if method == "watershed" and p.rbc_clump_factor > 0:
        labels = split_clumps(labels, typical, p.rbc_clump_factor)
    return labels


def _combine(layers, shape) -> tuple[np.ndarray, list[str]]:
    """One full-resolution uint16 label image (white cells, then platelets, then red cells).

    Returns the labels, numbered 1..N without gaps, and the class of each id.
    """
    labels = np.zeros(layers[0][1].shape, np.int32)
    classes = [""]
    for name, layer in layers:
        inside = (layer > 0) & (labels == 0)
        labels[inside] = layer[inside] + len(classes) - 1
        classes += [name] * int(layer.max())
    present = np.unique(labels[labels > 0])  # an id vanishes when an earlier layer covers it
    lookup = np.zeros(len(classes), np.uint16)
    lookup[present] = np.arange(1, len(present) + 1)
    labels = lookup[labels]
    if labels.shape != shape:
        labels = cv2.resize(labels, shape[::-1], interpolation=cv2.INTER_NEAREST)
    present = np.unique(labels[labels > 0])  # ... or is too thin to survive upsampling (rare)
    if len(present) < len(lookup[lookup > 0]):
        kept = [classes[i] for i in np.flatnonzero(np.isin(lookup, present))]
        relabel = np.zeros(int(lookup.max()) + 1, np.uint16)
        relabel[present] = np.arange(1, len(present) + 1)
        return relabel[labels], kept
    return labels, [classes[i] for i in np.flatnonzero(lookup)]


def _describe(labels: np.ndarray, classes: list[str]) -> list[CellObject]:
    """The object table, with shape features measured on each object's own mask."""
    objects = []
    for index, slices in enumerate(ndi.find_objects(labels), start=1):
        if slices is None:
            continue
        mask = labels[slices] == index
        ys, xs = np.nonzero(mask)
        ymin, xmin = slices[0].start, slices[1].start
        objects.append(CellObject(
            index, classes[index - 1], (int(xmin), int(ymin), int(slices[1].stop), int(slices[0].stop)),
            (float(xs.mean() + xmin), float(ys.mean() + ymin)), int(mask.sum()), region_shape(mask),
        ))  # fmt: skip
    return objects


def draw_overlay(rgb: np.ndarray, segmentation: Segmentation, thickness: int = 2) -> np.ndarray:
    """The image with each object outlined in its class colour (see :data:`CLASS_COLOURS`)."""
    out = rgb.copy()
    labels = segmentation.labels
    for obj in segmentation.objects:
        xmin, ymin, xmax, ymax = obj.bbox
        mask = (labels[ymin:ymax, xmin:xmax] == obj.object_id).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(xmin, ymin))
        cv2.drawContours(out, contours, -1, CLASS_COLOURS[obj.cls], thickness, lineType=cv2.LINE_AA)
    return out
