"""Held-out scores: the one cross-validation loop and the one train-on-A-score-on-B path.

``train --cv``, ``train --test-size``, ``evaluate --test`` and ``compare`` (with or without
``--test``) all score through :func:`validate` (folds of one dataset) or :func:`fit_and_test`
(another dataset), which fit with :func:`fit_estimator`: tuning (nested CV) and timing are
options of those, not separate loops.

Anything fitted on images before the classifier (stain and scale references) is fitted inside
each training part: a table that can refit (``FeatureTable.refit``) gives each split its own rows
(:func:`fold_rows`), like a step of a scikit-learn pipeline.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import joblib
import numpy as np

from bloodcli.errors import DatasetError
from bloodcli.learn.classifiers import classifier_entry, fit_classifier
from bloodcli.learn.labels import (
    align_labels,
    class_probabilities,
    encode_labels,
    known_rows,
    most_likely,
)
from bloodcli.learn.splits import (
    Split,
    TrainingRows,
    assert_groups_disjoint,
    check_fold_count,
    expand_split,
    holdout_split,
    inner_splits,
    make_folds,
)
from bloodcli.pipeline.parallel import worker_pool
from bloodcli.pipeline.table import FeatureTable
from bloodcli.report.metrics import SUMMARY_METRICS, classification_metrics, roc_curves


@dataclass
class EvaluationResult:
    """Pooled metrics over all test predictions, per-fold metrics, fit time and tuned parameters."""

    metrics: dict
    fold_metrics: list[dict]
    predictions: np.ndarray
    probabilities: np.ndarray
    test_indices: np.ndarray
    protocol: str
    fit_ms_per_row: float = 0.0
    chosen_params: dict = field(default_factory=dict)  # tuned setting -> number of folds that chose it

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


def check_class_sizes(labels, groups, models: Sequence[str], folds: int | None = None,
                      test_size: float | None = None) -> None:  # fmt: skip
    """Refuse, before any feature is computed, classes too small for the folds or for a classifier.

    Each classifier states the fewest samples per class it fits on; a training part keeps about
    ``(folds - 1) / folds`` (or ``1 - test_size``) of a class.
    """
    labels = np.asarray(labels, dtype=object)
    if folds:
        check_fold_count(labels, groups, folds)
    name, count = min(Counter(labels).items(), key=lambda item: item[1])
    held_out = -(-count // folds) if folds else int(np.ceil(count * test_size)) if test_size else 0
    for model in models:
        needed = classifier_entry(model).min_per_class
        if count - held_out < needed:
            part = "in a training part" if held_out else "in the training data"
            raise DatasetError(f"class '{name}' has {count - held_out} sample(s) {part}; {model} needs at least "
                               f"{needed} per class (add images, or use fewer folds or another --model)")  # fmt: skip


def fit_estimator(model: str, rows: TrainingRows, classes: list[str], seed: int = 0, *, tune: bool = False,
                  jobs: int = 1, client=None):  # fmt: skip
    """A classifier fitted on ``rows`` and the hyper-parameters inner CV chose (empty without ``tune``)."""
    if not tune:
        return fit_classifier(model, rows.values, rows.labels, classes, seed, jobs, client), {}
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        classifier_entry(model).estimator_for(encode_labels(rows.labels, classes), seed, jobs), classifier_entry(model).tuning_grid, scoring="balanced_accuracy",
        cv=inner_splits(rows, seed), n_jobs=1, refit=True, error_score="raise",
    )  # fmt: skip
    search.fit(rows.values, encode_labels(rows.labels, classes))
    return search.best_estimator_, {k.split("__")[-1]: v for k, v in search.best_params_.items()}


def _fit_fold(model: str, rows: TrainingRows, classes, train, test, seed: int, tune: bool):
    """Fit on ``train`` (tuning inside it only), predict ``test``: probabilities, fit seconds, chosen parameters."""
    start = time.perf_counter()
    estimator, chosen = fit_estimator(model, rows.subset(train), classes, seed, tune=tune)
    seconds = time.perf_counter() - start
    return class_probabilities(estimator, rows.values[test], len(classes)), seconds, chosen


def validate(rows: TrainingRows | Sequence[TrainingRows], splits: list[Split], model: str, *, seed: int = 0,
             jobs: int = 1, tune: bool = False, protocol: str = "") -> EvaluationResult:  # fmt: skip
    """The cross-validation loop: fit each split's training part (and its copies), score its test part.

    Parameters
    ----------
    rows : TrainingRows or one per split
        One per split when something fitted on images differs per training part (:func:`fold_rows`).
    splits : list of (train, test)
        Over original rows; training parts are joined by their rows' augmented copies.
    model : str
        A :data:`~bloodcli.learn.classifiers.CLASSIFIERS` name.
    seed, jobs, tune
        Classifier seed, parallel folds, nested-CV tuning from the entry's grid.
    """
    per_split = list(rows) if isinstance(rows, Sequence) else [rows] * len(splits)
    classes = per_split[0].classes
    fits = [expand_split(split, r.origin) for split, r in zip(splits, per_split)]
    outputs = worker_pool(min(jobs, len(fits)))(
        joblib.delayed(_fit_fold)(model, r, classes, train, test, seed, tune) for r, (train, test) in zip(per_split, fits)
    )
    fold_metrics, fit_ms, chosen = [], [], Counter()
    for r, (train, test), (probabilities, seconds, params) in zip(per_split, fits, outputs):
        assert_groups_disjoint(r.groups, train, test)
        fold_metrics.append(classification_metrics(r.labels[test], most_likely(probabilities, classes), classes, probabilities))
        fit_ms.append(1000.0 * seconds / len(train))
        if params:
            chosen[_params_text(params)] += 1
    test_indices = np.concatenate([test for _, test in splits])
    probabilities = np.concatenate([p for p, _, _ in outputs])
    predictions = most_likely(probabilities, classes)
    pooled = classification_metrics(per_split[0].labels[test_indices], predictions, classes, probabilities)
    # Tuning picks per fold: report how often each setting won rather than one misleading value.
    return EvaluationResult(pooled, fold_metrics, predictions, probabilities, test_indices, protocol,
                            float(np.mean(fit_ms)), dict(chosen.most_common()))  # fmt: skip


def fit_and_test(rows: TrainingRows, test_values: np.ndarray, test_labels, model: str, *, seed: int = 0,
                 tune: bool = False, jobs: int = 1, client=None, protocol: str = ""):  # fmt: skip
    """Fit on every training row (copies included) and score once on another dataset's rows.

    ``test_labels`` must already be aligned to the training classes, unknown ones left out
    (:func:`~bloodcli.learn.labels.known_rows`). Returns the fitted estimator and its
    :class:`EvaluationResult` (one "fold": the test set).
    """
    classes = rows.classes
    start = time.perf_counter()
    estimator, chosen = fit_estimator(model, rows, classes, seed, tune=tune, jobs=jobs, client=client)
    seconds = time.perf_counter() - start
    probabilities = class_probabilities(estimator, test_values, len(classes))
    metrics = score_probabilities(test_labels, probabilities, classes)
    result = EvaluationResult(metrics, [metrics], most_likely(probabilities, classes), probabilities,
                              np.arange(len(test_values)), protocol, 1000.0 * seconds / len(rows.values),
                              {_params_text(chosen): 1} if chosen else {})  # fmt: skip
    return estimator, result


def score_probabilities(truth, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Metrics of class ``probabilities`` (columns in ``classes`` order) against ``truth``."""
    return classification_metrics(np.asarray(truth, dtype=object), most_likely(probabilities, classes), classes, probabilities)


