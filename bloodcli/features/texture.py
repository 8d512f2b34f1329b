"""GLCM (Haralick) texture features.

The co-occurrence matrices are counted with one vectorised ``bincount`` per offset and may
be restricted to the cell mask (pixels outside it count as one extra grey level, dropped at the end), so the slide background does not dilute the texture. Without
a mask the matrices equal :func:`skimage.feature.graycomatrix` (checked in the tests).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features.base import CHANNELS, CellImage, FeatureExtractor
from bloodcli.imaging.stain import hematoxylin_channel

GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM", "entropy")


def glcm_offsets(distances, angles_degrees) -> tuple[tuple[int, int], ...]:
    """(row, column) offsets in scikit-image's convention (row offset = round(sin(angle) * d))."""
    return _offsets(tuple(distances), tuple(angles_degrees))


@functools.cache
def _offsets(distances: tuple, angles_degrees: tuple) -> tuple[tuple[int, int], ...]:
    angles = np.deg2rad(angles_degrees)
    return tuple((int(round(np.sin(a) * d)), int(round(np.cos(a) * d))) for d in distances for a in angles)


def glcm(
    image: np.ndarray,
    levels: int,
    offsets: list[tuple[int, int]],
    mask: np.ndarray | None = None,
    symmetric: bool = True,
    normed: bool = True,
) -> np.ndarray:
    """Grey-level co-occurrence matrices, shape ``(levels, levels, len(offsets))``.

    Parameters
    ----------
    image : ndarray of int, values in ``[0, levels)``
    levels : int
    offsets : list of (drow, dcol)
    mask : ndarray of bool, optional
        Count only pairs whose two pixels are both inside the mask.
    symmetric, normed : bool
        As in :func:`skimage.feature.graycomatrix`.
    """
    size = levels if mask is None else levels + 1
    image = np.asarray(image)
    if mask is not None:  # pixels outside the mask become an extra grey level, whose pairs are dropped: no pair masks
        image = np.where(mask, image, levels)
    if size <= 256:
        image, count = image.astype(np.uint8, copy=False), _pair_counts_8bit  # converted once, not per offset
    else:
        count = _pair_counts
    rows, cols = image.shape
    out = np.zeros((levels, levels, len(offsets)), dtype=np.float64)
    for k, (drow, dcol) in enumerate(offsets):
        r0, r1 = max(0, -drow), rows - max(0, drow)
        c0, c1 = max(0, -dcol), cols - max(0, dcol)
        if r1 > r0 and c1 > c0:
            out[:, :, k] = count(image[r0:r1, c0:c1], image[r0 + drow : r1 + drow, c0 + dcol : c1 + dcol], size)[:levels, :levels]
    if symmetric:
        out = out + out.transpose(1, 0, 2)
    if normed:
        totals = out.sum(axis=(0, 1), keepdims=True)
        out = out / np.where(totals == 0, 1, totals)
    return out


def _pair_counts_8bit(first: np.ndarray, second: np.ndarray, size: int) -> np.ndarray:
    """Counts of (first, second) ``uint8`` level pairs: one OpenCV 2-D histogram of the two views, no pair codes."""
    return cv2.calcHist([first, second], [0, 1], None, [size, size], [0, size, 0, size])


def _pair_counts(first: np.ndarray, second: np.ndarray, size: int) -> np.ndarray:
    codes = first.astype(np.intp) * size + second
    return np.bincount(codes.ravel(), minlength=size * size).reshape(size, size)


