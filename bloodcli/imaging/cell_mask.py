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


#: Version of the single-cell masks current extractors measure on (:data:`SINGLE_CELL_MASKS` keeps the earlier ones).
MASK_VERSION = 3

#: Pixels the join radius spans on the coarse grid of :func:`segment_single_cell`. Fixed before any measurement
#: (a digital disc of radius 8 is still round), not tuned on any data.
COARSE_JOIN_PIXELS = 8


def segment_single_cell(rgb: np.ndarray, join: float = 0.045) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the cell nearest the image centre and of its nucleus: distances coarse, pixels fine.

    The steps of :func:`segment_single_cell_v2` that measure distances and choose components (which
    nuclear blobs are one nucleus, which one is central, how far its cytoplasm may reach) run on a
    copy reduced (area averaging) until the join radius spans :data:`COARSE_JOIN_PIXELS` pixels, so
    the grid follows the framing of the image. The steps that test pixels (nuclear and cytoplasm
    saturation, the connected cytoplasm, the smoothing, the hull) run at full resolution inside the
    box the coarse reach allows: pale, grainy cytoplasm is judged pixel by pixel, as in version 2.

    Returns
    -------
    cell, nucleus : ndarray of bool
        Both empty when the image has no stained object.
    """
    height, width = rgb.shape[:2]
    factor = max(1, int(round(join_radius(join, (height, width)) / COARSE_JOIN_PIXELS)))
    if factor == 1:
        return segment_single_cell_v2(rgb, join=join)
    coarse = _coarse_cell(rgb, factor, join)
    if coarse is None:
        return _nothing((height, width))
    threshold, reach, chosen = coarse
    window, (reach, chosen) = _upsampled_box(reach, (reach, chosen), factor, (height, width))
    saturation = _saturation(np.ascontiguousarray(rgb[window]))
    nucleus = _nuclear_pixels(saturation, threshold).view(bool) & chosen
    if not nucleus.any():
        return _nothing((height, width))
    stained = (saturation > CYTOPLASM_SATURATION * threshold) & reach
    cell = _cytoplasm_of(stained, nucleus, _radius(nucleus))
    return _in_frame(_convex_hull(cell | nucleus), window, (height, width)), _in_frame(nucleus, window, (height, width))


def _coarse_cell(rgb: np.ndarray, factor: int, join: float):
    """On ``rgb`` reduced ``factor`` times: the nuclear threshold, the reach of the central nucleus and its joined blobs.

    Both masks are in the frame of the reduced image; None when it has no stained object.
    """
    height, width = rgb.shape[0] // factor, rgb.shape[1] // factor  # whole coarse pixels only: OpenCV's fast path
    small = cv2.resize(rgb[: height * factor, : width * factor], (width, height), interpolation=cv2.INTER_AREA)
    saturation = _saturation(small)
    threshold = otsu_threshold(saturation)
    window = _nuclear_window(saturation, threshold, join)
    found = None if window is None else _central_nucleus(saturation[window], join, threshold, frame=(saturation.shape, window))
    if found is None:
        return None
    chosen, nucleus, threshold, distance = found
    reach = distance <= max(1.0, CYTOPLASM_REACH * _radius(nucleus))
    reach = _components_holding(reach, nucleus)  # the reach around the chosen nucleus only, not around its neighbours
    return threshold, _in_frame(reach, window, saturation.shape), _in_frame(chosen, window, saturation.shape)


def _upsampled_box(box_of: np.ndarray, masks, factor: int, shape) -> tuple[tuple[slice, slice], list[np.ndarray]]:
    """The full-resolution box around coarse mask ``box_of`` (one coarse pixel wider each side) and ``masks`` in it."""
    x, y, w, h = cv2.boundingRect(box_of.view(np.uint8))
    top, left = max(0, y - 1), max(0, x - 1)
    window = (slice(top * factor, min(shape[0], (y + h + 1) * factor)), slice(left * factor, min(shape[1], (x + w + 1) * factor)))
    rows, columns = window[0].stop - window[0].start, window[1].stop - window[1].start
    upsampled = []
    for mask in masks:
        block = mask[top : y + h + 1, left : x + w + 1].view(np.uint8)
        # Each coarse pixel becomes factor x factor pixels (NEAREST_EXACT: pixel centres, no rounding drift).
        block = cv2.resize(block, (block.shape[1] * factor, block.shape[0] * factor), interpolation=cv2.INTER_NEAREST_EXACT).view(bool)
        missing = (max(0, rows - block.shape[0]), max(0, columns - block.shape[1]))
        if any(missing):  # the rows and columns cut off to make whole coarse pixels take the last coarse pixel's mask
            block = np.pad(block, ((0, missing[0]), (0, missing[1])), mode="edge")
        upsampled.append(block[:rows, :columns])
    return window, upsampled


def _cytoplasm_of(stained: np.ndarray, nucleus: np.ndarray, nucleus_radius: float) -> np.ndarray:
    """The stained pixels connected to the nucleus, smoothed by an opening of a tenth of its radius."""
    cell = _components_holding(stained | nucleus, nucleus).view(np.uint8)
    return cv2.morphologyEx(cell, cv2.MORPH_OPEN, disc(max(1.0, 0.1 * nucleus_radius))).astype(bool)


def _components_holding(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 8-connected components of ``mask`` that hold a pixel of ``seeds``."""
    count, regions = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    if count > 256:  # labels beyond 8 bits
        holding = np.zeros(count, bool)
        holding[regions[seeds]] = True
        holding[0] = False
        return holding[regions]
    labels = regions.astype(np.uint8)  # OpenCV counts and looks up 8-bit labels far faster than NumPy indexing
    holding = cv2.calcHist([labels], [0], seeds.view(np.uint8), [256], [0, 256]).ravel() > 0
    holding[0] = False  # the background
    return cv2.LUT(labels, holding.astype(np.uint8)).view(bool)