def fold_rows(table: FeatureTable, splits: list[Split]) -> TrainingRows | list[TrainingRows]:
    """The rows each split fits and scores on: refitted per training part when the table can refit."""
    if table.refit is None:
        return TrainingRows.of(table)
    return [TrainingRows.of(table.refit(train)) for train, _ in splits]


def protocol_notes(table: FeatureTable) -> str:
    """Protocol text on augmented copies and on where stain/scale references were fitted; '' when neither."""
    notes = augmentation_note(table)
    if table.refit is not None:
        notes += "; stain/scale references fitted on each training part"
    elif table.settings.preprocessing.stain_target is not None:
        notes += "; stain references were fitted on all samples of the features file, test parts included"
    return notes


def augmentation_note(table: FeatureTable) -> str:
    """Protocol text on augmented copies; '' without them."""
    if table.augmented is None:
        return ""
    return f"; fitted with {table.augmented.augmentation.describe()}, scored on originals only"


@dataclass
class ExternalTest:
    """Another dataset's features, computed like the training set's, labels aligned to the training classes.

    Samples whose label is no training class are left out of the metrics and counted in ``excluded``.
    """

    source: str
    values: np.ndarray  # rows whose label is a training class only
    labels: np.ndarray
    classes: list[str]
    excluded: dict[str, int]  # label that is no training class -> samples left out of the metrics
    n_seen_in_training: int  # test images identical (by content) to a training image
    failures: list

    @classmethod
    def of(cls, source, table: FeatureTable, classes: Sequence[str], training_keys: Sequence[str], label_map=None) -> "ExternalTest":
        labels = align_labels(table.labels, classes, label_map)
        known, excluded = known_rows(source, labels, classes)
        seen = set(training_keys)
        return cls(str(source), table.values[known], labels[known], list(classes), excluded,
                   sum(key in seen for key in table.content_keys), list(table.failures))  # fmt: skip

    def metrics(self, probabilities: np.ndarray, protocol: str | None = None) -> dict:
        """Metrics of ``probabilities`` on the scored rows, with what was left out and what was seen in training."""
        metrics = score_probabilities(self.labels, probabilities, self.classes)
        metrics["roc_curves"] = roc_curves(self.labels, probabilities, self.classes)
        metrics["n_seen_in_training"] = self.n_seen_in_training
        metrics["classes_unknown_to_model"] = list(self.excluded)
        metrics["n_unknown_class"] = sum(self.excluded.values())
        metrics["skipped"] = [{"path": p, "reason": r} for p, r in self.failures]
        if protocol is not None:
            metrics["protocol"] = protocol
        return metrics

    def to_dict(self) -> dict:
        return {
            "source": self.source, "n_samples": len(self.labels),
            "classes": {str(c): int(n) for c, n in sorted(Counter(self.labels).items())},
            "n_excluded_unknown_class": sum(self.excluded.values()), "excluded_labels": self.excluded,
            "n_seen_in_training": self.n_seen_in_training,
        }  # fmt: skip


def cross_validate(table: FeatureTable, model: str, folds: int = 5, seed: int = 0, jobs: int = 1) -> EvaluationResult:
    """Stratified (group-aware when the table has groups) K-fold cross-validation."""
    splits = make_folds(table.labels, table.groups, folds, seed)
    kind = "stratified group" if table.groups is not None else "stratified"
    protocol = f"{folds}-fold {kind} cross-validation{protocol_notes(table)}"
    return validate(fold_rows(table, splits), splits, model, seed=seed, jobs=jobs, protocol=protocol)


def holdout_evaluate(table: FeatureTable, model: str, test_size: float = 0.25, seed: int = 0) -> EvaluationResult:
    """Train on a stratified (group-aware) training part and score the held-out part."""
    split = holdout_split(table.labels, table.groups, test_size, seed)
    kind = "group-aware " if table.groups is not None else ""
    protocol = f"{kind}stratified hold-out ({len(split[1])} test samples){protocol_notes(table)}"
    return validate(fold_rows(table, [split]), [split], model, seed=seed, protocol=protocol)


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