def glcm_properties(matrices: np.ndarray) -> dict[str, np.ndarray]:
    """Haralick properties of normalised GLCMs (one value per matrix), as in ``graycoprops``.

    Every property but ASM and entropy is a weighted sum over the matrix entries: one matrix
    product of the level weights with all the matrices, not a pass over them per property.
    """
    levels, count = matrices.shape[0], matrices.shape[2]
    flat = matrices.reshape(levels * levels, count)
    contrast, dissimilarity, homogeneity, mean_i, mean_j, square_i, square_j, product = _moment_weights(levels) @ flat
    variance_i, variance_j = np.maximum(square_i - mean_i**2, 0.0), np.maximum(square_j - mean_j**2, 0.0)
    std_i, std_j = np.sqrt(variance_i), np.sqrt(variance_j)
    flat_texture = std_i * std_j < 1e-10  # a constant region, up to the rounding of the sums above
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.where(flat_texture, 1.0, (product - mean_i * mean_j) / np.where(flat_texture, 1.0, std_i * std_j))
    asm = np.einsum("ij,ij->j", flat, flat)
    log_p = np.log(flat, out=np.zeros_like(flat), where=flat > 0)
    return {
        "contrast": contrast,
        "dissimilarity": dissimilarity,
        "homogeneity": homogeneity,
        "energy": np.sqrt(asm),
        "correlation": correlation,
        "ASM": asm,
        "entropy": -np.einsum("ij,ij->j", flat, log_p),
    }


@functools.cache
def _moment_weights(levels: int) -> np.ndarray:
    """Per-entry weights of the linear properties: contrast, dissimilarity, homogeneity, E[i], E[j], E[i²], E[j²], E[ij]."""
    i, j = np.divmod(np.arange(levels * levels, dtype=np.float64), levels)
    diff2 = (i - j) ** 2
    return np.stack([diff2, np.sqrt(diff2), 1.0 / (1.0 + diff2), i, j, i * i, j * j, i * j])


class GLCMExtractor(FeatureExtractor):
    """Haralick texture of the grey image inside the cell: mean and range over angles per distance."""

    name = "glcm"
    version = "4"  # 3: single-cell masks reach the whole cytoplasm (convex hull); 4: masks found coarse to fine
    mask_versions = {"2": 1, "3": 2}  # earlier versions' masks, still reproduced for earlier model files
    description = "GLCM/Haralick texture (contrast, dissimilarity, homogeneity, energy, correlation, ASM, entropy)"
    defaults = {
        "levels": 32,
        "distances": [1, 2, 4],
        "angles": [0, 45, 90, 135],
        "region": "cell",  # "cell": pixels inside the cell mask; "image": the whole crop
        "channel": "gray",  # "gray" (luminance) or "hematoxylin" (colour deconvolution, less stain-dependent)
    }

    def validate(self) -> None:
        if not 2 <= self.params["levels"] <= 256:
            raise UsageError("glcm levels must be between 2 and 256")
        if not self.params["distances"] or min(self.params["distances"]) < 1:
            raise UsageError("glcm distances must be positive integers")
        if not self.params["angles"]:
            raise UsageError("glcm needs at least one angle")
        self.check_choice("region", ("cell", "image"))
        self.check_choice("channel", CHANNELS)

    def feature_names(self) -> list[str]:
        return [
            f"glcm_{prop}_d{distance}_{stat}"
            for prop in GLCM_PROPERTIES
            for distance in self.params["distances"]
            for stat in ("mean", "range")
        ]

    def compute(self, cell: CellImage) -> np.ndarray:
        levels = self.params["levels"]
        distances, angles = self.params["distances"], self.params["angles"]
        rgb, mask = (cell.box_rgb, cell.box_cell_mask) if self.params["region"] == "cell" else (cell.rgb, None)
        if self.params["channel"] == "hematoxylin":
            gray = hematoxylin_channel(rgb)
        else:
            gray = cell.box_gray if self.params["region"] == "cell" else cell.gray
        quantised = (gray.astype(np.uint16) * levels) >> 8
        matrices = glcm(quantised, levels, glcm_offsets(distances, angles), mask=mask)
        props = glcm_properties(matrices)
        per_distance = np.stack([props[prop] for prop in GLCM_PROPERTIES]).reshape(len(GLCM_PROPERTIES), len(distances), len(angles))
        return np.stack([per_distance.mean(axis=2), np.ptp(per_distance, axis=2)], axis=2).ravel().astype(np.float32)
