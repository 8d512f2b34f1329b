"""The review report of ``analyze``: one self-contained HTML page to check the counts by eye.

Tables per smear and for the batch, a bar chart of the differential (axis from 0), a gallery of the
white-cell crops grouped by predicted class with their confidence (low-confidence ones outlined in
red), and the segmentation overlays with each white cell's class written beside it. Images are
embedded as JPEG data URIs; the gallery and the overlays are capped so a batch of thousands of smears
still gives a page a browser opens.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np

from bloodcli.errors import ImageReadError
from bloodcli.io.images import read_image
from bloodcli.report.figures import figure_base64, pyplot
from bloodcli.report.html import _cell, _page

#: Crops shown per class, and smears whose overlay is shown, at most.
GALLERY_PER_CLASS = 150
MAX_OVERLAYS = 24
THUMBNAIL_SIDE, OVERLAY_WIDTH = 96, 560

GALLERY_STYLE = """
.gallery { display: flex; flex-wrap: wrap; gap: .4rem; } .gallery figure { margin: 0; width: 104px; text-align: center; }
.gallery img { border: 3px solid #d0d7de; border-radius: 3px; } .gallery figure.low img { border-color: #cf222e; }
.gallery figcaption { font-size: .72rem; overflow-wrap: anywhere; } .gallery figure.low figcaption { color: #cf222e; font-weight: 600; }
.warning { background: #fff8c5; border-left: 4px solid #bf8700; padding: .6rem 1rem; }
"""


def _jpeg(rgb: np.ndarray, quality: int = 85) -> str:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(data.tobytes()).decode("ascii") if ok else ""


def _fit(rgb: np.ndarray, width: int | None = None, side: int | None = None) -> np.ndarray:
    scale = width / rgb.shape[1] if width else side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)


def differential_figure(percent: dict, counts: dict):
    """Bars of the batch differential in % of classified white cells, axis from 0, counts above the bars."""
    plt = pyplot()
    names = list(percent)
    values = [percent[n] or 0.0 for n in names]
    figure, axes = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 3.8))
    bars = axes.bar(range(len(names)), values, color="#4c78a8")
    for bar, name in zip(bars, names):
        axes.annotate(f"{counts[name]} ({percent[name] or 0:.0f}%)", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=10, xytext=(0, 2), textcoords="offset points")  # fmt: skip
    axes.set_xticks(range(len(names)), names, fontsize=11)
    axes.set_ylim(0, min(100.0, max(values + [10.0]) * 1.18))
    axes.set_ylabel("% of classified white cells", fontsize=11)
    axes.set_title("White-cell differential (batch)")
    figure.tight_layout()
    return figure


def _summary_table(rows: list[dict], classes: list[str], first: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    body = []
    for row in rows:
        cells = [_cell(row.get("name", "batch"), True), *(_cell(row[k]) for k in ("RBC", "platelet", "WBC"))]
        cells += [_cell(f"{row['counts'][c]} ({row['percent'][c]:.1f}%)" if row["percent"][c] is not None else "0") for c in classes]
        confidence = "n/a" if row["mean_confidence"] is None else f"{row['mean_confidence']:.3f}"
        cells += [_cell(confidence), _cell(row["n_low_confidence"])]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table><tr><th class="text">{first}</th><th>RBC</th><th>platelets</th><th>WBC</th>{head}'
            f"<th>mean confidence</th><th>low confidence</th></tr>{''.join(body)}</table>")  # fmt: skip


def _gallery(cells: list[dict], classes: list[str], out_dir: Path) -> str:
    parts = []
    for name in [*classes, ""]:
        members = [c for c in cells if c["class"] == name]
        if not members:
            continue
        shown = members[:GALLERY_PER_CLASS]
        more = f" (first {len(shown)} shown)" if len(members) > len(shown) else ""
        figures = []
        for c in shown:
            try:
                thumbnail = _jpeg(_fit(read_image(out_dir / c["crop"]), side=THUMBNAIL_SIDE))
            except ImageReadError:
                continue
            label = f"{c['smear']} #{c['object_id']}" + (f" {c['confidence']:.2f}" if name else "")
            mark = " low" if c["low"] else ""
            figures.append(f'<figure class="{mark.strip()}"><img alt="{html.escape(label)}" src="data:image/jpeg;base64,{thumbnail}">'
                           f"<figcaption>{html.escape(label)}{' (low)' if mark else ''}</figcaption></figure>")  # fmt: skip
        title = html.escape(name or "not classified")
        parts.append(f"<h3>{title}: {len(members)}{more}</h3><div class=\"gallery\">{''.join(figures)}</div>")
    return "\n".join(parts)


def labelled_overlay(overlay: np.ndarray, cells: list[dict]) -> np.ndarray:
    """The segmentation overlay with each white cell's class and confidence written above its box."""
    out = overlay.copy()
    scale = max(0.6, overlay.shape[1] / 640)  # readable once the overlay is shrunk to the page
    for c in cells:
        xmin, ymin, xmax, _ = c["box"]
        text = f"{c['class'] or '?'} {c['confidence']:.2f}"
        origin = (int(xmin), max(int(24 * scale), int(ymin) - 6))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, (255, 255, 255), max(4, round(5 * scale)), cv2.LINE_AA)
        colour = (207, 34, 46) if c["low"] else (20, 60, 255)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, colour, max(2, round(2 * scale)), cv2.LINE_AA)
    return out


def _overlays(data: dict, cells: list[dict], overlay_dir: Path) -> str:
    figures = []
    for smear in data["smears"][:MAX_OVERLAYS]:
        try:
            overlay = read_image(overlay_dir / f"{smear['name']}.png")
        except ImageReadError:
            continue
        labelled = labelled_overlay(overlay, [c for c in cells if c["smear"] == smear["name"]])
        figures.append(f'<figure><img alt="{html.escape(smear["name"])}" src="data:image/jpeg;base64,{_jpeg(_fit(labelled, OVERLAY_WIDTH))}">'
                       f"<figcaption>{html.escape(smear['name'])}</figcaption></figure>")  # fmt: skip
    more = f'<p class="meta">First {MAX_OVERLAYS} of {len(data["smears"])} smears shown.</p>' if len(data["smears"]) > MAX_OVERLAYS else ""
    return f'<div class="figures">{"".join(figures)}</div>{more}'


def analysis_html(data: dict, cells: list[dict], out_dir: Path, overlay_dir: str = "segmentation/overlays") -> str:
    """The review report of an analysis (``smears.json`` content, gallery cells, the output folder)."""
    classes, batch = data["classes"], data["batch"]
    warning = f'<p class="warning">{html.escape(data["input_warning"])}</p>' if data["input_warning"] else ""
    chart = differential_figure(batch["percent"], batch["counts"])
    skipped = "".join(f"<li>{html.escape(s['path'])}: {html.escape(s['reason'])}</li>" for s in data["skipped"])
    body = [
        "<h1>bloodcli analyze</h1>",
        f'<p class="meta">{batch["n_smears"]} smear(s); model {html.escape(data["model"])} ({html.escape(", ".join(classes))}); '
        f'white cells cropped as {html.escape(data["framing"]["description"])}; low confidence: below {data["min_confidence"]:.2f}.</p>',
        warning, "<h2>Batch</h2>", _summary_table([batch], classes, "batch"),
        f'<div class="figures"><figure><img alt="differential" src="data:image/png;base64,{figure_base64(chart)}">'
        "<figcaption>Differential of the batch</figcaption></figure></div>",
        "<h2>Per smear</h2>", _summary_table(data["smears"], classes, "smear"),
        "<h2>White cells by predicted class</h2>", _gallery(cells, classes, out_dir),
        "<h2>Overlays</h2><p class=\"meta\">Red cells red, white cells blue, platelets green; each white cell's class and "
        "confidence above it (red: low confidence).</p>", _overlays(data, cells, out_dir / overlay_dir),
        f"<h2>Skipped inputs</h2><ul>{skipped}</ul>" if skipped else "",
    ]  # fmt: skip
    return _page("bloodcli analyze report", "\n".join(body)).replace("</style>", GALLERY_STYLE + "</style>", 1)
