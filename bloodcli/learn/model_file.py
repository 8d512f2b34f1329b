"""A trained model and its file: the fitted classifier with everything needed to reproduce its inputs.

A model file is a zip archive holding ``manifest.json`` (class names, feature and preprocessing
settings, provenance, held-out metrics) and the estimator, stored with ``skops.io`` (loaded
against the classifier registry's allow-list of types, never unpickled) or, for XGBoost, in
XGBoost's own JSON format. Loading a model therefore never executes code from the file.
"""

from __future__ import annotations

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
from bloodcli.errors import BloodcliError, ModelFileError, UsageError
from bloodcli.io.files import atomic_write
from bloodcli.learn.classifiers import fit_classifier, trusted_skops_types
from bloodcli.learn.labels import most_likely
from bloodcli.learn.estimator_checks import check_estimator, check_xgboost_json
from bloodcli.learn.model_checks import MODEL_FORMAT, model_archive, parse_json, read_entry
from bloodcli.learn.novelty import FeatureEnvelope
from bloodcli.pipeline.data_profile import PROFILE_FORMAT, QUANTITIES, profile_samples
from bloodcli.pipeline.plan import FeatureSettings
from bloodcli.pipeline.table import FeatureTable

if TYPE_CHECKING:  # scikit-learn loads with the estimator, not with this module (``info`` reads the manifest only)
    from sklearn.base import BaseEstimator

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
        try:
            probabilities = np.asarray(self.estimator.predict_proba(values), dtype=np.float64)
        except (ValueError, IndexError, TypeError, AttributeError) as exc:  # arrays of a tampered file that disagree
            raise ModelFileError(f"the model's estimator cannot predict ({type(exc).__name__}: {str(exc)[:200]})") from None
        totals = probabilities.sum(axis=1, keepdims=True) if probabilities.ndim == 2 else None
        if probabilities.shape != (len(values), len(self.classes)) or not _valid_probabilities(probabilities, totals):
            raise ModelFileError(f"the model's estimator gives {probabilities.shape[-1] if probabilities.ndim else 0} "
                                 f"non-negative finite probabilities per row, not one for each of its {len(self.classes)} classes")  # fmt: skip
        # Some estimators (naive Bayes) compute in float32 on float32 features: rows then sum to 1 ± 1e-5.
        return probabilities / totals

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

    def manifest(self) -> dict:
        """What the model file's ``manifest.json`` says about this model (:func:`read_manifest` reads it back)."""
        return {
            "format": MODEL_FORMAT,
            "model": self.name,
            "classes": self.classes,
            "settings": self.settings.to_dict(),
            "feature_names": self.feature_names,
            "provenance": self.provenance,
            "metrics": self.metrics,
            "training_profile": self.profile,
        }

    def save(self, path: str | Path) -> None:
        """Write the model file atomically (an existing file is replaced only on success)."""
        name, payload = _serialise_estimator(self.estimator)
        entries = {name: payload} | ({ENVELOPE_ENTRY: self.envelope.to_bytes()} if self.envelope is not None else {})
        write_model_file(path, self.manifest(), self.training_keys, entries)

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        """Load a model file without executing code from it, after checking its structure (:mod:`.model_checks`)."""
        with model_archive(path) as (archive, manifest):
            return cls.from_archive(archive, manifest, path)

    @classmethod
    def from_archive(cls, archive: zipfile.ZipFile, manifest: dict, path) -> "TrainedModel":
        """The model of an open model file (:func:`model_archive`) whose manifest describes a feature classifier."""
        settings = _settings(manifest, path)
        estimator = _deserialise_estimator(archive, path, len(manifest["classes"]), len(manifest["feature_names"]))
        keys = training_keys(archive, path)
        envelope = _envelope(archive, manifest, path)
        model = cls(
            manifest["model"], estimator, list(manifest["classes"]), settings, list(manifest["feature_names"]),
            keys, manifest.get("provenance", {}), manifest.get("metrics"), _profile(manifest.get("training_profile")), envelope,
        )  # fmt: skip
        model._probe(path)
        return model

    def _probe(self, path) -> None:
        """Predict one row of zeros: a model whose arrays disagree fails here, before any feature is computed."""
        try:
            self.predict_proba(np.zeros((1, len(self.feature_names))))
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from None


def _valid_probabilities(probabilities: np.ndarray, totals: np.ndarray) -> bool:
    return bool(np.isfinite(probabilities).all() and (probabilities >= 0).all() and (totals > 0).all())


def _settings(manifest: dict, path) -> FeatureSettings:
    try:
        return FeatureSettings.from_dict(manifest["settings"])
    except (BloodcliError, TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: manifest.json has invalid feature settings ({exc})") from None


def training_keys(archive: zipfile.ZipFile, path) -> list[str]:
    """The training images' keys recorded in a model file (empty in files that record none)."""
    if "training_keys.json" not in archive.namelist():
        return []
    keys = parse_json(read_entry(archive, "training_keys.json", path), "training_keys.json", path)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ModelFileError(f"{path}: training_keys.json must be a list of strings")
    return keys


def _envelope(archive: zipfile.ZipFile, manifest: dict, path) -> FeatureEnvelope | None:
    """The recorded feature envelope (None in older model files); a damaged one is a damaged model file."""
    if ENVELOPE_ENTRY not in archive.namelist():
        return None
    try:
        return FeatureEnvelope.from_bytes(read_entry(archive, ENVELOPE_ENTRY, path), len(manifest["feature_names"]),
                                          len(manifest["classes"]))  # fmt: skip
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: {ENVELOPE_ENTRY} is damaged ({exc})") from None


def _profile(value) -> dict | None:
    """A recorded training profile, or None when absent or of an unknown shape (it only feeds warnings)."""
    if not isinstance(value, dict) or value.get("format") != PROFILE_FORMAT:
        return None
    for name in QUANTITIES:
        entry = value.get(name)
        if entry is not None and not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, (int, float)) for v in entry)):
            return None
    return value


def write_model_file(path: str | Path, manifest: dict, training_keys: list[str], entries: dict[str, bytes]) -> None:
    """Write a model file of either kind atomically: its manifest, training keys and the kind's own ``entries``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, default=_json_default))
        archive.writestr("training_keys.json", json.dumps(training_keys))
        for name, payload in entries.items():
            archive.writestr(name, payload)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


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


def _deserialise_estimator(archive: zipfile.ZipFile, path, n_classes: int, n_features: int) -> BaseEstimator:
    names = archive.namelist()
    if "estimator.xgboost.json" in names:
        from xgboost import XGBClassifier

        data = read_entry(archive, "estimator.xgboost.json", path)
        check_xgboost_json(parse_json(data, "estimator.xgboost.json", path), n_classes, n_features, path)
        estimator = XGBClassifier()
        try:
            estimator.load_model(bytearray(data))
        except Exception as exc:  # noqa: BLE001 - xgboost raises its own error types
            raise ModelFileError(f"{path}: damaged XGBoost model ({str(exc).splitlines()[0]})") from None
        return estimator
    if "estimator.skops" not in names:
        raise ModelFileError(f"{path}: model file holds no estimator")
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    data = read_entry(archive, "estimator.skops", path)
    try:
        estimator = sio.loads(data, trusted=trusted_skops_types())
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(f"{path}: refused: the model file contains types outside the allow-list ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - skops raises many types for damaged data
        raise ModelFileError(f"{path}: damaged model file ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})") from None
    check_estimator(estimator, n_classes, n_features, path)
    return estimator


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
