"""Figures."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from bloodcli.io.files import atomic_write


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


def figure_base64(figure) -> str:
    """PNG of a matplotlib figure as base64 text (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def metric_bar_figure(results: list[dict], metric: str):
    """Bars of the mean ``metric`` per configuration with ± std error bars, best bar highlighted."""
    plt = pyplot()
    names = [f"{r['features']}\n{r['model']}" for r in results]
    means = [r["metrics"][metric]["mean"] or 0.0 for r in results]
    stds = [r["metrics"][metric]["std"] or 0.0 for r in results]
    colours = {"classical": "#4c78a8", "deep": "#f58518", "fused": "#54a24b"}
    figure, axes = plt.subplots(figsize=(max(6.0, 0.75 * len(results) + 2), 4.2))
    bars = axes.bar(range(len(results)), means, yerr=stds, capsize=3, color=[colours[r["kind"]] for r in results])
    for bar, result in zip(bars, results):
        if result.get("best"):
            bar.set_edgecolor("black")
            bar.set_linewidth(2)
    axes.set_xticks(range(len(results)), names, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std)")
    low = min(m - s for m, s in zip(means, stds))
    axes.set_ylim(max(0.0, low - 0.05), min(1.0, max(m + s for m, s in zip(means, stds)) + 0.03) if means else 1.0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for k, c in colours.items() if any(r["kind"] == k for r in results)]
    axes.legend(handles, [k for k in colours if any(r["kind"] == k for r in results)], fontsize=8, loc="lower right")
    axes.set_title(f"{metric.replace('_', ' ')} per configuration (black edge: best)")
    figure.tight_layout()
    return figure


def roc_figure(y_true, probabilities: np.ndarray, classes: list[str], title: str):
    """One-vs-rest ROC curves, one per class, with each class's AUC in the legend."""
    from sklearn.metrics import auc, roc_curve

    plt = pyplot()
    y_true = np.asarray(y_true, dtype=object)
    figure, axes = plt.subplots(figsize=(5.2, 4.6))
    for i, label in enumerate(classes):
        positive = y_true == label
        if 0 < positive.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positive, probabilities[:, i])
            axes.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure
