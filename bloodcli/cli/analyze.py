"""The ``analyze`` command: smear images to counts, a white-cell differential and a review report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bloodcli.cli.app import app, build_lab_tables_ahead, handle_errors, lazy_module
from bloodcli.cli.options import JobsOpt, JsonOpt, SchedulerOpt, SkipErrorsOpt, WeightsOpt
from bloodcli.cli.output import output, to_json
from bloodcli.pipeline.options import ExecutionOptions

api = lazy_module("bloodcli.api")


@app.command()
@handle_errors
def analyze(
    smears: Annotated[list[str], typer.Argument(help="Smear images, folders or globs.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="White-cell model file from 'bloodcli train'.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for smears.csv/.json, cells.csv, report.html, crops and segmentation.")] = Path("analysis"),
    min_confidence: Annotated[float, typer.Option("--min-confidence", help="White cells whose top class probability is below this are flagged for review.")] = 0.5,
    method: Annotated[str, typer.Option("--method", help="Red-cell separation: hsv or watershed (as in 'segment').")] = "watershed",
    param: Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Segmentation setting NAME=VALUE (as in 'segment').")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the HTML review report.")] = True,
    weights: WeightsOpt = None,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    skip_errors: SkipErrorsOpt = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Feature cache folder (default: $BLOODCLI_CACHE_DIR or ~/.cache/bloodcli).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Segment smears, classify every white cell with a model, and count: red cells, platelets, white cells, differential."""
    from bloodcli.analysis.outputs import summary_line, to_dict
    from bloodcli.segmentation.smear import SegmentationParams

    params = SegmentationParams.from_strings(param)
    build_lab_tables_ahead()
    trained = api.load_model(model)
    out = output()
    with out.progress("segmenting") as progress:
        options = ExecutionOptions(cache_dir=cache_dir, jobs=jobs, scheduler=scheduler, skip_errors=skip_errors, progress=progress)
        analysis = api.analyze(smears, trained, out_dir, method, params, min_confidence=min_confidence, report=report,
                               weights=weights, options=options)  # fmt: skip
    out.skipped(analysis.failures)
    if analysis.warning:
        out.warn(analysis.warning, loud=True)
    data = to_dict(analysis)
    if json_output:
        print(to_json({"out_dir": str(out_dir), "n_resumed": analysis.n_resumed, **data}))
        return
    resumed = f" ({analysis.n_resumed} segmented earlier, reused)" if analysis.n_resumed else ""
    out.log(f"analysed {len(analysis.smears)} smear(s){resumed}; white cells cropped as {analysis.framing.describe()}; wrote {out_dir}")
    for summary in data["smears"]:
        out.print(summary_line(summary, analysis.classes))
    out.print(summary_line(data["batch"], analysis.classes))
