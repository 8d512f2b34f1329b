"""Human and machine-readable outputs: rich tables, JSON, CSV and plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bloodcli.imaging import atomic_write

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
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
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


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_figure(metrics: dict, title: str = "Confusion matrix"):
    """A matplotlib figure of the row-normalised confusion matrix with counts."""
    plt = pyplot()

    labels = metrics["labels"]
    counts = np.asarray(metrics["confusion_matrix"], dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.6 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, f"{int(count)}", ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of true class")
    figure.tight_layout()
    return figure


def save_figure(figure, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    pyplot().close(figure)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def write_evaluation_outputs(out_dir: str | Path, metrics: dict) -> list[Path]:
    """Write metrics.json, confusion_matrix.csv and confusion_matrix.png into ``out_dir``."""
    out = Path(out_dir)
    paths = [out / "metrics.json", out / "confusion_matrix.csv", out / "confusion_matrix.png"]
    write_json(paths[0], metrics)
    write_confusion_csv(paths[1], metrics)
    save_figure(confusion_matrix_figure(metrics), paths[2])
    return paths


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


def _ms(value, cached: bool = False) -> str:
    return "n/a" if value is None else f"{value:.2f}" + ("*" if cached else "")


def comparison_table(data: dict) -> Table:
    """Rich table of ``ComparisonResult.to_dict()``: one row per configuration, the best marked ★."""
    table = Table(title=f"Comparison — {data['protocol']}", title_justify="left")
    for column in ("", "features", "model"):
        table.add_column(column)
    for _, label in COMPARE_TABLE_METRICS:
        table.add_column(label, justify="right")
    table.add_column("extract ms", justify="right")
    table.add_column("train ms", justify="right")
    for row in data["results"]:
        timing = row["timing"]
        table.add_row(
            "★" if row["best"] else "", row["features"], row["model"],
            *(mean_std(row["metrics"][key]) for key, _ in COMPARE_TABLE_METRICS),
            _ms(timing["extract_ms_per_sample"], timing["extract_cached"]), _ms(timing["train_ms_per_sample"]),
            style="bold green" if row["best"] else None,
        )  # fmt: skip
    scores = "scores on the external test set" if data.get("test") else "mean±std over folds"
    table.caption = (f"{scores}; ★ best by {data['selection_metric'].replace('_', ' ')}; "
                     "ms per sample (train: per training row); * features read from the cache")  # fmt: skip
    return table


def comparison_csv(data: dict) -> str:
    """CSV text with one row per configuration: metric means and stds, timings, best flag."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    metrics = [key for key, _ in COMPARE_TABLE_METRICS]
    writer.writerow(["features", "kind", "model", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
                     "extract_ms_per_sample", "extract_cached", "train_ms_per_sample", "best"])  # fmt: skip
    for row in data["results"]:
        values = [row["metrics"][m][s] for m in metrics for s in ("mean", "std")]
        timing = row["timing"]
        writer.writerow([row["features"], row["kind"], row["model"], *("" if v is None else f"{v:.6f}" for v in values),
                         "" if timing["extract_ms_per_sample"] is None else f"{timing['extract_ms_per_sample']:.3f}",
                         timing["extract_cached"], f"{timing['train_ms_per_sample']:.3f}", row["best"]])  # fmt: skip
    return buffer.getvalue()


def write_comparison_outputs(out_dir: str | Path, result) -> list[Path]:
    """Write results.csv, results.json and a self-contained report.html of a comparison into ``out_dir``."""
    from bloodcli.html_report import comparison_html, write_html

    out = Path(out_dir)
    data = result.to_dict()
    paths = [out / "results.csv", out / "results.json", out / "report.html"]
    with atomic_write(paths[0], "w") as handle:
        handle.write(comparison_csv(data))
    write_json(paths[1], data)
    write_html(paths[2], comparison_html(result))
    return paths
