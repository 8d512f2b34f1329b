"""GLCM (Haralick) texture features.

The co-occurrence matrices are counted with one vectorised ``bincount`` per offset and may
be restricted to the cell mask (pixels outside it count as one extra grey level, dropped at the end), so the slide background does not dilute the texture. Without
a mask the matrices equal :func:`skimage.feature.graycomatrix` (checked in the tests).
"""

from __future__ import annotations

import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features.base import CHANNELS, CellImage, FeatureExtractor
from bloodcli.imaging.stain import hematoxylin_channel

GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM", "entropy")


def glcm_offsets(distances, angles_degrees) -> list[tuple[int, int]]:
    """(row, column) offsets in scikit-image's convention (row offset = round(sin(angle) * d))."""
    offsets = []
    for distance in distances:
        for angle in np.deg2rad(angles_degrees):
            offsets.append((int(round(np.sin(angle) * distance)), int(round(np.cos(angle) * distance))))
    return offsets


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
    image = image.astype(np.uint16 if size * size <= 1 << 16 else np.intp)  # pair codes < size**2: 2-byte arithmetic
    rows, cols = image.shape
    out = np.zeros((levels, levels, len(offsets)), dtype=np.float64)
    for k, (drow, dcol) in enumerate(offsets):
        r0, r1 = max(0, -drow), rows - max(0, drow)
        c0, c1 = max(0, -dcol), cols - max(0, dcol)
        if r1 <= r0 or c1 <= c0:
            continue
        pairs = image[r0:r1, c0:c1] * size + image[r0 + drow : r1 + drow, c0 + dcol : c1 + dcol]
        counts = np.bincount(pairs.ravel(), minlength=size * size).reshape(size, size)
        out[:, :, k] = counts[:levels, :levels]
    if symmetric:
        out = out + out.transpose(1, 0, 2)
    if normed:
        totals = out.sum(axis=(0, 1), keepdims=True)
        out = out / np.where(totals == 0, 1, totals)
    return out


def glcm_properties(matrices: np.ndarray) -> dict[str, np.ndarray]:
    """Haralick properties of normalised GLCMs (one value per matrix), as in ``graycoprops``.

    Sums over the matrices are matrix products with the level weights and the marginals (one BLAS
    call each), not elementwise passes over ``levels x levels x matrices`` arrays per property.
    """
    levels, count = matrices.shape[0], matrices.shape[2]
    flat = matrices.reshape(levels * levels, count)
    i, j = np.divmod(np.arange(levels * levels, dtype=np.float64), levels)
    diff2 = (i - j) ** 2
    contrast, dissimilarity, homogeneity = np.stack([diff2, np.sqrt(diff2), 1.0 / (1.0 + diff2)]) @ flat
    asm = (flat * flat).sum(axis=0)
    levels_axis = np.arange(levels, dtype=np.float64)
    row_marginal, column_marginal = matrices.sum(axis=1), matrices.sum(axis=0)  # (levels, count)
    mean_i, mean_j = levels_axis @ row_marginal, levels_axis @ column_marginal
    centred_i, centred_j = levels_axis[:, None] - mean_i, levels_axis[:, None] - mean_j  # (levels, count)
    std_i = np.sqrt((centred_i**2 * row_marginal).sum(axis=0))
    std_j = np.sqrt((centred_j**2 * column_marginal).sum(axis=0))
    by_matrix = np.moveaxis(matrices, 2, 0)  # (count, levels, levels)
    covariance = (centred_i.T[:, None, :] @ by_matrix @ centred_j.T[:, :, None]).ravel()
    flat_texture = std_i * std_j < 1e-15
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.where(flat_texture, 1.0, covariance / np.where(flat_texture, 1.0, std_i * std_j))
    log_p = np.log(flat, out=np.zeros_like(flat), where=flat > 0)
    return {
        "contrast": contrast,
        "dissimilarity": dissimilarity,
        "homogeneity": homogeneity,
        "energy": np.sqrt(asm),
        "correlation": correlation,
        "ASM": asm,
        "entropy": -(flat * log_p).sum(axis=0),
    }


class GLCMExtractor(FeatureExtractor):
    """Haralick texture of the grey image inside the cell: mean and range over angles per distance."""

    name = "glcm"
    version = "3"  # 3: single-cell masks reach the whole cytoplasm (convex hull)
    mask_versions = {"2": 1}  # version 2 (first masks) is still reproduced for earlier model files
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
        values = []
        for prop in GLCM_PROPERTIES:
            per_distance = props[prop].reshape(len(distances), len(angles))
            values.append(np.stack([per_distance.mean(axis=1), np.ptp(per_distance, axis=1)], axis=1).ravel())
        return np.concatenate(values).astype(np.float32)
