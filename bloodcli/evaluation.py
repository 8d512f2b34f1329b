"""Honest evaluation: stratified and group-aware splits, cross-validation and hold-out tests.

When a dataset has groups (source image, patient), every split keeps each group entirely on
one side, and this is asserted, not assumed.

Splits are always made on the original samples. Augmented copies (``FeatureTable.augmented``)
only ever join a training part, and only when the sample they were made from is in it
(:func:`expand_split`): no copy of a test sample is fitted on, and test parts hold originals only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import joblib
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from bloodcli.errors import DatasetError, UsageError
from bloodcli.features.extraction import FeatureTable
from bloodcli.metrics import SUMMARY_METRICS, classification_metrics
from bloodcli.models import class_probabilities, fit_classifier, most_likely

Split = tuple[np.ndarray, np.ndarray]


def make_folds(labels, groups=None, n_splits: int = 5, seed: int = 0) -> list[Split]:
    """Stratified K-fold splits, group-aware when ``groups`` is given.

    Raises
    ------
    DatasetError
        When a class has fewer samples (or the dataset fewer groups) than folds.
    """
    labels = np.asarray(labels, dtype=object)
    if n_splits < 2:
        raise UsageError(f"cross-validation needs at least 2 folds, got {n_splits}")
    smallest, count = min(Counter(labels).items(), key=lambda item: item[1])
    if count < n_splits:
        raise DatasetError(f"class '{smallest}' has {count} sample(s), fewer than the {n_splits} folds requested")
    placeholder = np.zeros(len(labels))
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = list(splitter.split(placeholder, labels))
    else:
        groups = np.asarray(groups, dtype=object)
        if len(set(groups)) < n_splits:
            raise DatasetError(f"dataset has {len(set(groups))} groups, fewer than the {n_splits} folds requested")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = list(splitter.split(placeholder, labels, groups))
    for train, test in folds:
        assert_groups_disjoint(groups, train, test)
    return folds


def holdout_split(labels, groups=None, test_size: float = 0.25, seed: int = 0) -> Split:
    """One stratified train/test split; with groups, no group is on both sides."""
    if not 0 < test_size < 1:
        raise UsageError(f"--test-size must be between 0 and 1, got {test_size}")
    labels = np.asarray(labels, dtype=object)
    indices = np.arange(len(labels))
    if groups is None:
        try:
            train, test = train_test_split(indices, test_size=test_size, stratify=labels, random_state=seed)
        except ValueError as exc:
            raise DatasetError(f"cannot make a stratified split: {exc}") from None
        return np.sort(train), np.sort(test)
    train, test = make_folds(labels, groups, max(2, round(1 / test_size)), seed)[0]
    return train, test


def training_rows(table: FeatureTable) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Values, labels and groups of the table's rows followed by their augmented copies, and ``origin``.

    ``origin[i]`` is the original row that row ``i`` shows (an original: itself); copies carry the
    label and group of their original. Without augmentation these are the table's own arrays.
    """
    values, origin = table.with_copies()
    groups = table.groups
    return values, table.labels[origin], None if groups is None else groups[origin], origin


def expand_split(split: Split, origin: np.ndarray) -> Split:
    """A split over original rows, its training part joined by the augmented copies of its rows.

    The test part is returned as it is: only originals, and none of their copies is trained on.
    """
    train, test = split
    copies = np.flatnonzero((origin != np.arange(len(origin))) & np.isin(origin, train))
    return np.concatenate([train, copies]), test


def augmentation_note(augmented) -> str:
    """Protocol text saying how augmented copies (``FeatureTable.augmented``) were used; '' when None."""
    if augmented is None:
        return ""
    return f"; fitted with {augmented.augmentation.describe()}, scored on originals only"


def assert_groups_disjoint(groups, train: np.ndarray, test: np.ndarray) -> None:
    """Raise AssertionError if any group appears on both sides of a split."""
    if groups is None:
        return
    groups = np.asarray(groups, dtype=object)
    shared = set(groups[train]) & set(groups[test])
    if shared:
        raise AssertionError(f"groups on both sides of a split: {sorted(shared)[:5]}")


@dataclass
class EvaluationResult:
    """Pooled metrics over all test predictions plus per-fold metrics."""

    metrics: dict
    fold_metrics: list[dict]
    predictions: np.ndarray
    probabilities: np.ndarray
    test_indices: np.ndarray
    protocol: str

    def summary(self) -> dict:
        """Pooled metrics plus mean and std across folds of each summary metric."""
        result = dict(self.metrics, protocol=self.protocol, n_folds=len(self.fold_metrics))
        if len(self.fold_metrics) > 1:
            for name in SUMMARY_METRICS:
                values = [m[name] for m in self.fold_metrics if m.get(name) is not None]
                if values:
                    result[f"{name}_fold_mean"] = float(np.mean(values))
                    result[f"{name}_fold_std"] = float(np.std(values, ddof=1))
        return result


def _fit_and_predict(model, values, labels, classes, train, test, seed):
    estimator = fit_classifier(model, values[train], labels[train], classes, seed, jobs=1)
    return class_probabilities(estimator, values[test], len(classes))


def evaluate_splits(table: FeatureTable, model: str, splits: list[Split], seed: int = 0, jobs: int = 1, protocol: str = "") -> EvaluationResult:
    """Train on each split's training part (and its augmented copies), predict its test part, score the predictions."""
    values, labels, _, origin = training_rows(table)
    classes = sorted(set(labels))
    fits = [expand_split(split, origin) for split in splits]
    outputs = joblib.Parallel(n_jobs=min(jobs, len(splits)))(
        joblib.delayed(_fit_and_predict)(model, values, labels, classes, train, test, seed) for train, test in fits
    )
    fold_metrics = []
    all_test, all_proba = [], []
    for (train, test), probabilities in zip(splits, outputs):
        predicted = most_likely(probabilities, classes)
        fold_metrics.append(classification_metrics(labels[test], predicted, classes, probabilities))
        all_test.append(test)
        all_proba.append(probabilities)
    test_indices = np.concatenate(all_test)
    probabilities = np.concatenate(all_proba)
    predictions = most_likely(probabilities, classes)
    pooled = classification_metrics(labels[test_indices], predictions, classes, probabilities)
    return EvaluationResult(pooled, fold_metrics, predictions, probabilities, test_indices, protocol)


def cross_validate(table: FeatureTable, model: str, folds: int = 5, seed: int = 0, jobs: int = 1) -> EvaluationResult:
    """Stratified (group-aware when the table has groups) K-fold cross-validation."""
    groups = table.groups
    splits = make_folds(table.labels, groups, folds, seed)
    kind = "stratified group" if groups is not None else "stratified"
    protocol = f"{folds}-fold {kind} cross-validation{augmentation_note(table.augmented)}"
    return evaluate_splits(table, model, splits, seed, jobs, protocol=protocol)


def holdout_evaluate(table: FeatureTable, model: str, test_size: float = 0.25, seed: int = 0) -> EvaluationResult:
    """Train on a stratified (group-aware) training part and score the held-out part."""
    groups = table.groups
    split = holdout_split(table.labels, groups, test_size, seed)
    kind = "group-aware " if groups is not None else ""
    protocol = f"{kind}stratified hold-out ({len(split[1])} test samples){augmentation_note(table.augmented)}"
    return evaluate_splits(table, model, [split], seed, protocol=protocol)
