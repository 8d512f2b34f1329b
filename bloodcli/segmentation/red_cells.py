"""Red-cell regions into one object per cell: watershed seeds, slivers, clumps and edge fragments.

Everything here works at the analysis resolution, where red cells have the reference size
(:mod:`bloodcli.segmentation.scale`), so areas and distances are in those pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from bloodcli.imaging.morphology import disc


def split_touching(mask: np.ndarray, min_distance: float, min_height: float) -> np.ndarray:
    """Watershed of the distance transform from its peaks ``min_distance`` apart and ``min_height`` deep (pixels)."""
    from skimage.segmentation import watershed

    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    distance = cv2.GaussianBlur(distance, (0, 0), 1.0)
    local_max = cv2.dilate(distance, disc(min_distance)) <= distance
    peaks = local_max & (distance >= min_height) & mask
    peaks |= _deepest_points_of_unseeded(mask, peaks, distance)  # small cells keep a seed of their own
    markers = cv2.connectedComponents(cv2.dilate(peaks.astype(np.uint8), disc(1)), connectivity=8)[1]
    return watershed(-distance, markers, mask=mask).astype(np.int32)


#: Area of one red cell at the reference magnification (square pixels, BCCD): bounds the pale centres filled.
REFERENCE_CELL_AREA = 7000


def median_area(labels: np.ndarray, min_area: float, fallback: float, min_regions: int = 5) -> float:
    """Median area of the whole regions (not cut by the image edge, at least ``min_area``): one red cell.

    With fewer than ``min_regions`` whole regions (a crowded field that is one large region, a nearly
    empty one) the median says little, and ``fallback`` (a cell at the reference size) is used.
    """
    areas = np.bincount(labels.ravel())
    cut = np.zeros(len(areas), bool)
    cut[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    whole = areas[1:][~cut[1:] & (areas[1:] >= min_area)]
    return float(np.median(whole)) if len(whole) >= min_regions else fallback


def merge_fragments(labels: np.ndarray, min_area: float) -> np.ndarray:
    """Join each watershed region smaller than ``min_area`` to the touching region it shares most border with.

    Seeds in the filled gap between touching cells, or on a bump of an irregular outline, cut off
    slivers that are no cell; a small cell on its own touches nothing and stays.
    """
    areas = np.bincount(labels.ravel())
    small = np.flatnonzero(areas < min_area)
    small = small[small > 0]
    if len(small) == 0:
        return labels
    pairs = np.concatenate([np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
                            np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1)])  # fmt: skip
    pairs = np.sort(pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs > 0).all(axis=1)], axis=1).astype(np.int64)
    codes, counts = np.unique(pairs[:, 0] * len(areas) + pairs[:, 1], return_counts=True)  # 1-D: fast
    contacts = np.stack([codes // len(areas), codes % len(areas)], axis=1)
    target = np.arange(len(areas))
    for region in small[np.argsort(areas[small])]:  # smallest first
        touching = (contacts == region).any(axis=1)
        if not touching.any():
            continue
        neighbours = contacts[touching].max(axis=1) + contacts[touching].min(axis=1) - region
        target[region] = neighbours[np.argmax(counts[touching])]
    while not np.array_equal(target, target[target]):  # follow chains of merged regions
        target = target[target]
    return target[labels]


def _deepest_points_of_unseeded(mask: np.ndarray, peaks: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The deepest point of every connected region of ``mask`` that holds no peak (a seed for each)."""
    count, regions = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    unseeded = np.setdiff1d(np.arange(1, count), regions[peaks])
    if len(unseeded) == 0:
        return np.zeros(mask.shape, bool)
    inside = np.isin(regions, unseeded)
    deepest = np.zeros(count)
    np.maximum.at(deepest, regions[inside], distance[inside])  # few, small regions: cheap
    return inside & (distance >= deepest[regions])


def split_clumps(labels: np.ndarray, typical_area: float, factor: float) -> np.ndarray:
    """Cut regions of at least ``factor`` red cells' area into round(area / typical_area) parts.

    Heavily overlapping red cells leave no distance-transform valley between them, so the
    watershed keeps a clump whole; k-means on the pixel coordinates cuts it into compact,
    cell-sized parts, which restores the count (the cut lines are approximate).
    """
    out = labels.copy()
    next_id = int(labels.max()) + 1
    for index, slices in enumerate(ndi.find_objects(labels), start=1):
        if slices is None:
            continue
        ys, xs = np.nonzero(labels[slices] == index)
        parts = round(len(ys) / typical_area)
        if len(ys) < factor * typical_area or parts < 2:
            continue
        points = np.column_stack([xs, ys]).astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        cv2.setRNGSeed(index)  # deterministic cuts
        _, assignment, _ = cv2.kmeans(points, parts, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
        new_ids = np.where(assignment.ravel() == 0, index, next_id + assignment.ravel() - 1)
        out[slices][ys, xs] = new_ids
        next_id += parts - 1
    return out


def drop_small(labels: np.ndarray, min_area: float, edge_min_area: float) -> np.ndarray:
    """Remove small objects; objects touching the image edge need ``edge_min_area``.

    Slivers of cells cut by the edge are not counted (as in the BCCD annotations): a count of
    whole cells does not depend on where the field of view happens to cut.
    """
    areas = np.bincount(labels.ravel())
    edge = np.zeros(len(areas), bool)
    edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    keep = areas >= np.where(edge, max(min_area, edge_min_area), min_area)
    keep[0] = False
    relabel = np.zeros(len(areas), np.int32)
    relabel[keep] = np.arange(1, keep.sum() + 1)
    return relabel[labels]
