"""The network of a fine-tuned CNN: a registry backbone, dropout and a softmax head.

The backbone comes from :data:`bloodcli.features.deep.BACKBONES` (one registry for frozen features
and fine-tuning). Inputs are ``uint8`` RGB batches; :func:`preprocess` applies the backbone's own
input scaling. A saved model is rebuilt here from its settings alone and its tensors set with
:func:`set_tensors`, which checks every shape and dtype first: nothing in a model file is run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bloodcli.errors import ModelFileError
from bloodcli.features import EXTRACTORS
from bloodcli.features.deep import load_tensorflow, new_backbone, on_gpu, preprocess_function
from bloodcli.learn.cnn.settings import CNNSettings

HEAD_LAYER = "cnn_head"


def resolve_weights(settings: CNNSettings) -> CNNSettings:
    """Settings with the weights file found, fingerprinted and its width multiplier read (a wrong alpha refused)."""
    extractor = _extractor(settings, check_resources=True)
    params = extractor.params
    return replace(settings, weights=params["weights"], weights_sha256=params["weights_sha256"], alpha=params.get("alpha", settings.alpha))


def _extractor(settings: CNNSettings, check_resources: bool, weights: str | None = None):
    params = {"weights": weights or settings.weights, "input_size": settings.image_size}
    if "alpha" in EXTRACTORS[settings.backbone].defaults:
        params["alpha"] = settings.alpha
    if check_resources and settings.weights_sha256 and weights is None:
        params["weights_sha256"] = settings.weights_sha256
    return EXTRACTORS[settings.backbone](check_resources, **params)


def build_network(settings: CNNSettings, n_classes: int, pretrained: bool = True):
    """``(model, backbone)``: the classifier and its pooled backbone (the embedding), sharing layers.

    ``pretrained=False`` builds the same architecture with seeded random weights, for a model file's
    tensors to be set into.
    """
    load_tensorflow()  # first: its native start-up logs go to the debug log
    import keras

    # On a GPU, float16 compute with float32 variables (the stored tensors stay float32); the head stays float32.
    keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu() else "float32")
    keras.utils.set_random_seed(settings.seed)
    backbone = new_backbone(_extractor(settings, False, None if pretrained else "none"))
    features = keras.layers.Dropout(settings.dropout, seed=settings.seed)(backbone.output)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name=HEAD_LAYER)(features)
    return keras.Model(backbone.input, outputs), backbone


def preprocess(settings: CNNSettings, images):
    """``uint8`` (or float 0-255) RGB batches as the backbone's ImageNet weights expect them."""
    import tensorflow as tf

    return preprocess_function(settings.backbone)(tf.cast(images, tf.float32))


def tensors(model) -> list[np.ndarray]:
    """Every variable of ``model`` (trainable or not, batch-norm statistics included), in a fixed order."""
    return [np.asarray(w) for w in model.get_weights()]


def set_tensors(model, arrays: list[np.ndarray], source: str) -> None:
    """Set ``model``'s variables to ``arrays`` after checking their count, shapes and dtypes against it."""
    expected = model.weights
    if len(arrays) != len(expected):
        raise ModelFileError(f"{source}: refused: the network has {len(expected)} tensors, the model file {len(arrays)}")
    for index, (array, variable) in enumerate(zip(arrays, expected)):
        if tuple(array.shape) != tuple(variable.shape):
            raise ModelFileError(f"{source}: refused: tensor {index} ({variable.path}) has shape {tuple(array.shape)}, "
                                 f"the network needs {tuple(variable.shape)}")  # fmt: skip
        if array.dtype != np.float32 or not np.isfinite(array).all():
            raise ModelFileError(f"{source}: refused: tensor {index} ({variable.path}) is not finite float32 ({array.dtype})")
    model.set_weights(arrays)
