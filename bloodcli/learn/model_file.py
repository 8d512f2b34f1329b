"""A trained model and its file: the fitted classifier with everything needed to reproduce its inputs.

A model file is a zip archive holding ``manifest.json`` (class names, feature and preprocessing
settings, provenance, held-out metrics) and the estimator, stored with ``skops.io`` (loaded
against the classifier registry's allow-list of types, never unpickled) or, for XGBoost, in
XGBoost's own JSON format. Loading a model therefore never executes code from the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
import os
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import bloodcli
from bloodcli.errors import ModelFileError, UsageError
from bloodcli.io.files import atomic_write
from bloodcli.learn.classifiers import fit_classifier, trusted_skops_types
from bloodcli.learn.labels import most_likely
from bloodcli.learn.novelty import FeatureEnvelope
from bloodcli.pipeline.data_profile import PROFILE_FORMAT, QUANTITIES, profile_samples
from bloodcli.pipeline.plan import FeatureSettings
from bloodcli.pipeline.table import FeatureTable

if TYPE_CHECKING:  # scikit-learn loads with the estimator, not with this module (``info`` reads the manifest only)
    from sklearn.base import BaseEstimator

MODEL_FORMAT = "bloodcli-model/1"
#: Zip entry of the feature envelope (plain arrays in an ``.npz``).
ENVELOPE_ENTRY = "feature_envelope.npz"


@dataclass
class TrainedModel:
    """A fitted classifier with everything needed to reproduce its inputs."""

    name: str
    estimator: BaseEstimator
    classes: list[str]
    settings: FeatureSettings
    feature_names: list[str]
    training_keys: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    metrics: dict | None = None
    #: What the training images looked like (:mod:`bloodcli.pipeline.data_profile`); None in older model files.
    profile: dict | None = None
    #: Where the training rows lie in feature space (:mod:`bloodcli.learn.novelty`); None in older model files.
    envelope: FeatureEnvelope | None = None

    @classmethod
    def of(cls, table: FeatureTable, estimator, model: str, seed: int) -> "TrainedModel":
        """The model of ``estimator`` fitted on ``table`` (classes in sorted order), with its provenance."""
        labels = table.labels
        classes = sorted(set(labels))
        return cls(
            name=model.lower(), estimator=estimator, classes=classes, settings=table.settings,
            feature_names=list(table.feature_names), training_keys=list(table.content_keys),
            provenance={
                "versions": library_versions(), "seed": seed, "n_samples": len(table),
                "training_source": training_source(table), "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "class_counts": {c: int((labels == c).sum()) for c in classes},
                "training_data_fingerprint": training_fingerprint(table.content_keys),
                # Copies are training rows only: predict and evaluate never augment.
                "augmentation": None if table.augmented is None else table.augmented.to_dict(),
            },
            profile=profile_samples(table.samples),  # the fitted rows only: never a test image
            envelope=FeatureEnvelope.fit(table.values, labels, seed),
        )  # fmt: skip

    def predict_proba(self, values: np.ndarray) -> np.ndarray:
        self._check_width(values)
        probabilities = np.asarray(self.estimator.predict_proba(values), dtype=np.float64)
        # Some estimators (naive Bayes) compute in float32 on float32 features: rows then sum to 1 ± 1e-5.
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, values: np.ndarray) -> np.ndarray:
        return most_likely(self.predict_proba(values), self.classes)

    def _check_width(self, values: np.ndarray) -> None:
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            raise ModelFileError(
                f"model expects {len(self.feature_names)} features ({self.settings.describe()}), "
                f"got {values.shape[-1]}"
            )

    def check_compatible(self, table: FeatureTable) -> None:
        """Refuse features computed with other settings than the model was trained on."""
        if table.settings.to_dict() != self.settings.to_dict() or list(table.feature_names) != self.feature_names:
            raise ModelFileError(
                f"features were computed with {table.settings.describe()}, "
                f"but the model was trained on {self.settings.describe()}"
            )

    def save(self, path: str | Path) -> None:
        """Write the model file atomically (an existing file is replaced only on success)."""
        manifest = {
            "format": MODEL_FORMAT,
            "model": self.name,
            "classes": self.classes,
            "settings": self.settings.to_dict(),
            "feature_names": self.feature_names,
            "provenance": self.provenance,
            "metrics": self.metrics,
            "training_profile": self.profile,
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=2, default=_json_default))
            archive.writestr("training_keys.json", json.dumps(self.training_keys))
            name, payload = _serialise_estimator(self.estimator)
            archive.writestr(name, payload)
            if self.envelope is not None:
                archive.writestr(ENVELOPE_ENTRY, self.envelope.to_bytes())
        with atomic_write(path) as handle:
            handle.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        """Load a model file without executing code from it."""
        with _model_archive(path) as archive:
            manifest = _manifest(archive, path)
            estimator = _deserialise_estimator(archive, path)
            keys = json.loads(archive.read("training_keys.json")) if "training_keys.json" in archive.namelist() else []
            envelope = _envelope(archive, manifest)
        settings = FeatureSettings.from_dict(manifest["settings"])
        return cls(
            manifest["model"], estimator, list(manifest["classes"]), settings, list(manifest["feature_names"]),
            keys, manifest.get("provenance", {}), manifest.get("metrics"), _profile(manifest.get("training_profile")), envelope,
        )  # fmt: skip


def _envelope(archive: zipfile.ZipFile, manifest: dict) -> FeatureEnvelope | None:
    """The recorded feature envelope (None in older model files); a damaged one is a damaged model file."""
    if ENVELOPE_ENTRY not in archive.namelist():
        return None
    try:
        return FeatureEnvelope.from_bytes(archive.read(ENVELOPE_ENTRY), len(manifest["feature_names"]), len(manifest["classes"]))
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{archive.filename}: {ENVELOPE_ENTRY} is damaged ({exc})") from None


def _profile(value) -> dict | None:
    """A recorded training profile, or None when absent or of an unknown shape (it only feeds warnings)."""
    if not isinstance(value, dict) or value.get("format") != PROFILE_FORMAT:
        return None
    for name in QUANTITIES:
        entry = value.get(name)
        if entry is not None and not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, (int, float)) for v in entry)):
            return None
    return value


def read_manifest(path: str | Path) -> dict:
    """What a model file says about itself (classes, settings, provenance, metrics), without loading its estimator."""
    with _model_archive(path) as archive:
        return _manifest(archive, path)


@contextlib.contextmanager
def _model_archive(path: str | Path):
    """The model file's zip archive; a missing, foreign or damaged file is a one-line :class:`ModelFileError`."""
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, EOFError, OSError) as exc:
        raise ModelFileError(f"{path}: not a bloodcli model or the file is damaged ({exc})") from None


