"""Any model file, whatever it holds: a classifier on features or a fine-tuned CNN.

Both kinds share the ``.bcm`` zip and its manifest (:mod:`bloodcli.learn.model_file`); the
manifest's ``model`` entry says which one to rebuild. The CNN code (and what it imports) loads
only when a CNN model file is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

from bloodcli.errors import UsageError
from bloodcli.io.files import sha256_of
from bloodcli.learn.model_checks import CNN_MODEL, MODEL_FORMAT, model_archive

if TYPE_CHECKING:  # either kind's code loads when a file of that kind is opened: describing one loads neither
    from bloodcli.learn.cnn.model import CNNModel
    from bloodcli.learn.model_file import TrainedModel

AnyModel = Union["TrainedModel", "CNNModel"]


def load_model(path: str | Path) -> AnyModel:
    """Load a model file of either kind without executing code from it."""
    with model_archive(path) as (archive, manifest):
        if manifest["model"] == CNN_MODEL:
            from bloodcli.learn.cnn.model import CNNModel

            return CNNModel.from_archive(archive, manifest, path)
        from bloodcli.learn.model_file import TrainedModel

        return TrainedModel.from_archive(archive, manifest, path)


def is_cnn(model) -> bool:
    return model.name == CNN_MODEL


def check_no_weights(weights: str | None) -> None:
    """Refuse ``--weights`` for a CNN: its model file holds every weight it uses."""
    if weights is not None:
        raise UsageError("--weights does not apply: a CNN model file holds its own weights")


def describe(manifest: dict, path: str | Path | None = None) -> dict:
    """What a model file records: its name and SHA-256, model, classes, inputs (feature settings, or the network and
    its preprocessing), provenance and held-out metrics. Only the manifest is read: no estimator, nor network."""
    return {
        "file": None if path is None else Path(path).name,
        "sha256": None if path is None else sha256_of(path),
        "format": MODEL_FORMAT, "model": manifest["model"], "classes": list(manifest["classes"]), **_inputs(manifest),
        "provenance": manifest.get("provenance", {}), "metrics": manifest.get("metrics"),
    }  # fmt: skip


def _inputs(manifest: dict) -> dict:
    if manifest["model"] == CNN_MODEL:
        from bloodcli.imaging.preprocessing import Preprocessing
        from bloodcli.learn.cnn.settings import CNNSettings

        return {"network": CNNSettings.from_dict(manifest["cnn"]).to_dict(),
                "preprocessing": Preprocessing.from_dict(manifest.get("preprocessing")).to_dict()}  # fmt: skip
    from bloodcli.pipeline.plan import FeatureSettings

    return {"features": FeatureSettings.from_dict(manifest["settings"]).to_dict(), "n_features": len(manifest["feature_names"])}
