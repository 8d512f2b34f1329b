"""Classification metrics: one function from predictions to a JSON-ready dictionary."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

SUMMARY_METRICS = (
    "accuracy", "balanced_accuracy", "precision_weighted", "recall_weighted", "f1_weighted",
    "precision_macro", "recall_macro", "f1_macro", "specificity_macro", "roc_auc_ovr",
)  # fmt: skip


def specificity_per_class(matrix: np.ndarray) -> np.ndarray:
    """True-negative rate of each class from a confusion matrix (rows = truth)."""
    total = matrix.sum()
    true_pos = np.diag(matrix)
    false_pos = matrix.sum(axis=0) - true_pos
    false_neg = matrix.sum(axis=1) - true_pos
    true_neg = total - true_pos - false_pos - false_neg
    denominator = true_neg + false_pos
    return np.divide(true_neg, denominator, out=np.zeros(len(matrix)), where=denominator > 0)


def roc_auc_one_vs_rest(y_true: Sequence[str], probabilities: np.ndarray, labels: Sequence[str]) -> float | None:
    """Macro one-vs-rest ROC-AUC over the classes present in ``y_true``; None if undefined."""
    y_true = np.asarray(y_true, dtype=object)
    present = [i for i, label in enumerate(labels) if 0 < (y_true == label).sum() < len(y_true)]
    if len(present) < 2 or probabilities is None:
        return None
    scores = [roc_auc_score(y_true == labels[i], probabilities[:, i]) for i in present]
    return float(np.mean(scores))


def roc_curves(y_true: Sequence[str], probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, dict]:
    """One-vs-rest ROC curve of each class that some samples have and some don't: corner points and AUC."""
    y_true = np.asarray(y_true, dtype=object)
    curves = {}
    for i, label in enumerate(labels):
        positive = y_true == label
        if 0 < positive.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positive, probabilities[:, i])
            curves[label] = {"fpr": np.round(fpr, 4).tolist(), "tpr": np.round(tpr, 4).tolist(),
                             "auc": float(roc_auc_score(positive, probabilities[:, i]))}  # fmt: skip
    return curves


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], probabilities: np.ndarray | None = None
) -> dict:
    """All metrics the toolkit reports, as plain Python types.

    Parameters
    ----------
    y_true, y_pred : sequence of str
    labels : sequence of str
        Class order for per-class values, probability columns and the confusion matrix.
    probabilities : ndarray, shape (n_samples, n_classes), optional
        Class probabilities in ``labels`` order, for ROC-AUC.
    """
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision for never-predicted classes is reported as 0
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        balanced = balanced_accuracy_score(y_true, y_pred)
    specificity = specificity_per_class(matrix)
    present = support > 0
    weights = support / max(support.sum(), 1)
    result = {
        "n_samples": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "precision_weighted": float((precision * weights).sum()),
        "recall_weighted": float((recall * weights).sum()),
        "f1_weighted": float((f1 * weights).sum()),
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "specificity_macro": float(specificity[present].mean()) if present.any() else 0.0,
        "roc_auc_ovr": roc_auc_one_vs_rest(y_true, probabilities, labels) if probabilities is not None else None,
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            label: {
                "precision": float(precision[i]), "recall": float(recall[i]), "specificity": float(specificity[i]),
                "f1": float(f1[i]), "support": int(support[i]),
            }  # fmt: skip
            for i, label in enumerate(labels)
        },
    }
    return result
