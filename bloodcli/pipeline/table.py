"""The feature table: one row of features per sample, with what it takes to reproduce them.

A table records its :class:`~bloodcli.pipeline.plan.FeatureSettings`, the content key of each
sample, unreadable files, and apart from its rows the features of augmented copies (training rows
only). Saved as joblib holding plain arrays and builtins; ``.csv``/``.parquet`` export a frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from bloodcli.errors import InputDataError
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.io.datasets import Dataset, Sample
from bloodcli.io.files import atomic_write
from bloodcli.pipeline.plan import FeatureSettings


@dataclass
class AugmentedRows:
    """Features of augmented copies of a table's rows: rows to fit on, never to score.

    Row ``j`` is a copy of original row ``source_index[j]``. :meth:`FeatureTable.save` does not
    write them: they are a training-time device, recomputed (or read from the cache) when needed.
    """

    values: np.ndarray
    source_index: np.ndarray
    augmentation: Augmentation

    def __len__(self) -> int:
        return len(self.source_index)

    def to_dict(self) -> dict:
        """The augmentation settings and the number of copies, as recorded in models and reports."""
        return dict(self.augmentation.to_dict(), n_rows=len(self))

    def select(self, rows: Sequence[int]) -> "AugmentedRows":
        """The copies of original rows ``rows`` only, their sources renumbered to positions in ``rows``."""
        position = {row: i for i, row in enumerate(rows)}
        keep = np.isin(self.source_index, list(position))
        sources = np.array([position[s] for s in self.source_index[keep]], dtype=np.int64)
        return AugmentedRows(self.values[keep], sources, self.augmentation)


@dataclass
class FeatureTable:
    """Features of a dataset: one row per successfully processed sample (plus, apart, augmented copies)."""

    values: np.ndarray
    feature_names: list[str]
    samples: list[Sample]
    content_keys: list[str]
    settings: FeatureSettings
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_computed: int = 0
    n_cached: int = 0
    augmented: AugmentedRows | None = None
    #: ``refit(rows)``: the table again, with stain/scale references fitted on rows ``rows`` only
    #: (None when nothing was fitted on images, or for a loaded features file).
    refit: Callable[[np.ndarray], "FeatureTable"] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    def with_copies(self) -> tuple[np.ndarray, np.ndarray]:
        """Values of the rows followed by their augmented copies, and the row each one shows (for fitting)."""
        rows = np.arange(len(self))
        if self.augmented is None:
            return self.values, rows
        return np.vstack([self.values, self.augmented.values]), np.concatenate([rows, self.augmented.source_index])

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=object)

    @property
    def groups(self) -> np.ndarray | None:
        groups = Dataset(self.samples, "", "").groups
        return None if groups is None else np.array(groups, dtype=object)

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.values, columns=self.feature_names)
        frame.insert(0, "path", [str(s.path) for s in self.samples])
        frame.insert(1, "box", ["" if s.box is None else ",".join(map(str, s.box)) for s in self.samples])
        frame.insert(2, "label", [s.label for s in self.samples])
        frame.insert(3, "group", [s.group for s in self.samples])
        return frame

    def save(self, path: str | os.PathLike) -> None:
        """Save as joblib (plain arrays and builtins only); ``.csv``/``.parquet`` export a table."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            with atomic_write(path, "w") as handle:
                self.to_frame().to_csv(handle, index=False)
        elif suffix == ".parquet":
            with atomic_write(path) as handle:
                self.to_frame().to_parquet(handle, index=False)
        else:
            with atomic_write(path) as handle:
                joblib.dump(self._to_payload(), handle, compress=3)

    def _to_payload(self) -> dict:
        return {
            "format": "bloodcli-features/1",
            "values": self.values,
            "feature_names": list(self.feature_names),
            "samples": [(str(s.path), s.label, s.group, s.box) for s in self.samples],
            "content_keys": list(self.content_keys),
            "settings": self.settings.to_dict(),
            "failures": list(self.failures),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureTable":
        try:
            payload = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise InputDataError(f"{path}: not a readable bloodcli features file ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != "bloodcli-features/1":
            raise InputDataError(f"{path}: not a bloodcli features file")
        samples = [Sample(Path(p), label, group, tuple(box) if box else None) for p, label, group, box in payload["samples"]]
        return cls(
            payload["values"], payload["feature_names"], samples, payload["content_keys"],
            FeatureSettings.from_dict(payload["settings"]), [tuple(f) for f in payload["failures"]],
        )  # fmt: skip
