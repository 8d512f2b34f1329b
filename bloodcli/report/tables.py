"""Tables for people and machines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from bloodcli.io.files import atomic_write

if TYPE_CHECKING:
    import numpy as np

SUMMARY_ROWS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("precision_weighted", "Precision (weighted)"),
    ("recall_weighted", "Recall (weighted)"),
    ("f1_weighted", "F1 (weighted)"),
    ("f1_macro", "F1 (macro)"),
    ("specificity_macro", "Specificity (macro)"),
    ("roc_auc_ovr", "ROC-AUC (one-vs-rest)"),
)


def to_json(data) -> str:
    return json.dumps(data, indent=2, default=_json_default, allow_nan=False)


def _json_default(value):
    if hasattr(value, "tolist"):  # NumPy scalars and arrays; NumPy is not imported for it (``info --json`` loads none)
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | Path, data) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(to_json(data) + "\n")


def _format(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def metrics_tables(metrics: dict, title: str = "Metrics") -> list[Table]:
    """Summary table (with fold mean ± std when present), per-class table and confusion matrix."""
    summary = Table(title=title, title_justify="left")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    has_folds = any(f"{key}_fold_mean" in metrics for key, _ in SUMMARY_ROWS)
    if has_folds:
        summary.add_column("fold mean ± std", justify="right")
    for key, label in SUMMARY_ROWS:
        row = [label, _format(metrics.get(key))]
        if has_folds:
            mean, std = metrics.get(f"{key}_fold_mean"), metrics.get(f"{key}_fold_std")
            row.append("" if mean is None else f"{mean:.4f} ± {std:.4f}")
        summary.add_row(*row)
    per_class = Table(title="Per class", title_justify="left")
    for column in ("class", "precision", "recall", "specificity", "F1", "support"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for label, values in metrics["per_class"].items():
        per_class.add_row(
            label, *(_format(values[k]) for k in ("precision", "recall", "specificity", "f1")), str(values["support"])
        )
    confusion = Table(title="Confusion matrix (rows = true, columns = predicted)", title_justify="left")
    confusion.add_column("")
    for label in metrics["labels"]:
        confusion.add_column(label, justify="right")
    for label, row in zip(metrics["labels"], metrics["confusion_matrix"]):
        confusion.add_row(label, *map(str, row))
    return [summary, per_class, confusion]


def print_metrics(metrics: dict, console: Console, title: str = "Metrics") -> None:
    for table in metrics_tables(metrics, title):
        console.print(table)


def write_confusion_csv(path: str | Path, metrics: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true\\predicted", *metrics["labels"]])
    for label, row in zip(metrics["labels"], metrics["confusion_matrix"]):
        writer.writerow([label, *row])
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def predictions_csv(paths: list[str], labels, probabilities: np.ndarray, classes: list[str]) -> str:
    """CSV text with columns ``path,label,prob_<class>...``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", *(f"prob_{c}" for c in classes)])
    for path, label, row in zip(paths, labels, probabilities):
        writer.writerow([path, label, *(f"{p:.6f}" for p in row)])
    return buffer.getvalue()


COMPARE_TABLE_METRICS = (
    ("accuracy", "accuracy"), ("balanced_accuracy", "bal. acc."), ("f1_weighted", "F1 weighted"),
    ("f1_macro", "F1 macro"), ("roc_auc_ovr", "ROC-AUC"),
)  # fmt: skip


def mean_std(entry: dict, separator: str = "±") -> str:
    """``mean±std``; the mean alone when there is no spread (one score, on a test set)."""
    if entry["mean"] is None:
        return "n/a"
    return f"{entry['mean']:.3f}" + ("" if entry["std"] is None else f"{separator}{entry['std']:.3f}")


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def extraction_cost(row: dict, unknown: str | None = None) -> str:
    """Extraction ms per image computed in the run, for a comparison row.

    A cost not measured here reads ``unknown`` (default: 'cached' when the images came from the cache, else 'n/a');
    a fine-tuned network has no separate extraction: it reads the images itself, so its cost is its training.
    """
    timing = row["timing"]
    if row["kind"] == "fine-tuned":
        return "in training"
    if timing["extract_ms_per_sample"] is None:
        return unknown or ("cached" if timing["extract_n_cached"] else "n/a")
    return _ms(timing["extract_ms_per_sample"])


def comparison_table(data: dict) -> Table:
    """Rich table of ``ComparisonResult.to_dict()``: one row per configuration, the best marked ★."""
    table = Table(title=f"Comparison — {data['protocol']}", title_justify="left")
    # On a narrow terminal, cells wrap instead of being cut: "glcm+shape…" could be either of two sets.
    for column in ("", "features", "model"):
        table.add_column(column, overflow="fold")
    for _, label in COMPARE_TABLE_METRICS:
        table.add_column(label, justify="right", overflow="fold")
    table.add_column("extract ms", justify="right", overflow="fold")
    table.add_column("train ms", justify="right", overflow="fold")
    for row in data["results"]:
        timing = row["timing"]
        table.add_row(
            "★" if row["best"] else "", row["features"], row["model"],
            *(mean_std(row["metrics"][key]) for key, _ in COMPARE_TABLE_METRICS),
            extraction_cost(row), _ms(timing["train_ms_per_sample"]),
            style="bold green" if row["best"] else None,
        )  # fmt: skip
    scores = "scores on the external test set" if data.get("test") else "mean±std over folds"
    table.caption = (f"{scores}; ★ best by {data['selection_metric'].replace('_', ' ')}; "
                     "extract: ms per image computed in this run, 'cached' when none was (cost unknown), 'in training' for a "
                     "fine-tuned network (it reads the images itself); "
                     "train: ms per training row")  # fmt: skip
    return table


def comparison_csv(data: dict) -> str:
    """CSV text with one row per configuration: metric means and stds, timings, best flag."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    metrics = [key for key, _ in COMPARE_TABLE_METRICS]
    writer.writerow(["features", "kind", "model", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
                     "extract_ms_per_sample", "extract_n_computed", "extract_n_cached", "train_ms_per_sample", "best"])  # fmt: skip
    for row in data["results"]:
        values = [row["metrics"][m][s] for m in metrics for s in ("mean", "std")]
        timing = row["timing"]
        writer.writerow([row["features"], row["kind"], row["model"], *("" if v is None else f"{v:.6f}" for v in values),
                         "" if timing["extract_ms_per_sample"] is None else f"{timing['extract_ms_per_sample']:.3f}",
                         timing["extract_n_computed"], timing["extract_n_cached"], f"{timing['train_ms_per_sample']:.3f}",
                         row["best"]])  # fmt: skip
    return buffer.getvalue()
