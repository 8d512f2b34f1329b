"""The ``segment`` command: smear images into red cells, white cells and platelets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bloodcli.cli.app import app, build_lab_tables_ahead, handle_errors, lazy_module
from bloodcli.cli.options import JobsOpt, JsonOpt, SchedulerOpt, SkipErrorsOpt
from bloodcli.cli.output import output, to_json
from bloodcli.pipeline.options import ExecutionOptions
from bloodcli.segmentation import RBC_DIAMETER_UM

api = lazy_module("bloodcli.api")


@app.command()
@handle_errors
def segment(
    inputs: Annotated[list[str], typer.Argument(help="Smear images, folders, globs or a VOC folder.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for label masks, objects.csv, counts.csv (and overlays, crops).")],
    method: Annotated[str, typer.Option("--method", help="hsv (connected components) or watershed (splits touching red cells).")] = "watershed",
    crops: Annotated[bool, typer.Option("--crops", help="Also write each cell to OUT/crops/<class>/ and the manifest OUT/crops.csv "
                     "(path,label,group,box; group = source smear) that train, compare and evaluate read.")] = False,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="CSV image,label of white-cell subtypes: with --crops, "
                      "OUT/labelled_crops.csv lists the white cells they name (the smear's only one, or by box overlap "
                      "with the --evaluate VOC folder).")] = None,
    overlays: Annotated[bool, typer.Option("--overlays", help="Also draw each image's cells into OUT/overlays/<stem>.png "
                        "(red cells red, white cells blue, platelets green).")] = False,
    evaluate: Annotated[Optional[Path], typer.Option("--evaluate", help="VOC folder: score detection and counts against its boxes.")] = None,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Folder of white-cell masks (<stem>.png): score Dice/IoU.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Any segmentation setting NAME=VALUE, repeatable "
                     "(e.g. nucleus_sat_min=80, rbc_min_area=1200; all in bloodcli.segmentation.smear.SegmentationParams).")] = None,
    rbc_diameter: Annotated[Optional[float], typer.Option("--rbc-diameter", help="Red-cell diameter in pixels, instead of "
                            "estimating it in each image.")] = None,
    pixel_size: Annotated[Optional[float], typer.Option("--pixel-size", help="Micrometres per pixel: red cells are then taken "
                          f"to be {RBC_DIAMETER_UM} µm across (instead of estimating their size in each image).")] = None,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    skip_errors: SkipErrorsOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Segment smear images into red cells, white cells and platelets; count and optionally score them."""
    from bloodcli.segmentation.smear import (
        SegmentationParams,
        check_method,
        with_known_size,
    )

    check_method(method)
    params = with_known_size(SegmentationParams.from_strings(param), rbc_diameter, pixel_size)
    build_lab_tables_ahead()
    out = output()
    with out.progress("segmenting") as progress:
        options = ExecutionOptions(jobs=jobs, scheduler=scheduler, skip_errors=skip_errors, progress=progress)
        run = api.segment(inputs, out_dir, method, params, crops=crops, overlays=overlays, voc_dir=evaluate, mask_dir=masks,
                          labels=labels, options=options)  # fmt: skip
    out.skipped(run.failures)
    totals = {name: sum(row[name] for row in run.counts) for name in ("RBC", "WBC", "platelet")}
    labelled = run.labelled
    if labelled is not None and labelled.unplaced:
        out.warn(f"{len(labelled.unplaced)} labelled smear(s) left out of labelled_crops.csv, e.g. "
                 f"{next(iter(labelled.unplaced))}: {next(iter(labelled.unplaced.values()))}")  # fmt: skip
    if json_output:
        print(to_json({"out_dir": str(out_dir), "method": method, "n_images": len(run.counts), "n_objects": run.n_objects,
                       "n_resumed": run.n_resumed, "counts": totals,
                       "n_labelled_crops": labelled.n_labelled if labelled else None,
                       "unplaced_labels": [{"image": i, "reason": r} for i, r in labelled.unplaced.items()] if labelled else None,
                       "metrics": run.metrics, "params": params.to_dict(),
                       "skipped": [{"path": p, "reason": r} for p, r in run.failures]}))  # fmt: skip
        return
    resumed = f" ({run.n_resumed} finished earlier, reused)" if run.n_resumed else ""
    out.log(f"segmented {len(run.counts)} image(s) into {run.n_objects} objects{resumed}; wrote {out_dir}")
    out.print(", ".join(f"{name}: {count}" for name, count in totals.items()))
    if run.metrics is not None:
        _print_segment_metrics(run.metrics)


def _print_segment_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table("metric", "value", title="Segmentation vs ground truth")
    for key, value in metrics.items():
        table.add_row(key, "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
    output().print(table)
