"""Stain and scale normalisation, so a model trained in one lab reads another lab's smears.

- Reinhard et al. (2001): match the mean and standard deviation of each Lab channel over the
  stained (non-background) pixels to reference statistics.
- Macenko et al. (2009): estimate the image's two stain vectors in optical-density space, then
  rebuild it with the reference stain vectors and stain-concentration maxima.
- Cell scale: resize so the central cell's equivalent diameter matches a reference, so
  magnification differences do not masquerade as morphology.
- Cell framing: crop a square of a fixed number of cell diameters around the central cell, so
  a tight box crop from one lab and a wide field from another show the cell alike.

References are plain tuples of floats, fitted on training images (:func:`fit_reference`) or one
reference image, and stored in the preprocessing settings of features and models.
"""

from __future__ import annotations

import cv2
import numpy as np

from bloodcli.errors import UsageError
from bloodcli.imaging.cielab import lab_to_rgb, rgb_to_lab

STAIN_METHODS = ("reinhard", "macenko")
_BACKGROUND_OD = 0.15  # optical density below which a pixel is background (Macenko's beta)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(rgb.astype(np.float32) / 255.0)


def _stained(rgb: np.ndarray) -> np.ndarray:
    """Pixels that carry stain: optical density above the background level in some channel."""
    od = optical_density(rgb)
    mask = (od > _BACKGROUND_OD).all(axis=2)
    return mask if mask.sum() >= 50 else np.ones(mask.shape, bool)


def reinhard_statistics(rgb: np.ndarray) -> tuple[float, ...]:
    """(mean L, mean a, mean b, std L, std a, std b) over the stained pixels."""
    pixels = _lab(rgb)[_stained(rgb)]
    return tuple(float(v) for v in (*pixels.mean(axis=0), *pixels.std(axis=0)))


def reinhard(rgb: np.ndarray, target: tuple[float, ...]) -> np.ndarray:
    """Map the image's stained-pixel Lab statistics onto ``target`` (see :func:`reinhard_statistics`)."""
    source = np.array(reinhard_statistics(rgb)).reshape(2, 3)
    goal = np.array(target, dtype=np.float64).reshape(2, 3)
    lab = _lab(rgb)
    scaled = (lab - source[0]) * (goal[1] / np.maximum(source[1], 1e-6)) + goal[0]
    out = lab_to_rgb(scaled.astype(np.float32))
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    return -np.log((rgb.astype(np.float64) + 1.0) / 256.0)


def macenko_statistics(rgb: np.ndarray, alpha: float = 1.0) -> tuple[float, ...]:
    """Stain matrix (2 unit vectors in OD space, 6 values) and 99th-percentile concentrations (2)."""
    od = optical_density(rgb).reshape(-1, 3)
    od = od[(od > _BACKGROUND_OD).all(axis=1)]
    if len(od) < 50:
        raise UsageError("Macenko normalisation: too few stained pixels to estimate stain vectors")
    _, eigenvectors = np.linalg.eigh(np.cov(od.T))
    plane = eigenvectors[:, 1:3]  # the two largest
    projected = od @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [alpha, 100 - alpha])
    vectors = [plane @ np.array([np.cos(a), np.sin(a)]) for a in (low, high)]
    vectors = [v if v[0] >= 0 else -v for v in vectors]
    if vectors[0][0] < vectors[1][0]:  # order: the stain absorbing more red first (nuclear stain)
        vectors.reverse()
    stains = np.array(vectors)
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    concentrations = np.linalg.lstsq(stains.T, od.T, rcond=None)[0]
    maxima = np.percentile(concentrations, 99, axis=1)
    return tuple(float(v) for v in (*stains.ravel(), *maxima))


def macenko(rgb: np.ndarray, target: tuple[float, ...]) -> np.ndarray:
    """Rebuild the image with the target stain vectors and concentration maxima.

    The part of each pixel's optical density that the two stains do not explain (e.g. the tint
    of the slide background) is kept as it is, so the reference maps exactly onto itself.
    """
    source = np.array(macenko_statistics(rgb))
    goal = np.array(target, dtype=np.float64)
    source_stains, source_max = source[:6].reshape(2, 3), source[6:]
    goal_stains, goal_max = goal[:6].reshape(2, 3), goal[6:]
    od = optical_density(rgb).reshape(-1, 3)
    concentrations = np.linalg.lstsq(source_stains.T, od.T, rcond=None)[0]
    residual = od.T - source_stains.T @ concentrations
    concentrations *= (goal_max / np.maximum(source_max, 1e-6))[:, None]
    density = np.clip(goal_stains.T @ concentrations + residual, -1.0, 10.0)  # outliers would overflow exp
    rebuilt = 256.0 * np.exp(-density) - 1.0
    return np.clip(rebuilt.T.reshape(rgb.shape) + 0.5, 0, 255).astype(np.uint8)


def stain_statistics(rgb: np.ndarray, method: str) -> tuple[float, ...]:
    if method == "reinhard":
        return reinhard_statistics(rgb)
    if method == "macenko":
        return macenko_statistics(rgb)
    raise UsageError(f"unknown stain normalisation '{method}' (available: {', '.join(STAIN_METHODS)})")


