"""Fitting a CNN in two phases, on the training images given and nothing else.

Phase 1 trains the new head on the frozen backbone; phase 2 unfreezes the top
``fine_tune_fraction`` of the backbone's layers (batch norms stay frozen, in inference mode) at a
lower, cosine-decaying learning rate. Both phases stop early on the loss of a validation split
taken from the training images only (group-aware, :func:`bloodcli.learn.splits.holdout_split`),
keeping the best weights. Classes are weighted by inverse frequency; every random draw is seeded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bloodcli.learn.cnn.augment import augmenter
from bloodcli.learn.cnn.network import build_network, preprocess
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.splits import holdout_split

logger = logging.getLogger("bloodcli")

EpochCallback = Callable[[str], None]


@dataclass
class FittedNetwork:
    """A trained network, its pooled backbone (embedding) and what training cost."""

    model: object
    backbone: object
    settings: CNNSettings
    n_train: int
    epochs_run: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    def cost(self) -> dict:
        """Training cost: seconds in all, per epoch and per image seen (each epoch sees every training image)."""
        per_epoch = self.seconds / max(self.epochs_run, 1)
        return {"train_seconds": round(self.seconds, 2), "epochs": self.epochs_run, "seconds_per_epoch": round(per_epoch, 3),
                "seconds_per_image": per_epoch / max(self.n_train, 1)}  # fmt: skip


def fit_network(images: np.ndarray, targets: np.ndarray, n_classes: int, settings: CNNSettings, groups=None,
                on_epoch: EpochCallback | None = None) -> FittedNetwork:  # fmt: skip
    """Train a network on ``images`` (uint8, (n, s, s, 3)) with integer ``targets`` in ``range(n_classes)``."""
    start = time.perf_counter()
    fit_rows, val_rows = validation_split(targets, groups, settings)
    model, backbone = build_network(settings, n_classes)  # first: it imports TensorFlow with its native logs caught
    import keras

    fitted = FittedNetwork(model, backbone, settings, len(fit_rows))
    train = _stream(images[fit_rows], targets[fit_rows], settings, training=True)
    validation = None if val_rows is None else _stream(images[val_rows], targets[val_rows], settings, training=False)
    watched = "loss" if validation is None else "val_loss"
    weights = _class_weights(targets[fit_rows], n_classes)
    steps = math.ceil(len(fit_rows) / settings.batch_size)
    phases = [("head", settings.head_epochs, settings.head_lr, 0.0), ("fine-tune", settings.epochs, settings.fine_tune_lr, settings.fine_tune_fraction)]
    for name, epochs, rate, fraction in phases:
        if epochs < 1:
            continue
        _set_trainable(backbone, fraction)
        schedule = keras.optimizers.schedules.CosineDecay(rate, epochs * steps) if fraction else rate
        model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
        stop = keras.callbacks.EarlyStopping(watched, patience=settings.patience, restore_best_weights=True)
        report = _EpochReport(name, epochs, fitted, on_epoch)
        model.fit(train, validation_data=validation, epochs=epochs, steps_per_epoch=steps, class_weight=weights,
                  callbacks=[stop, report], shuffle=False, verbose=0)  # fmt: skip
    fitted.seconds = time.perf_counter() - start
    return fitted


def validation_split(targets: np.ndarray, groups, settings: CNNSettings) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows to fit on and rows for early stopping, both from the training images given (group-aware).

    Too few images for a stratified split (a class with one image, fewer than two per class held
    out): every row is fitted on, and early stopping watches the training loss.
    """
    counts = np.bincount(targets)
    n_classes = int((counts > 0).sum())
    held_out = max(settings.validation_fraction, n_classes / len(targets))
    if counts[counts > 0].min() < 2 or held_out > 0.5:
        logger.debug("too few images for a validation split: early stopping watches the training loss")
        return np.arange(len(targets)), None
    return holdout_split(targets.astype(str), groups, held_out, settings.seed)  # class names, as splits take them


def _set_trainable(backbone, fraction: float) -> None:
    """Freeze the backbone, then unfreeze its top ``fraction`` of layers except batch norms."""
    import keras

    backbone.trainable = True
    first = len(backbone.layers) - int(round(fraction * len(backbone.layers)))
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)


def _class_weights(targets: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(targets, minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def _stream(images: np.ndarray, targets: np.ndarray, settings: CNNSettings, training: bool):
    """A ``tf.data`` pipeline of preprocessed batches; for training shuffled, augmented and repeated."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images, targets.astype(np.int32)))
    if training:
        data = data.shuffle(len(images), seed=settings.seed, reshuffle_each_iteration=True).repeat().enumerate()
        if settings.augmentation.enabled:
            apply = augmenter(settings.augmentation, settings.seed)
            data = data.map(lambda i, pair: (apply(pair[0], i), pair[1]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            data = data.map(lambda i, pair: pair)
    batches = data.batch(settings.batch_size).map(lambda x, y: (preprocess(settings, x), y))
    return batches.prefetch(tf.data.AUTOTUNE)


class _EpochReport:
    """A Keras callback recording each epoch and telling ``on_epoch`` (one line per epoch)."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Report(keras.callbacks.Callback):
            def __init__(self, phase, epochs, fitted, on_epoch):
                super().__init__()
                self.phase, self.epochs, self.fitted, self.on_epoch = phase, epochs, fitted, on_epoch

            def on_epoch_begin(self, epoch, logs=None):
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                seconds = time.perf_counter() - self.began
                self.fitted.epochs_run += 1
                entry = {"phase": self.phase, "epoch": epoch + 1, "seconds": round(seconds, 2),
                         **{k: round(float(v), 4) for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")}}  # fmt: skip
                self.fitted.history.append(entry)
                line = (f"{self.phase} epoch {epoch + 1}/{self.epochs}: loss {entry.get('loss', float('nan')):.3f}, "
                        f"val acc {entry.get('val_accuracy', float('nan')):.3f} ({seconds:.0f} s)")  # fmt: skip
                logger.debug(line)
                if self.on_epoch is not None:
                    self.on_epoch(line)

        return Report(*args, **kwargs)


def predict_probabilities(model, images: np.ndarray, settings: CNNSettings, batch_size: int | None = None) -> np.ndarray:
    """Class probabilities of ``images`` (uint8), in batches; float64 rows summing to 1."""
    probabilities = _batched(model, images, settings, batch_size).astype(np.float64)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def embed(backbone, images: np.ndarray, settings: CNNSettings, batch_size: int | None = None) -> np.ndarray:
    """Pooled backbone embeddings of ``images`` (uint8)."""
    return _batched(backbone, images, settings, batch_size).astype(np.float32)


def _batched(network, images: np.ndarray, settings: CNNSettings, batch_size: int | None) -> np.ndarray:
    """``network``'s outputs for ``images``, through one compiled predict function (eager calls per batch are slow)."""
    import tensorflow as tf

    if not len(images):
        return np.zeros((0, network.output_shape[-1]))
    batches = tf.data.Dataset.from_tensor_slices(images).batch(batch_size or settings.batch_size)
    return np.asarray(network.predict(batches.map(lambda x: preprocess(settings, x)), verbose=0))
