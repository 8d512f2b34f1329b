"""Stratified, group-aware splits, and the rows a split fits on.

When a dataset has groups (source smear, patient), every split keeps each group entirely on one
side, and this is asserted, not assumed.

Splits are always made on the original samples. Augmented copies (``FeatureTable.augmented``)
only ever join a training part, and only when the sample they were made from is in it
(:func:`expand_split`): no copy of a test sample is fitted on, and test parts hold originals only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from bloodcli.errors import DatasetError, UsageError
from bloodcli.pipeline.table import FeatureTable

Split = tuple[np.ndarray, np.ndarray]


def make_folds(labels, groups=None, n_splits: int = 5, seed: int = 0) -> list[Split]:
    """Stratified K-fold splits, group-aware when ``groups`` is given.

    Raises
    ------
    DatasetError
        When a class has fewer samples (or the dataset fewer groups) than folds.
    """
    labels = np.asarray(labels, dtype=object)
    check_fold_count(labels, groups, n_splits)
    placeholder = np.zeros(len(labels))
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = list(splitter.split(placeholder, labels))
    else:
        groups = np.asarray(groups, dtype=object)
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = list(splitter.split(placeholder, labels, groups))
    for train, test in folds:
        assert_groups_disjoint(groups, train, test)
    return folds


def check_fold_count(labels, groups, n_splits: int) -> None:
    """Refuse ``n_splits`` folds that some class (or the set of groups) is too small to fill."""
    if n_splits < 2:
        raise UsageError(f"cross-validation needs at least 2 folds, got {n_splits}")
    smallest, count = min(Counter(labels).items(), key=lambda item: item[1])
    if count < n_splits:
        raise DatasetError(f"class '{smallest}' has {count} sample(s), fewer than the {n_splits} folds requested")
    if groups is not None and len(set(groups)) < n_splits:
        raise DatasetError(f"dataset has {len(set(groups))} groups, fewer than the {n_splits} folds requested")


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


@dataclass(frozen=True)
class TrainingRows:
    """A table's rows followed by their augmented copies: what folds fit on.

    ``origin[i]`` is the original row that row ``i`` shows (an original: itself); copies carry the
    label and group of their original. Without augmentation these are the table's own arrays.
    """

    values: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None
    origin: np.ndarray

    @classmethod
    def of(cls, table: FeatureTable) -> "TrainingRows":
        values, origin = table.with_copies()
        groups = table.groups
        return cls(values, table.labels[origin], None if groups is None else groups[origin], origin)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def columns(self, columns: np.ndarray) -> "TrainingRows":
        """The same rows with only ``columns`` of the values (a feature set of a wider table)."""
        return TrainingRows(self.values[:, columns], self.labels, self.groups, self.origin)

    def subset(self, rows: np.ndarray) -> "TrainingRows":
        """Rows ``rows`` (a training part), ``origin`` renumbered to positions within them."""
        position = np.full(len(self.origin), -1)
        position[rows] = np.arange(len(rows))
        groups = None if self.groups is None else self.groups[rows]
        return TrainingRows(self.values[rows], self.labels[rows], groups, position[self.origin[rows]])


def expand_split(split: Split, origin: np.ndarray) -> Split:
    """A split over original rows, its training part joined by the augmented copies of its rows.

    The test part is returned as it is: only originals, and none of their copies is trained on.
    """
    train, test = split
    copies = np.flatnonzero((origin != np.arange(len(origin))) & np.isin(origin, train))
    return np.concatenate([train, copies]), test


def assert_groups_disjoint(groups, train: np.ndarray, test: np.ndarray) -> None:
    """Raise AssertionError if any group appears on both sides of a split."""
    if groups is None:
        return
    groups = np.asarray(groups, dtype=object)
    shared = set(groups[train]) & set(groups[test])
    if shared:
        raise AssertionError(f"groups on both sides of a split: {sorted(shared)[:5]}")


def repeated_folds(labels, groups, folds: int, repeats: int, seed: int) -> list[Split]:
    """``repeats`` rounds of stratified (group-aware) K-fold splits, round ``r`` seeded ``seed + r``."""
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}")
    return [split for r in range(repeats) for split in make_folds(labels, groups, folds, seed + r)]


def inner_splits(rows: TrainingRows, seed: int) -> list[Split]:
    """Folds inside a training part for tuning (nested CV): over its originals, copies on their original's side."""
    originals = np.flatnonzero(rows.origin == np.arange(len(rows.origin)))
    labels = rows.labels[originals]
    groups = None if rows.groups is None else rows.groups[originals]
    smallest = min(Counter(labels).values())
    n_groups = len(set(groups)) if groups is not None else smallest
    folds = make_folds(labels, groups, max(2, min(3, smallest, n_groups)), seed)
    return [expand_split((originals[train], originals[test]), rows.origin) for train, test in folds]