def normalise_stain(rgb: np.ndarray, method: str, target: tuple[float, ...]) -> np.ndarray:
    """Apply ``method`` towards ``target``; an image without enough stain is returned unchanged."""
    try:
        return reinhard(rgb, target) if method == "reinhard" else macenko(rgb, target)
    except (UsageError, np.linalg.LinAlgError):
        return rgb


def _central_cell(rgb: np.ndarray) -> np.ndarray:
    from bloodcli.imaging.cell_mask import segment_single_cell_v2  # the masks preprocessing was fitted with

    return segment_single_cell_v2(rgb)[0]


def cell_diameter(rgb: np.ndarray) -> float:
    """Equivalent diameter in pixels of the cell nearest the image centre (0 if none)."""
    return float(np.sqrt(4.0 * _central_cell(rgb).sum() / np.pi))


def frame_cell(rgb: np.ndarray, diameters: float) -> np.ndarray:
    """Square crop of side ``diameters`` x the central cell's diameter, centred on that cell.

    The cell is measured twice: once in the given image, then again in that first frame, whose
    size relative to the cell is fixed, so a tight box crop and a wide field of the same cell
    end up framed alike. Where the square leaves the image, the border pixels are mirrored (no
    flat background for a CNN to pick up). An image without a cell is returned unchanged.
    """
    found = _centre_and_radius(rgb)
    if found is None:
        return rgb
    (cy, cx), radius = found
    first = _square(rgb, cy, cx, max(4, round(diameters * radius)))
    refined = _centre_and_radius(first)
    if refined is not None:
        half = len(first) // 2
        (fy, fx), radius = refined
        cy, cx = cy + fy - half, cx + fx - half
    return _square(rgb, cy, cx, max(4, round(diameters * radius)))


def _centre_and_radius(rgb: np.ndarray) -> tuple[tuple[int, int], float] | None:
    cell = _central_cell(rgb)
    area = int(cell.sum())
    if area == 0:
        return None
    ys, xs = np.nonzero(cell)
    return (round(ys.mean()), round(xs.mean())), float(np.sqrt(area / np.pi))


def _square(rgb: np.ndarray, cy: int, cx: int, half: int) -> np.ndarray:
    return centred_window(rgb, cy, cx, half, half)


def centred_window(rgb: np.ndarray, cy: int, cx: int, half_height: int, half_width: int, fill=None) -> np.ndarray:
    """The window ``[cy - half_height, cy + half_height) x [cx - half_width, cx + half_width)``.

    Beyond the image edges it is mirrored, or filled with the colour ``fill`` when given.
    """
    pad = max(0, half_height - cy, half_width - cx, cy + half_height - rgb.shape[0], cx + half_width - rgb.shape[1])
    if pad and fill is not None:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=tuple(int(v) for v in fill))
    elif pad:
        mirror = cv2.BORDER_REFLECT_101 if pad < min(rgb.shape[:2]) else cv2.BORDER_REPLICATE
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, mirror)
    return np.ascontiguousarray(rgb[cy + pad - half_height : cy + pad + half_height, cx + pad - half_width : cx + pad + half_width])


def rescale_to_cell_diameter(rgb: np.ndarray, target: float, limits=(0.25, 4.0)) -> np.ndarray:
    """Resize so the central cell's diameter becomes ``target`` (scale clipped to ``limits``)."""
    diameter = cell_diameter(rgb)
    if diameter <= 0:
        return rgb
    scale = float(np.clip(target / diameter, *limits))
    if abs(scale - 1.0) < 0.02:
        return rgb
    size = (max(2, round(rgb.shape[1] * scale)), max(2, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def fit_reference(images, method: str | None, scale: bool) -> tuple[tuple[float, ...] | None, float | None]:
    """Reference stain statistics (median over images) and median cell diameter of ``images``."""
    stains, diameters = [], []
    for image in images:
        if method:
            try:
                stains.append(stain_statistics(image, method))
            except UsageError:
                pass
        if scale:
            diameter = cell_diameter(image)
            if diameter > 0:
                diameters.append(diameter)
    target = tuple(float(v) for v in np.median(np.array(stains), axis=0)) if stains else None
    if method == "macenko" and target is not None:  # keep stain vectors unit length after the median
        vectors = np.array(target[:6]).reshape(2, 3)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        target = (*map(float, vectors.ravel()), *target[6:])
    return target, (float(np.median(diameters)) if diameters else None)


#: Haematoxylin optical density mapped to 255 (above the 99.9th percentile of stained PBC and BCCD smears).
HEMATOXYLIN_FULL_SCALE = 0.2


def hematoxylin_channel(rgb: np.ndarray) -> np.ndarray:
    """Haematoxylin (nuclear stain) density by colour deconvolution, as ``uint8`` on a fixed scale."""
    from skimage.color import rgb2hed

    density = rgb2hed(rgb)[..., 0]
    return np.clip(density * (255.0 / HEMATOXYLIN_FULL_SCALE), 0, 255).astype(np.uint8)