def segment_single_cell_v2(rgb: np.ndarray, join: float = 0.045) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the cell nearest the image centre and of its nucleus, at the image's resolution (version 2).

    :func:`segment_single_cell` takes its distance steps on a reduced copy; version-3 classical features of earlier
    model files are still computed on it.

    The nuclear stain is the most saturated colour on a smear, so Otsu's threshold on saturation
    finds nuclei (and platelets). Nuclear blobs within ``join`` of the image size of each other are
    one nucleus (the lobes of a neutrophil); the one nearest the centre is the cell's. Its cytoplasm
    is the stained (moderately saturated) pixels connected to it within :data:`CYTOPLASM_REACH`
    nucleus radii, so the reach follows the cell, not the framing of the crop; the cell is the
    convex hull of nucleus and cytoplasm (blood cells are round).

    Everything after the threshold is computed in the window around the nuclear pixels that the
    join, the reach and the smoothing can affect (:func:`_nuclear_window`): the same masks as over
    the whole image, at the cost of the window.

    Returns
    -------
    cell, nucleus : ndarray of bool
        Both empty when the image has no stained object.
    """
    saturation = _saturation(rgb)
    threshold = otsu_threshold(saturation)
    window = _nuclear_window(saturation, threshold, join)
    if window is None:
        return _nothing(saturation.shape)
    found = _central_nucleus(saturation[window], join, threshold, frame=(saturation.shape, window))
    if found is None:
        return _nothing(saturation.shape)
    chosen, nucleus, threshold, distance = found
    nucleus_radius = _radius(nucleus)
    stained = (saturation[window] > CYTOPLASM_SATURATION * threshold) & (distance <= max(1.0, CYTOPLASM_REACH * nucleus_radius))
    cell = _cytoplasm_of(stained, nucleus, nucleus_radius)
    return _in_frame(_convex_hull(cell | nucleus), window, saturation.shape), _in_frame(nucleus, window, saturation.shape)


#: Smallest step of OpenCV's 3x3 chamfer distance (DIST_L2, DIST_MASK_3 uses 0.955 and 1.3693), rounded down:
#: a pixel at distance d from the nuclei lies within d / _CHAMFER_STEP pixels of them along each axis.
_CHAMFER_STEP = 0.95


def _nuclear_window(saturation: np.ndarray, threshold: float, join: float) -> tuple[slice, slice] | None:
    """The box around the nuclear pixels beyond which no step of :func:`segment_single_cell` can reach.

    Every later mask lies within the join or the cytoplasm reach of a nuclear pixel (each bounded
    by the area of all nuclear pixels), plus the smoothing radius; outside the box the masks are
    empty, inside they equal those computed over the whole image. None when nothing is nuclear.
    """
    nuclear = (saturation > max(threshold, 15)).view(np.uint8)
    area = cv2.countNonZero(nuclear)
    if area == 0:
        return None
    height, width = saturation.shape
    radius = float(np.sqrt(area / np.pi))
    reach = max(join_radius(join, saturation.shape), CYTOPLASM_REACH * radius, 1.0)
    margin = int(np.ceil(reach / _CHAMFER_STEP)) + max(1, int(round(max(1.0, 0.1 * radius)))) + 3
    x, y, w, h = cv2.boundingRect(nuclear)
    return slice(max(0, y - margin), min(height, y + h + margin)), slice(max(0, x - margin), min(width, x + w + margin))


def join_radius(join: float, shape) -> int:
    """Distance in pixels within which nuclear blobs are one nucleus (``join`` of the image size)."""
    return max(1, int(round(join * max(shape))))


def _in_frame(mask: np.ndarray, window: tuple[slice, slice], shape) -> np.ndarray:
    full = np.zeros(shape, bool)
    full[window] = mask
    return full


def segment_single_cell_v1(rgb: np.ndarray, reach: float = 0.045) -> tuple[np.ndarray, np.ndarray]:
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
    saturation = _saturation(rgb)
    found = _central_nucleus(saturation, reach)
    if found is None:
        return _nothing(saturation.shape)
    chosen, nucleus, threshold, _ = found
    stained = saturation > 0.5 * threshold
    cell = fill_holes((chosen & stained) | nucleus)
    return cell, nucleus


def _central_nucleus(saturation: np.ndarray, join: float, threshold: float | None = None, frame=None):
    """The nuclear blobs within ``join`` of the image size of each other that lie nearest the centre.

    Returns that joined region, the nucleus in it, the nuclear saturation threshold and the distance
    of every pixel to the nearest nuclear pixel; None when the image has no stained object.
    ``frame``: ``(shape, window)`` when ``saturation`` is the window of a larger image (sizes and the
    centre are the whole image's), with ``threshold`` computed over the whole image.
    """
    shape, window = frame or (saturation.shape, (slice(0, None), slice(0, None)))
    threshold = otsu_threshold(saturation) if threshold is None else threshold
    nuclear = _nuclear_pixels(saturation, threshold)
    # Dilation by a disc == distance to the nearest nuclear pixel <= radius (faster for large radii).
    distance = cv2.distanceTransform(1 - nuclear, cv2.DIST_L2, cv2.DIST_MASK_3)
    joined = (distance <= join_radius(join, shape)).view(np.uint8)
    chosen = _central_component(joined, shape, (window[1].start, window[0].start))
    if chosen is None:
        return None
    return chosen, chosen & nuclear.astype(bool), threshold, distance


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (OpenCV's 8-bit scale): the nuclear stain is the most saturated colour on a smear."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]


def _nuclear_pixels(saturation: np.ndarray, threshold: float) -> np.ndarray:
    """``uint8`` mask of the pixels above the nuclear threshold (at least 15), opened to drop single pixels."""
    return cv2.morphologyEx((saturation > max(threshold, 15)).view(np.uint8), cv2.MORPH_OPEN, disc(1))


def _radius(mask: np.ndarray) -> float:
    """Radius of the disc with the mask's area."""
    return float(np.sqrt(mask.sum() / np.pi))


def _nothing(shape) -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros(shape, dtype=bool)
    return empty, empty


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    # The hull of the outer contours' points is the hull of all the pixels, from a fraction of the points.
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(contours))], 1)
    return hull.astype(bool)


def _central_component(mask: np.ndarray, shape, offset=(0, 0), min_fraction: float = 0.002) -> np.ndarray | None:
    """The connected component nearest the centre of an image of ``shape``, favouring large ones; None if there is none.

    ``mask`` may be a window of that image starting at column, row ``offset``.
    """
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = shape
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    large = areas >= min_fraction * height * width
    if count <= 1 or not large.any():
        return None
    centre = np.array([width / 2.0 - offset[0], height / 2.0 - offset[1]])
    distances = np.hypot(*(centroids[1:] - centre).T)
    score = np.where(large, areas / areas.max() - 2.0 * distances / max(height, width), -np.inf)
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


#: The single-cell masks of each version, by version: features record the version they were measured on.
SINGLE_CELL_MASKS = {1: segment_single_cell_v1, 2: segment_single_cell_v2, 3: segment_single_cell}
