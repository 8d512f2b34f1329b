"""Figures."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from bloodcli.io.files import atomic_write
from bloodcli.report.verdict import format_ms


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


KIND_COLOURS = {"classical": "#4c78a8", "deep": "#f58518", "fused": "#54a24b", "fine-tuned": "#b279a2"}


def metric_bar_figure(results: list[dict], metric: str):
    """Horizontal bars of the mean ``metric`` per configuration (± std), from 0, with each one's extraction cost.

    The axis starts at 0 so bar lengths compare honestly; the best bar has a black edge; the legend
    sits below the plot, never over a bar.
    """
    plt = pyplot()
    names = [f"{r['features']} + {r['model']}" for r in results]
    means = [r["metrics"][metric]["mean"] or 0.0 for r in results]
    stds = [r["metrics"][metric]["std"] or 0.0 for r in results]
    height = 1.5 + 0.45 * len(results)
    figure, axes = plt.subplots(figsize=(9.5, height))
    positions = np.arange(len(results))
    bars = axes.barh(positions, means, xerr=stds, capsize=3, height=0.65, color=[KIND_COLOURS[r["kind"]] for r in results])
    for bar, result, mean, std in zip(bars, results, means, stds):
        if result.get("best"):
            bar.set_edgecolor("black")
            bar.set_linewidth(2)
        ms = result["timing"]["extract_ms_per_sample"]
        epoch = result["timing"].get("network_seconds_per_epoch")
        cost = f"training {epoch:.0f} s/epoch" if epoch is not None else "cost unknown" if ms is None else f"{format_ms(ms)} ms/image"
        axes.text(1.06, bar.get_y() + bar.get_height() / 2, f"{mean:.3f} · {cost}", va="center", fontsize=9.5)
    axes.set_yticks(positions, names, fontsize=10)
    axes.invert_yaxis()  # first configuration on top, as in the table
    axes.set_xlim(0.0, 1.7)  # 0 to 1 for the scores, then a column of values and costs ("0.947 · training 10 s/epoch")
    axes.axvline(1.0, color="grey", lw=0.8)
    axes.set_xticks(np.linspace(0, 1, 6))
    axes.set_xlabel(f"{metric.replace('_', ' ')} (mean ± std)", fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    kinds = [k for k in KIND_COLOURS if any(r["kind"] == k for r in results)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k]) for k in kinds]
    figure.legend(handles, kinds, fontsize=9.5, ncol=len(kinds), loc="lower center", frameon=False)
    axes.set_title(f"{metric.replace('_', ' ')} per configuration (black edge: best)", fontsize=11)
    figure.tight_layout(rect=(0, 0.3 / height, 1, 1))  # the legend's strip at the bottom
    return figure


def roc_figure(curves: dict[str, dict], title: str):
    """One-vs-rest ROC curves (:func:`~bloodcli.report.metrics.roc_curves`), each class's AUC in the legend."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 4.6))
    for label, curve in curves.items():
        axes.plot(curve["fpr"], curve["tpr"], lw=1.5, label=f"{label} (AUC {curve['auc']:.3f})")
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure
