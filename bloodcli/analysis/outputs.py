"""The tables of ``analyze``: per smear and for the batch (CSV and JSON), per white cell (CSV), and the report.

Every file is written atomically after the run, from plain numbers only, so an interrupted run
resumed later writes byte-identical files. Percentages are of the classified white cells.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from bloodcli.analysis.smears import Analysis, Cell
from bloodcli.io.files import atomic_write

COUNTED = ("RBC", "platelet", "WBC")


def differential(cells: list[Cell], classes: list[str], min_confidence: float) -> dict:
    """Count and % per class, mean confidence and low-confidence count of some white cells."""
    classified = [c for c in cells if c.label]
    counts = {name: sum(c.label == name for c in classified) for name in classes}
    total = len(classified)
    return {
        "n_classified": total,
        "counts": counts,
        "percent": {name: round(100.0 * n / total, 2) if total else None for name, n in counts.items()},
        "mean_confidence": round(sum(c.confidence for c in classified) / total, 4) if total else None,
        "n_low_confidence": sum(c.confidence < min_confidence for c in classified),
    }


def smear_summaries(analysis: Analysis) -> list[dict]:
    """One dictionary per smear: segmented counts and the white-cell differential."""
    return [
        {"smear": s.smear, "name": s.name, **{k: s.counts[k] for k in COUNTED},
         **differential(s.cells, analysis.classes, analysis.min_confidence)}
        for s in analysis.smears
    ]  # fmt: skip


def batch_summary(analysis: Analysis) -> dict:
    """The whole batch as one smear: counts summed, differential over every white cell."""
    cells = [c for s in analysis.smears for c in s.cells]
    totals = {k: sum(s.counts[k] for s in analysis.smears) for k in COUNTED}
    return {"n_smears": len(analysis.smears), **totals, **differential(cells, analysis.classes, analysis.min_confidence)}


def to_dict(analysis: Analysis) -> dict:
    """Everything ``smears.json`` (and ``analyze --json``) holds."""
    return {
        "model": analysis.model, "classes": analysis.classes, "min_confidence": analysis.min_confidence,
        "framing": analysis.framing.to_dict(), "input_warning": analysis.warning,
        "batch": batch_summary(analysis), "smears": smear_summaries(analysis),
        "skipped": [{"path": p, "reason": r} for p, r in analysis.failures],
    }  # fmt: skip


def smears_csv(summaries: list[dict], classes: list[str]) -> str:
    columns = ["smear", *COUNTED, "n_classified", *(f"n_{c}" for c in classes), *(f"pct_{c}" for c in classes),
               "mean_confidence", "n_low_confidence"]  # fmt: skip
    rows = [{**{k: s[k] for k in ("smear", *COUNTED, "n_classified", "mean_confidence", "n_low_confidence")},
             **{f"n_{c}": s["counts"][c] for c in classes}, **{f"pct_{c}": s["percent"][c] for c in classes}}
            for s in summaries]  # fmt: skip
    return _csv(columns, rows)


def cells_csv(analysis: Analysis) -> str:
    classes = analysis.classes
    columns = ["smear", "object_id", "xmin", "ymin", "xmax", "ymax", "class", "confidence", "low_confidence", "crop",
               *(f"prob_{c}" for c in classes)]  # fmt: skip
    rows = []
    for smear in analysis.smears:
        for c in smear.cells:
            row = {"smear": c.smear, "object_id": c.object_id, **dict(zip(("xmin", "ymin", "xmax", "ymax"), c.box)),
                   "class": c.label, "confidence": round(c.confidence, 4) if c.label else "",
                   "low_confidence": int(bool(c.label) and c.confidence < analysis.min_confidence), "crop": c.crop}  # fmt: skip
            row.update({f"prob_{name}": p for name, p in zip(classes, c.probabilities)})
            rows.append(row)
    return _csv(columns, rows)


def _csv(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_line(summary: dict, classes: list[str]) -> str:
    """One line per smear for a terminal: counts, differential, confidence."""
    counts = f"RBC {summary['RBC']}, platelets {summary['platelet']}, WBC {summary['WBC']}"
    shown = [f"{c} {summary['counts'][c]} ({summary['percent'][c]:.0f}%)" for c in classes if summary["counts"][c]]
    confidence = "" if summary["mean_confidence"] is None else \
        f"; mean confidence {summary['mean_confidence']:.2f}, {summary['n_low_confidence']} low"  # fmt: skip
    return f"{summary.get('name', 'batch')}: {counts}" + (f" | {', '.join(shown)}" if shown else "") + confidence


def write_outputs(analysis: Analysis, report: bool = True) -> list[Path]:
    """Write smears.csv, smears.json, cells.csv (and report.html) into the analysis folder."""
    from bloodcli.report.analysis_html import analysis_html

    data = to_dict(analysis)
    files = {
        "smears.csv": smears_csv(data["smears"], analysis.classes),
        "smears.json": json.dumps(data, indent=2) + "\n",
        "cells.csv": cells_csv(analysis),
    }
    if report:
        files["report.html"] = analysis_html(data, _gallery(analysis), analysis.out_dir)
    written = []
    for name, text in files.items():
        with atomic_write(analysis.out_dir / name, "w") as handle:
            handle.write(text)
        written.append(analysis.out_dir / name)
    return written


def _gallery(analysis: Analysis) -> list[dict]:
    return [{"smear": c.name, "object_id": c.object_id, "crop": c.crop, "class": c.label, "confidence": c.confidence,
             "box": c.box, "low": bool(c.label) and c.confidence < analysis.min_confidence}
            for s in analysis.smears for c in s.cells]  # fmt: skip
