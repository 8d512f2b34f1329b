"""The feature table: one row of features per sample, with what it takes to reproduce them.

A table records its :class:`~bloodcli.pipeline.plan.FeatureSettings`, the content key of each
sample, unreadable files, and apart from its rows the features of augmented copies (training rows
only). Saved as a NumPy ``.npz`` archive (the values, and the rest as one JSON string), read back
without unpickling anything; ``.csv``/``.parquet`` export a frame.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import json
import numpy as np

from bloodcli.errors import InputDataError
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.io.datasets import Sample, SampleArrays
from bloodcli.io.files import atomic_write
from bloodcli.pipeline.plan import FeatureSettings

FEATURES_FORMAT = "bloodcli-features/2"
#: Key of the JSON description in a features ``.parquet`` file's schema metadata.
PARQUET_META_KEY = b"bloodcli"


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
class FeatureTable(SampleArrays):
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

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.values, columns=self.feature_names)
        frame.insert(0, "path", [str(s.path) for s in self.samples])
        frame.insert(1, "box", ["" if s.box is None else ",".join(map(str, s.box)) for s in self.samples])
        frame.insert(2, "label", [s.label for s in self.samples])
        frame.insert(3, "group", [s.group for s in self.samples])
        return frame

    def save(self, path: str | os.PathLike) -> None:
        """Save as ``.npz`` (read back by :meth:`load`); ``.csv``/``.parquet`` export a table."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            with atomic_write(path, "w") as handle:
                self.to_frame().to_csv(handle, index=False)
        elif suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            frame = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
            frame = frame.replace_schema_metadata({**(frame.schema.metadata or {}), PARQUET_META_KEY: json.dumps(self._meta())})
            with atomic_write(path) as handle:
                pq.write_table(frame, handle)
        else:
            with atomic_write(path) as handle:
                _write_npz(handle, self.values, np.array(json.dumps(self._meta())))

    def _meta(self) -> dict:
        return {
            "format": FEATURES_FORMAT,
            "feature_names": list(self.feature_names),
            "samples": [[str(s.path), s.label, s.group, None if s.box is None else list(map(int, s.box))] for s in self.samples],
            "content_keys": list(self.content_keys),
            "settings": self.settings.to_dict(),
            "failures": [list(f) for f in self.failures],
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureTable":
        """Read a features file written by :meth:`save`; nothing in it is unpickled or run."""
        if str(path).lower().endswith(".joblib"):
            raise InputDataError(f"{path}: features files of bloodcli 0.1 (.joblib) are pickles and are not loaded "
                                 "(they could run code); extract the features again to a .npz file")  # fmt: skip
        if str(path).lower().endswith(".csv"):
            raise InputDataError(f"{path}: a features table exported as CSV keeps no extraction settings, so no model "
                                 "can be trained on it; use the .npz or .parquet file written by 'bloodcli extract'")  # fmt: skip
        try:
            values, meta = _read_parquet(path) if str(path).lower().endswith(".parquet") else _read_npz(path)
            return cls._from_meta(values, meta)
        except Exception as exc:  # noqa: BLE001 - any unreadable or malformed file is the same user error
            raise InputDataError(f"{path}: not a readable bloodcli features file ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_meta(cls, values: np.ndarray, meta: dict) -> "FeatureTable":
        if not isinstance(meta, dict) or meta.get("format") != FEATURES_FORMAT:
            raise ValueError(f"format is not {FEATURES_FORMAT}")
        names, rows = list(map(str, meta["feature_names"])), meta["samples"]
        if values.dtype.kind != "f" or values.shape != (len(rows), len(names)) or len(meta["content_keys"]) != len(rows):
            raise ValueError(f"values of shape {values.shape} do not match {len(rows)} samples x {len(names)} features")
        samples = [Sample(Path(p), label, group, tuple(box) if box else None) for p, label, group, box in rows]
        return cls(values, names, samples, list(map(str, meta["content_keys"])), FeatureSettings.from_dict(meta["settings"]),
                   [tuple(f) for f in meta["failures"]])  # fmt: skip


def _write_npz(handle, values: np.ndarray, meta: np.ndarray) -> None:
    """The ``.npz`` that ``np.load`` reads: the values stored as they are, the description deflated.

    Float features barely compress (3,200 x 192: 23 % smaller for 75 ms, most of a cached re-run's
    output time); the JSON description shrinks 93 %.
    """
    import zipfile

    with zipfile.ZipFile(handle, "w") as archive:
        with archive.open("values.npy", "w", force_zip64=True) as member:  # streamed: no copy of a large table
            np.lib.format.write_array(member, values, allow_pickle=False)
        described = io.BytesIO()
        np.lib.format.write_array(described, meta, allow_pickle=False)
        archive.writestr("meta.npy", described.getvalue(), zipfile.ZIP_DEFLATED, compresslevel=1)


def _read_npz(path) -> tuple[np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as archive:
        return archive["values"], json.loads(str(archive["meta"]))


def _read_parquet(path) -> tuple[np.ndarray, dict]:
    """Values and description of a features ``.parquet`` file (pyarrow only: pandas metadata is never evaluated)."""
    import pyarrow.parquet as pq

    frame = pq.read_table(path)
    meta = json.loads((frame.schema.metadata or {})[PARQUET_META_KEY])
    columns = [frame.column(str(name)).to_numpy() for name in meta["feature_names"]]
    return np.column_stack(columns).astype(np.float64) if columns else np.empty((frame.num_rows, 0)), meta
