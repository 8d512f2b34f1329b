"""Any model file, whatever it holds: a classifier on features or a fine-tuned CNN.

Both kinds share the ``.bcm`` zip and its manifest (:mod:`bloodcli.learn.model_file`); the
manifest's ``model`` entry says which one to rebuild.
"""

from __future__ import annotations

from pathlib import Path

from bloodcli.errors import UsageError
from bloodcli.learn.cnn.model import MODEL_NAME, CNNModel
from bloodcli.learn.model_file import TrainedModel, model_archive

AnyModel = TrainedModel | CNNModel


def load_model(path: str | Path) -> AnyModel:
    """Load a model file of either kind without executing code from it."""
    with model_archive(path) as (archive, manifest):
        if manifest.get("model") == MODEL_NAME:
            return CNNModel.from_archive(archive, manifest, path)
        return TrainedModel.from_archive(archive, manifest, path)


def is_cnn(model) -> bool:
    return isinstance(model, CNNModel)


def check_no_weights(weights: str | None) -> None:
    """Refuse ``--weights`` for a CNN: its model file holds every weight it uses."""
    if weights is not None:
        raise UsageError("--weights does not apply: a CNN model file holds its own weights")
