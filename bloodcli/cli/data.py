"""Commands about data: ``info``, ``features``, ``extract`` and ``cache``."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from bloodcli.cli.app import app, build_lab_tables_ahead, cache_app, handle_errors, lazy_module
from bloodcli.cli.options import (
    DEFAULTS,
    CacheDirOpt,
    FeatureOptionOpt,
    FeaturesOpt,
    JsonOpt,
    WeightsOpt,
    execution_options,
    preprocessing_options,
)  # fmt: skip
from bloodcli.cli.output import output, report_table, to_json
from bloodcli.errors import UsageError
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.pipeline.options import ExecutionOptions

api = lazy_module("bloodcli.api")

FEATURE_FORMATS = (".npz", ".csv", ".parquet")


@app.command()
@handle_errors
def info(
    target: Annotated[str, typer.Argument(help="A dataset (folder, CSV, VOC) or a model file.")],
    json_output: JsonOpt = False,
) -> None:
    """Describe a dataset (classes, counts, sizes, unreadable files) or a model file."""
    from bloodcli import describe  # not through api: describing a model loads no estimator or image code

    data = describe.info(target)
    if json_output:
        print(to_json(data))
    elif "layout" in data:
        _print_dataset_info(data)
    else:
        output().stdout.print_json(to_json(data))


def _print_dataset_info(data: dict) -> None:
    from rich.table import Table

    out = output()
    groups = f", {data['n_groups']} groups" if data.get("n_groups") else ""
    out.print(f"{data['source']}: {data['layout']} dataset, {data['n_samples']} samples from {data['n_images']} images{groups}")
    table = Table("class", "samples")
    for name, count in data["classes"].items():
        table.add_row(name, str(count))
    out.print(table)
    out.print("image sizes: " + size_summary(data["image_sizes"]))
    if data["unreadable"]:  # part of the description: on stdout
        out.print(f"{len(data['unreadable'])} unreadable:")
        for item in data["unreadable"]:
            out.print(f"  {item['path']}: {item['reason']}")


def size_summary(sizes: dict[str, int], shown: int = 5) -> str:
    """The most common image sizes with their counts; the rest as a count and a range (``--json`` has them all)."""
    listed = ", ".join(f"{size} ({count})" for size, count in list(sizes.items())[:shown])
    rest = list(sizes)[shown:]
    if not rest:
        return listed
    areas = sorted(rest, key=lambda size: math.prod(map(int, size.split("x"))))
    return f"{listed} and {len(rest)} other sizes ({sum(sizes[s] for s in rest)} images) from {areas[0]} to {areas[-1]}"


@app.command("features")
def list_features() -> None:
    """List the feature extractors and their parameters."""
    from rich.table import Table

    from bloodcli.features import EXTRACTORS

    table = Table("name", "description", "parameters (defaults)")
    for name, cls in EXTRACTORS.items():
        params = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in cls.tunable_defaults().items())
        table.add_row(name, cls.description, params)
    output().print(table)


@app.command()
@handle_errors
@preprocessing_options
@execution_options
def extract(
    dataset: Annotated[str, typer.Argument(help="Class-folder tree, CSV manifest or VOC folder.")],
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Features file: .npz (read back by train, evaluate, compare), .csv or .parquet.")],
    features: FeaturesOpt = DEFAULTS["features"],
    feature_option: FeatureOptionOpt = None,
    weights: WeightsOpt = None,
    masks_out: Annotated[Optional[Path], typer.Option("--masks-out", help="Also draw the cell (green) and nucleus (blue) "
                         "masks classical features are measured on, one image per sample, into this folder.")] = None,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: ExecutionOptions = ExecutionOptions(),
) -> None:
    """Compute features of a dataset and save them (cached per image)."""
    if output_path.suffix.lower() not in FEATURE_FORMATS:
        raise UsageError(f"--output {output_path}: the features file must end in {', '.join(FEATURE_FORMATS)}")
    build_lab_tables_ahead()
    plan = api.Plan.build(features, feature_option, weights=weights, preprocessing=preprocessing)
    out = output()
    with out.progress("extracting") as progress:
        table = api.featurize(dataset, plan, replace(run, progress=progress))
    table.save(output_path)
    report_table(table)
    if masks_out is not None:
        out.log(f"wrote {api.write_mask_overlays(table, masks_out)} mask overlays to {masks_out}")
    if json_output:
        print(to_json({
            "output": str(output_path), "n_samples": len(table), "n_features": int(table.values.shape[1]),
            "n_computed": table.n_computed, "n_cached": table.n_cached,
            "skipped": [{"path": p, "reason": r} for p, r in table.failures],
        }))  # fmt: skip
    else:
        out.log(f"wrote {output_path}")


@cache_app.command("clean")
@handle_errors
def cache_clean(
    cache_dir: CacheDirOpt = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", help="Only these extractors' entries (comma-separated).")] = None,
) -> None:
    """Delete cached features."""
    from bloodcli.features import parse_feature_names

    names = parse_feature_names(extractor) if extractor is not None else [None]  # an unknown name is refused, not ignored
    cache = ExecutionOptions(cache_dir).cache()
    removed = sum(cache.clean(name) for name in names)
    output().log(f"removed {removed} cached entries from {cache.root}")


@cache_app.command("info")
@handle_errors
def cache_info(cache_dir: CacheDirOpt = None, json_output: JsonOpt = False) -> None:
    """Show cache location, entries and size per extractor setting."""
    cache = ExecutionOptions(cache_dir).cache()
    stats = cache.stats()
    if json_output:
        print(to_json({"cache_dir": str(cache.root), "namespaces": stats}))
        return
    out = output()
    out.print(f"cache: {cache.root}")
    for namespace, values in stats.items():
        out.print(f"  {namespace}: {values['entries']} entries, {values['bytes'] / 1e6:.1f} MB")