def _manifest(archive: zipfile.ZipFile, path) -> dict:
    manifest = json.loads(archive.read("manifest.json"))
    if manifest.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {manifest.get('format')!r}")
    return manifest


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _serialise_estimator(estimator: BaseEstimator) -> tuple[str, bytes]:
    if type(estimator).__name__ == "XGBClassifier":
        return "estimator.xgboost.json", bytes(estimator.get_booster().save_raw("json"))
    import skops.io as sio

    return "estimator.skops", sio.dumps(estimator)


def _deserialise_estimator(archive: zipfile.ZipFile, path) -> BaseEstimator:
    names = archive.namelist()
    if "estimator.xgboost.json" in names:
        from xgboost import XGBClassifier

        estimator = XGBClassifier()
        try:
            estimator.load_model(bytearray(archive.read("estimator.xgboost.json")))
        except Exception as exc:  # noqa: BLE001 - xgboost raises its own error types
            raise ModelFileError(f"{path}: damaged XGBoost model ({exc})") from None
        return estimator
    if "estimator.skops" not in names:
        raise ModelFileError(f"{path}: model file holds no estimator")
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    data = archive.read("estimator.skops")
    try:
        estimator = sio.loads(data, trusted=trusted_skops_types())
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(f"{path}: refused: the model file contains types outside the allow-list ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - skops raises many types for damaged data
        raise ModelFileError(f"{path}: damaged model file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    _validate_trees(estimator, path)
    return estimator


def _validate_trees(estimator, path) -> None:
    """Refuse tree models whose node indices could read outside their arrays or loop.

    Trees are found wherever they sit (a bare tree, a forest, a pipeline step). In a valid tree a
    split node's children come after it and inside the array, and its feature is a real column.
    """
    for tree in _trees(estimator):
        count, nodes = tree.node_count, np.arange(tree.node_count)
        left, right, feature = (np.asarray(a)[:count] for a in (tree.children_left, tree.children_right, tree.feature))
        split = left != -1
        valid = (
            len(left) == len(right) == len(feature) == count
            and ((right == -1) == ~split).all()
            and (left[split] > nodes[split]).all() and (right[split] > nodes[split]).all()
            and (np.concatenate([left, right]) < count).all()
            and ((feature[split] >= 0) & (feature[split] < tree.n_features)).all()
        )  # fmt: skip
        if not valid:
            raise ModelFileError(f"{path}: refused: a tree in the model file has out-of-range or looping node indices")


def _trees(estimator, depth: int = 0):
    """Every ``sklearn.tree._tree.Tree`` inside ``estimator`` (its own, its sub-estimators', its pipeline steps')."""
    if depth > 8:
        return
    if getattr(estimator, "tree_", None) is not None:
        yield estimator.tree_
    for child in list(getattr(estimator, "estimators_", None) or []) + [step for _, step in getattr(estimator, "steps", [])]:
        yield from _trees(child, depth + 1)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "bloodcli": bloodcli.__version__}
    for package in ("numpy", "scikit-learn", "scikit-image", "opencv-python-headless", "xgboost", "tensorflow", "skops"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def train_model(table: FeatureTable, model: str = "svm", seed: int = 0, jobs: int = 1, client=None) -> TrainedModel:
    """Train a classifier on all rows of a feature table and their augmented copies.

    ``client``: a Dask client, for classifiers that can train on the cluster.
    """
    classes = sorted(set(table.labels))
    if len(classes) < 2:
        raise UsageError(f"training needs at least two classes, found {len(classes)} ({', '.join(classes)})")
    values, origin = table.with_copies()
    return TrainedModel.of(table, fit_classifier(model, values, table.labels[origin], classes, seed, jobs, client), model, seed)


def training_source(table: FeatureTable) -> str | None:
    """The folder holding every training image (the dataset's root for a folder per class)."""
    folders = {str(Path(sample.path).parent) for sample in table.samples}
    try:
        return os.path.commonpath(sorted(folders)) if folders else None
    except ValueError:  # paths on different drives
        return None


def training_fingerprint(keys) -> str:
    import hashlib

    return hashlib.blake2b("\n".join(sorted(keys)).encode(), digest_size=16).hexdigest()
