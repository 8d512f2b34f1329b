"""Cells unlike every training class: a distance envelope fitted with the model, checked on new inputs.

A classifier's probabilities say which known class a cell resembles most, never whether it
resembles any. The envelope standardises features as the training rows were, measures each
row's distance to the nearest class centroid (root-mean-square over features, so the figure does
not grow with the number of features) and calls a row *unlike the training data* when that
distance exceeds what :data:`HELD_OUT_QUANTILE` of held-out training rows reach. The limit comes
from K-fold centroids inside the training rows, so a new cell of a known class crosses it about
1 % of the time by construction: no threshold is chosen by hand.

Measured (``benchmarks/novelty_pbc.py``, glcm+shape+color, four PBC white-cell classes): 1.1 % of
held-out known cells flagged, 100 % of another lab's white cells (BCCD); but unseen classes of the
same lab mostly stay inside (basophil 0.3 %, ig 0.5 %, platelet 3 %, erythroblast 19 %), so the
envelope guards against a new lab or magnification, not against a new class.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

#: Share of held-out training rows inside the envelope.
HELD_OUT_QUANTILE = 0.99
#: Folds inside the training rows that give held-out distances.
ENVELOPE_FOLDS = 5
#: A run warns when this few known-class cells would cross the limit as often by chance (binomial tail).
WARN_P_VALUE = 1e-3


@dataclass(frozen=True)
class FeatureEnvelope:
    """Standardisation, class centroids and the distance limit of a model's training rows."""

    center: np.ndarray  # (d,) feature means
    scale: np.ndarray  # (d,) feature standard deviations (1 where constant)
    centroids: np.ndarray  # (k, d) class means, standardised
    limit: float
    n_rows: int  # training rows the limit was estimated from

    @property
    def expected_share(self) -> float:
        """Share of known-class cells expected outside: 1 % or, with few rows, 1/(n+1) (a new row beats the largest of n)."""
        return max(1 - HELD_OUT_QUANTILE, 1 / (self.n_rows + 1))

    @classmethod
    def fit(cls, values: np.ndarray, labels, seed: int = 0) -> "FeatureEnvelope":
        """The envelope of training ``values`` with class ``labels``."""
        values = np.asarray(values, dtype=np.float64)
        labels = np.asarray(labels, dtype=object)
        center, scale = values.mean(axis=0), values.std(axis=0)
        scale[~(scale > 0)] = 1.0
        standard = (values - center) / scale
        folds = np.random.default_rng(seed).permutation(len(values)) % ENVELOPE_FOLDS
        held_out = [_nearest_distance(standard[folds == f], _centroids(standard[folds != f], labels[folds != f]))
                    for f in range(ENVELOPE_FOLDS) if (folds == f).any() and (folds != f).any()]  # fmt: skip
        limit = float(np.quantile(np.concatenate(held_out), HELD_OUT_QUANTILE)) if held_out else np.inf
        return cls(center, scale, _centroids(standard, labels), limit, len(values))

    def distances(self, values: np.ndarray) -> np.ndarray:
        """Each row's root-mean-square standardised distance to the nearest class centroid."""
        return _nearest_distance((np.asarray(values, dtype=np.float64) - self.center) / self.scale, self.centroids)

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Rows farther from every class than the held-out training rows reach (NaN rows count as outside)."""
        distances = self.distances(values)
        return ~(distances <= self.limit)

    def warning(self, values: np.ndarray) -> str | None:
        """One line when more rows lie outside than known-class cells plausibly would (p < :data:`WARN_P_VALUE`)."""
        from scipy.stats import binom

        count = int(self.outside(values).sum())
        if count == 0 or binom.sf(count - 1, len(values), self.expected_share) >= WARN_P_VALUE:
            return None
        return (f"{count} of {len(values)} inputs lie farther from every training class than "
                f"{HELD_OUT_QUANTILE:.0%} of held-out training cells (a class the model never saw, or another "
                "lab's images?): their predicted labels and confidences are unreliable")  # fmt: skip

    def to_bytes(self) -> bytes:
        """An ``.npz`` archive of plain arrays (read back without unpickling)."""
        buffer = io.BytesIO()
        np.savez(buffer, center=self.center, scale=self.scale, centroids=self.centroids, limit=np.array(self.limit),
                 n_rows=np.array(float(self.n_rows)))  # fmt: skip
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, n_features: int, n_classes: int) -> "FeatureEnvelope":
        """Read :meth:`to_bytes` output, checking every array's shape and type; ValueError when it does not fit."""
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: np.asarray(archive[name]) for name in ("center", "scale", "centroids", "limit", "n_rows")}
        expected = {"center": (n_features,), "scale": (n_features,), "centroids": (n_classes, n_features), "limit": (),
                    "n_rows": ()}  # fmt: skip
        for name, shape in expected.items():
            if arrays[name].shape != shape or arrays[name].dtype.kind != "f":
                raise ValueError(f"feature envelope: {name} has shape {arrays[name].shape}, expected {shape}")
        if not (arrays["scale"] > 0).all() or not arrays["n_rows"] >= 1:
            raise ValueError("feature envelope: scales and the row count must be positive")
        return cls(arrays["center"], arrays["scale"], arrays["centroids"], float(arrays["limit"]), int(arrays["n_rows"]))


def _centroids(standard: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([standard[labels == c].mean(axis=0) for c in sorted(set(labels))])


def _nearest_distance(standard: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    # One centroid at a time: memory stays at the size of the rows, whatever the number of classes.
    squared = np.full(len(standard), np.inf)
    for centroid in centroids:
        squared = np.fmin(squared, ((standard - centroid) ** 2).mean(axis=1))
    return np.sqrt(np.where(np.isnan(standard).any(axis=1), np.nan, squared))
