"""Held-out scores of a CNN: each split's network is fine-tuned on its training part only.

The splits are those of every classifier (:func:`bloodcli.learn.splits.make_folds`), so for the
same labels, groups and seed a CNN is scored on exactly the folds of the feature x classifier
pairs of ``compare``. The validation split for early stopping is then taken from inside each
training part (:mod:`.training`): no test image reaches fitting in any way.
"""

from __future__ import annotations

import time

import numpy as np

from bloodcli.learn.cnn.images import ImageSet
from bloodcli.learn.cnn.settings import CNNSettings
from bloodcli.learn.cnn.training import EpochCallback, FittedNetwork, fit_network, predict_probabilities
from bloodcli.learn.labels import encode_labels, most_likely
from bloodcli.learn.splits import Split, assert_groups_disjoint, holdout_split, make_folds
from bloodcli.learn.validation import EvaluationResult
from bloodcli.report.metrics import classification_metrics


def train_network(data: ImageSet, classes: list[str], settings: CNNSettings, on_epoch: EpochCallback | None = None) -> FittedNetwork:
    """A network fine-tuned on every image of ``data`` (and on nothing else)."""
    targets = encode_labels(data.labels, classes)
    return fit_network(data.images, targets, len(classes), settings, data.groups, on_epoch)


def validate_network(data: ImageSet, splits: list[Split], settings: CNNSettings, protocol: str,
                     on_epoch: EpochCallback | None = None, after_fit=None) -> tuple[EvaluationResult, list[dict]]:  # fmt: skip
    """Fit a network per split on its training part, score its test part: pooled result and each fit's cost.

    ``after_fit(number, fitted, train, test)``, when given, is called with each split's network (e.g. to fuse
    its embedding with other features) before the next split is fitted.
    """
    classes = sorted(set(data.labels))
    groups = data.groups
    probabilities, costs = [], []
    for number, (train, test) in enumerate(splits):
        assert_groups_disjoint(groups, train, test)
        if on_epoch is not None and len(splits) > 1:
            on_epoch(f"fold {number + 1}/{len(splits)}: fine-tuning on {len(train)} images")
        fitted = train_network(data.subset(train), classes, settings, on_epoch)
        start = time.perf_counter()
        probabilities.append(predict_probabilities(fitted.model, data.images[test], settings))
        costs.append({**fitted.cost(), "predict_seconds_per_image": (time.perf_counter() - start) / max(len(test), 1)})
        if after_fit is not None:
            after_fit(number, fitted, train, test)
    fit_ms = float(np.mean([1000.0 * c["train_seconds"] / len(train) for c, (train, _) in zip(costs, splits)]))
    return pooled_result(data.labels, splits, probabilities, classes, protocol, fit_ms), costs


def pooled_result(labels: np.ndarray, splits: list[Split], probabilities: list[np.ndarray], classes: list[str], protocol: str,
                  fit_ms: float = 0.0) -> EvaluationResult:  # fmt: skip
    """Per-split and pooled metrics of each split's test-part ``probabilities``."""
    fold_metrics = [classification_metrics(labels[test], most_likely(p, classes), classes, p) for p, (_, test) in zip(probabilities, splits)]
    test_indices = np.concatenate([test for _, test in splits])
    pooled = np.concatenate(probabilities)
    predictions = most_likely(pooled, classes)
    metrics = classification_metrics(labels[test_indices], predictions, classes, pooled)
    return EvaluationResult(metrics, fold_metrics, predictions, pooled, test_indices, protocol, fit_ms)


def cross_validate_network(data: ImageSet, settings: CNNSettings, folds: int = 5, seed: int = 0,
                           on_epoch: EpochCallback | None = None) -> tuple[EvaluationResult, list[dict]]:  # fmt: skip
    """Stratified (group-aware) K-fold cross-validation of a fine-tuned CNN."""
    groups = data.groups
    splits = make_folds(data.labels, groups, folds, seed)
    kind = "stratified group" if groups is not None else "stratified"
    return validate_network(data, splits, settings, f"{folds}-fold {kind} cross-validation; {training_note(settings)}", on_epoch)


def holdout_network(data: ImageSet, settings: CNNSettings, test_size: float = 0.25, seed: int = 0,
                    on_epoch: EpochCallback | None = None) -> tuple[EvaluationResult, list[dict]]:  # fmt: skip
    """A CNN fine-tuned on a stratified (group-aware) training part, scored on the held-out part."""
    groups = data.groups
    split = holdout_split(data.labels, groups, test_size, seed)
    kind = "group-aware " if groups is not None else ""
    protocol = f"{kind}stratified hold-out ({len(split[1])} test samples); {training_note(settings)}"
    return validate_network(data, [split], settings, protocol, on_epoch)


def training_note(settings: CNNSettings) -> str:
    """How a network is fine-tuned, for a protocol line: backbone, input, framing, augmentation."""
    augmentation = settings.augmentation
    augmented = f"augmented on the fly ({augmentation.describe().split('(', 1)[1]}" if augmentation.enabled else "no augmentation"
    return f"{settings.describe()}, trained on each training part only, {augmented}"
