"""A fine-tuned CNN and its model file: the network rebuilt from the manifest, its tensors plain arrays.

The ``.bcm`` zip holds ``manifest.json`` (``"model": "cnn"``, classes, the :class:`CNNSettings`
and preprocessing the network was trained with, provenance, held-out metrics, training profile),
``training_keys.json`` and ``network.npz``: every variable of the network as a float32 array,
read with ``allow_pickle=False``. Loading rebuilds the architecture from the settings (the
registry's backbone, seeded random weights) and sets the arrays after checking their count,
shapes and dtypes: no Keras model, code or pickle is ever read from the file.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bloodcli.errors import ModelFileError, UsageError
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.learn.cnn.images import ImageSet
from bloodcli.learn.cnn.network import build_network, set_tensors, tensors
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.cnn.training import FittedNetwork, embed, predict_probabilities
from bloodcli.learn.model_checks import CNN_MODEL, MODEL_FORMAT, read_entry
from bloodcli.learn.model_file import library_versions, training_fingerprint, training_keys, write_model_file
from bloodcli.pipeline.data_profile import profile_samples

TENSORS_ENTRY = "network.npz"  # read with the estimators' size bound (1 GiB; ResNet50 is ~100 MB)


@dataclass
class CNNModel:
    """A fine-tuned network with everything needed to reproduce its inputs."""

    classes: list[str]
    settings: CNNSettings
    preprocessing: Preprocessing
    network: FittedNetwork | None = None  # built lazily from ``arrays`` when loaded from a file
    arrays: list[np.ndarray] | None = None
    training_keys: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    metrics: dict | None = None
    profile: dict | None = None
    name: str = CNN_MODEL

    @classmethod
    def of(cls, data: ImageSet, fitted: FittedNetwork, preprocessing: Preprocessing) -> "CNNModel":
        """The model of a network fitted on every image of ``data``, with its provenance."""
        labels = data.labels
        classes = sorted(set(labels))
        return cls(
            classes, fitted.settings, preprocessing, fitted, training_keys=list(data.keys),
            provenance={
                "versions": library_versions(), "seed": fitted.settings.seed, "n_samples": len(data),
                "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "class_counts": {c: int((labels == c).sum()) for c in classes},
                "training_data_fingerprint": training_fingerprint(data.keys),
                "training_cost": fitted.cost(), "history": fitted.history,
                "augmentation": None,  # no stored copies: see on_the_fly_augmentation
                "on_the_fly_augmentation": fitted.settings.augmentation.to_dict() if fitted.settings.augmentation.enabled else None,
            },
            profile=profile_samples(data.samples),
        )  # fmt: skip

    @property
    def fitted(self) -> FittedNetwork:
        """The network, rebuilt from the settings and the stored tensors on first use."""
        if self.network is None:
            model, backbone = build_network(self.settings, len(self.classes), pretrained=False)
            set_tensors(model, self.arrays, "model file")
            self.network = FittedNetwork(model, backbone, self.settings, 0)
        return self.network

    def describe(self) -> str:
        return self.settings.describe()

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return predict_probabilities(self.fitted.model, images, self.settings)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """The fine-tuned backbone's pooled embeddings of ``images``."""
        return embed(self.fitted.backbone, images, self.settings)

    def load_images(self, dataset, options) -> ImageSet:
        """``dataset``'s images as this network takes them (its input size and preprocessing)."""
        return ImageSet.load(dataset, self.settings.image_size, self.preprocessing, framing=self.settings.framing_ratio,
                             skip_errors=options.skip_errors, progress=options.progress)  # fmt: skip

    def manifest(self) -> dict:
        return {
            "format": MODEL_FORMAT, "model": self.name, "classes": self.classes, "cnn": self.settings.to_dict(),
            "preprocessing": self.preprocessing.to_dict(), "provenance": self.provenance, "metrics": self.metrics,
            "training_profile": self.profile,
        }  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write the model file atomically (an existing file is replaced only on success)."""
        packed = io.BytesIO()
        np.savez(packed, *tensors(self.fitted.model))
        write_model_file(path, self.manifest(), self.training_keys, {TENSORS_ENTRY: packed.getvalue()})

    @classmethod
    def from_archive(cls, archive: zipfile.ZipFile, manifest: dict, path) -> "CNNModel":
        """The model of an open model file whose manifest says ``"model": "cnn"``; the network is rebuilt on first use."""
        try:
            settings = CNNSettings.from_dict(manifest["cnn"])
            preprocessing = Preprocessing.from_dict(manifest.get("preprocessing"))
        except (TypeError, ValueError, KeyError, UsageError) as exc:
            raise ModelFileError(f"{path}: refused: the network settings in the manifest are not valid ({exc})") from None
        arrays = _read_tensors(archive, path)
        keys = training_keys(archive, path)
        model = cls(list(manifest["classes"]), settings, preprocessing, None, arrays, keys, manifest.get("provenance", {}), manifest.get("metrics"),
                    manifest.get("training_profile"))  # fmt: skip
        try:
            model.fitted  # noqa: B018 - rebuild now: a tampered file is refused at load, not at first prediction
        except ModelFileError as exc:
            raise ModelFileError(str(exc).replace("model file", str(path), 1)) from None
        return model


def _read_tensors(archive: zipfile.ZipFile, path) -> list[np.ndarray]:
    if TENSORS_ENTRY not in archive.namelist():
        raise ModelFileError(f"{path}: model file holds no network tensors ({TENSORS_ENTRY})")
    data = read_entry(archive, TENSORS_ENTRY, path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            names = sorted(stored.files, key=lambda name: int(name.removeprefix("arr_")))
            return [stored[name] for name in names]
    except ValueError as exc:  # object arrays (pickles) or names that are no arr_N
        raise ModelFileError(f"{path}: refused: {TENSORS_ENTRY} is not a list of plain arrays ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: damaged network tensors ({exc})") from None
