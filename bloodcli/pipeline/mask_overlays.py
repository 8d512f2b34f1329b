"""What classical features were measured on: the single-cell masks of every sample, drawn on its image.

``bloodcli extract --masks-out DIR`` writes one overlay per sample, ``DIR/<label>/<image stem>[_<box>].png``,
of the image as the extractors saw it (cropped and preprocessed with the table's fitted settings).
"""

from __future__ import annotations

from pathlib import Path

from bloodcli.errors import ImageReadError
from bloodcli.features.base import CellImage
from bloodcli.imaging.cell_mask import MASK_VERSION, draw_cell_masks
from bloodcli.io.images import read_bytes, write_image
from bloodcli.pipeline.runner import WorkItem
from bloodcli.pipeline.table import FeatureTable


def write_mask_overlays(table: FeatureTable, out_dir: str | Path, mask_version: int = MASK_VERSION) -> int:
    """Draw the cell and nucleus masks of every row of ``table`` into ``out_dir``; returns the number written."""
    written = 0
    for sample in table.samples:
        try:
            image = WorkItem(sample).image(read_bytes(sample.path), table.settings.preprocessing)
        except ImageReadError:
            continue  # listed among the table's failures already
        cell = CellImage(image, mask_version)
        box = "" if sample.box is None else "_" + "_".join(map(str, sample.box))
        write_image(Path(out_dir) / str(sample.label or "unlabelled") / f"{Path(sample.path).stem}{box}.png",
                    draw_cell_masks(image, cell.cell_mask, cell.nucleus_mask))  # fmt: skip
        written += 1
    return written
