"""Output folders of ``evaluate --out-dir`` and ``compare --out-dir``: JSON, CSV, figures and the HTML report."""

from __future__ import annotations

from pathlib import Path

from bloodcli.io.files import atomic_write
from bloodcli.report.figures import confusion_matrix_figure, save_figure
from bloodcli.report.html import comparison_html, evaluation_html, write_html
from bloodcli.report.tables import comparison_csv, write_confusion_csv, write_json


def write_evaluation_outputs(out_dir: str | Path, metrics: dict, title: str = "bloodcli evaluate", model: dict | None = None) -> list[Path]:
    """Write metrics.json, confusion_matrix.csv, confusion_matrix.png and report.html into ``out_dir``.

    ``model``: what the model records (:func:`bloodcli.api.model_info`), shown in the report as its provenance.
    """
    out = Path(out_dir)
    paths = [out / "metrics.json", out / "confusion_matrix.csv", out / "confusion_matrix.png", out / "report.html"]
    write_json(paths[0], metrics)
    write_confusion_csv(paths[1], metrics)
    save_figure(confusion_matrix_figure(metrics), paths[2])
    write_html(paths[3], evaluation_html(metrics, title, model))
    return paths


def write_comparison_outputs(out_dir: str | Path, result) -> list[Path]:
    """Write results.csv, results.json and a self-contained report.html of a comparison into ``out_dir``."""
    out = Path(out_dir)
    data = result.to_dict()
    paths = [out / "results.csv", out / "results.json", out / "report.html"]
    with atomic_write(paths[0], "w") as handle:
        handle.write(comparison_csv(data))
    write_json(paths[1], data)
    write_html(paths[2], comparison_html(result))
    return paths
