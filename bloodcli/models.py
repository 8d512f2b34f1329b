"""Classifier registry, training, and safe model files.

A model file is a zip archive holding ``manifest.json`` (class names, feature and preprocessing
settings, provenance, held-out metrics) and the estimator, stored with ``skops.io`` (loaded
against an allow-list of types, never unpickled) or, for XGBoost, in XGBoost's own JSON format.
Loading a model therefore never executes code from the file.
"""

from __future__ import annotations

import io
import json
import platform
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import bloodcli
from bloodcli.errors import ModelFileError, UsageError
from bloodcli.features.extraction import FeatureSettings, FeatureTable
from bloodcli.imaging import atomic_write

MODEL_FORMAT = "bloodcli-model/1"


def _svm(seed: int, jobs: int) -> BaseEstimator:
    # Probabilities from Platt scaling fitted on internal 3-fold predictions, then one SVC on all data.
    svc = SVC(C=10.0, gamma="scale", random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("svm", CalibratedClassifierCV(svc, cv=3, ensemble=False))])


def _random_forest(seed: int, jobs: int) -> BaseEstimator:
    return RandomForestClassifier(n_estimators=500, class_weight="balanced_subsample", n_jobs=jobs, random_state=seed)


def _logistic_regression(seed: int, jobs: int) -> BaseEstimator:
    return Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(C=1.0, max_iter=5000, random_state=seed))])


def _xgboost(seed: int, jobs: int) -> BaseEstimator:
    from xgboost import XGBClassifier

    # No row subsampling: it draws per data partition, so a Dask run could not reproduce a local one.
    return XGBClassifier(
        n_estimators=400, learning_rate=0.1, max_depth=5, subsample=1.0, colsample_bytree=0.6,
        tree_method="hist", n_jobs=jobs, random_state=seed,
    )  # fmt: skip


#: name -> factory(seed, jobs) returning an unfitted scikit-learn compatible classifier.
CLASSIFIERS: dict[str, Callable[[int, int], BaseEstimator]] = {
    "svm": _svm,
    "rf": _random_forest,
    "logreg": _logistic_regression,
    "xgboost": _xgboost,
}

#: Types a skops model file may contain beyond skops' defaults. Trees index arrays without
#: bounds checks, so loaded trees are also validated (see ``_validate_trees``).
TRUSTED_SKOPS_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]


def make_classifier(name: str, seed: int = 0, jobs: int = 1) -> BaseEstimator:
    """Return an unfitted classifier from :data:`CLASSIFIERS`."""
    try:
        factory = CLASSIFIERS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown model '{name}' (available: {', '.join(CLASSIFIERS)})") from None
    return factory(seed, jobs)


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

    def predict_proba(self, values: np.ndarray) -> np.ndarray:
        self._check_width(values)
        return np.asarray(self.estimator.predict_proba(values), dtype=np.float64)

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
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=2, default=_json_default))
            archive.writestr("training_keys.json", json.dumps(self.training_keys))
            name, payload = _serialise_estimator(self.estimator)
            archive.writestr(name, payload)
        with atomic_write(path) as handle:
            handle.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        """Load a model file without executing code from it."""
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                if manifest.get("format") != MODEL_FORMAT:
                    raise ModelFileError(f"{path}: unsupported model format {manifest.get('format')!r}")
                estimator = _deserialise_estimator(archive, path)
                keys = json.loads(archive.read("training_keys.json")) if "training_keys.json" in archive.namelist() else []
        except FileNotFoundError:
            raise ModelFileError(f"{path}: model file not found") from None
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, EOFError, OSError) as exc:
            raise ModelFileError(f"{path}: not a bloodcli model or the file is damaged ({exc})") from None
        settings = FeatureSettings.from_dict(manifest["settings"])
        return cls(
            manifest["model"], estimator, list(manifest["classes"]), settings, list(manifest["feature_names"]),
            keys, manifest.get("provenance", {}), manifest.get("metrics"),
        )  # fmt: skip


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
        estimator = sio.loads(data, trusted=TRUSTED_SKOPS_TYPES)
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(f"{path}: refused: the model file contains types outside the allow-list ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - skops raises many types for damaged data
        raise ModelFileError(f"{path}: damaged model file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    _validate_trees(estimator, path)
    return estimator


def _validate_trees(estimator, path) -> None:
    """Refuse tree models whose node indices point outside their arrays."""
    for tree_estimator in getattr(estimator, "estimators_", []):
        tree = getattr(tree_estimator, "tree_", None)
        if tree is None:
            continue
        count = tree.node_count
        children = np.concatenate([tree.children_left, tree.children_right])
        if children.min(initial=-1) < -1 or children.max(initial=-1) >= count or tree.feature.max(initial=-2) >= tree.n_features:
            raise ModelFileError(f"{path}: refused: a tree in the model file has out-of-range node indices")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "bloodcli": bloodcli.__version__}
    for package in ("numpy", "scikit-learn", "scikit-image", "opencv-python-headless", "xgboost", "tensorflow", "skops"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def encode_labels(labels, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[label] for label in labels], dtype=np.int64)


def class_probabilities(estimator, values: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities for all ``n_classes`` encoded classes, zero for any the estimator never saw."""
    probabilities = np.zeros((len(values), n_classes))
    probabilities[:, estimator.classes_] = estimator.predict_proba(values)
    return probabilities


def most_likely(probabilities: np.ndarray, classes) -> np.ndarray:
    """The class of highest probability in each row (``classes`` in column order)."""
    return np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]


def fit_classifier(name: str, values: np.ndarray, labels, classes: list[str], seed: int = 0, jobs: int = 1, client=None):
    """Fit a fresh classifier on integer-encoded labels (so every backend sees the same targets).

    With a Dask ``client``, XGBoost trains through xgboost.dask on the cluster.
    """
    estimator = make_classifier(name, seed, jobs)
    targets = encode_labels(labels, classes)
    if client is not None and name.lower() == "xgboost":
        from bloodcli.distributed import fit_xgboost_on_dask

        return fit_xgboost_on_dask(client, values, targets, estimator)
    estimator.fit(values, targets)
    return estimator


def train_model(table: FeatureTable, model: str = "svm", seed: int = 0, jobs: int = 1, client=None) -> TrainedModel:
    """Train a classifier on all rows of a feature table and their augmented copies.

    ``client``: a Dask client, to train XGBoost with xgboost.dask.
    """
    labels = table.labels
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise UsageError(f"training needs at least two classes, found {len(classes)} ({', '.join(classes)})")
    values, origin = table.with_copies()
    estimator = fit_classifier(model, values, labels[origin], classes, seed, jobs, client)
    return TrainedModel(
        name=model.lower(), estimator=estimator, classes=classes, settings=table.settings,
        feature_names=list(table.feature_names), training_keys=list(table.content_keys),
        provenance={
            "versions": library_versions(), "seed": seed, "n_samples": len(table),
            "class_counts": {c: int((labels == c).sum()) for c in classes},
            "training_data_fingerprint": training_fingerprint(table.content_keys),
            # Copies are training rows only: predict and evaluate never augment.
            "augmentation": None if table.augmented is None else table.augmented.to_dict(),
        },
    )  # fmt: skip


def training_fingerprint(keys) -> str:
    import hashlib

    return hashlib.blake2b("\n".join(sorted(keys)).encode(), digest_size=16).hexdigest()


__all__ = ["CLASSIFIERS", "TrainedModel", "fit_classifier", "make_classifier", "train_model"]
