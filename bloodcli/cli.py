"""Command-line interface: parses options, calls :mod:`bloodcli.api`, prints results.

Results go to stdout (tables on a terminal, one JSON object with ``--json``, CSV for
``predict``); logs, warnings and progress bars go to stderr. Exit codes are listed in
:mod:`bloodcli.errors`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bloodcli import __version__, api
from bloodcli.augmentation import Augmentation
from bloodcli.distributed import compute_backend
from bloodcli.errors import BloodcliError, UsageError
from bloodcli.features import DEFAULT_FEATURES
from bloodcli.features.extraction import resolve_jobs
from bloodcli.preprocessing import Preprocessing

app = typer.Typer(
    name="bloodcli",
    help="Classify blood cells in microscope images: features, classifiers and honest metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect or clean the feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
_state = {"debug": False, "quiet": False}


def log(message: str) -> None:
    """A progress or status line on stderr (silenced by --quiet)."""
    if not _state["quiet"]:
        stderr.print(message, highlight=False)


def handle_errors(command):
    """Turn library errors into one line on stderr and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BloodcliError as exc:
            if _state["debug"]:
                traceback.print_exc()
            stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            if _state["debug"]:
                traceback.print_exc()
            stderr.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (run with --debug for details)")
            raise typer.Exit(1) from None

    return wrapper


class _LogHandler(logging.Handler):
    """Library log records (e.g. the device a CNN runs on) as status lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        log(record.getMessage())


def _route_library_logs() -> None:
    logger = logging.getLogger("bloodcli")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, _LogHandler) for h in logger.handlers):
        logger.addHandler(_LogHandler())


def _version(value: bool) -> None:
    if value:
        print(f"bloodcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors; no logs.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    _state.update(debug=debug, quiet=quiet)
    _route_library_logs()


# Options shared by the commands that compute features.
FeaturesOpt = Annotated[str, typer.Option("--features", "-f", help="Extractors, comma-separated (see 'bloodcli features').")]
FeatureOptionOpt = Annotated[
    Optional[list[str]],
    typer.Option("--feature-option", "-F", help="Extractor parameter EXTRACTOR.PARAM=VALUE, e.g. glcm.levels=16 (repeatable)."),
]
ResizeOpt = Annotated[Optional[int], typer.Option("--resize", help="Resize so the longer side has N pixels.")]
GaussianOpt = Annotated[float, typer.Option("--gaussian", help="Gaussian blur sigma in pixels (0 = off).")]
MedianOpt = Annotated[int, typer.Option("--median", help="Median blur aperture, odd (0 = off).")]
ClaheOpt = Annotated[float, typer.Option("--clahe", help="CLAHE clip limit on lightness (0 = off).")]
GrayOpt = Annotated[bool, typer.Option("--grayscale", help="Convert to grey before extracting features.")]
StainOpt = Annotated[
    Optional[str],
    typer.Option("--stain", help="Stain normalisation: reinhard or macenko (reference fitted on the training images)."),
]
CellDiameterOpt = Annotated[
    Optional[str],
    typer.Option("--cell-diameter", help="Rescale each cell to this diameter in pixels, or 'auto' (training median)."),
]
CellFrameOpt = Annotated[
    Optional[float],
    typer.Option("--cell-frame", help="Crop a square of N cell diameters around the central cell first (e.g. 1.5): "
                 "tight and loose crops from different labs then frame the cell alike."),
]  # fmt: skip
CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Feature cache folder [default: $BLOODCLI_CACHE_DIR or ~/.cache/bloodcli].")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")]
JobsOpt = Annotated[Optional[int], typer.Option("--jobs", "-j", help="Worker processes [default: all cores].")]
SkipErrorsOpt = Annotated[bool, typer.Option("--skip-errors", help="Skip unreadable images and list them instead of stopping.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per CNN batch.")]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Deep extractors' weights: imagenet, none (random) or a local no-top PATH.h5 (offline)."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="Where deep extractors run: cpu, gpu or auto.")]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Run on Dask: scheduler address (tcp://host:8786) or 'local' [default: $DASK_SCHEDULER_ADDRESS]."),
]
AugmentOpt = Annotated[
    Optional[str],
    typer.Option("--augment", help="Also fit on augmented copies of the training images, KEY=VALUE,... of "
                 f"{', '.join(f'{k}={v}' for k, v in Augmentation().to_dict().items())} (copies: per image; hed, "
                 "brightness, contrast, scale: jitter strengths; blur: max sigma px). Scored samples are never augmented."),
]  # fmt: skip
LabelMapOpt = Annotated[
    Optional[str], typer.Option("--label-map", help="Rename dataset labels to training classes: A=a,B=b (case is ignored anyway).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for splits and models.")]


@contextmanager
def _progress(description: str):
    """A progress callback drawing a bar on stderr, only when stderr is a terminal."""
    if _state["quiet"] or not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def advance(step: int, total: int) -> None:
            bar.update(task, advance=step, total=total)

        yield advance


def option_group(target: str, build, **options):
    """Add shared options to a command and pass them to it as one object.

    ``options`` maps parameter names to ``(Annotated type, default)``; the command receives
    ``build(**values)`` as its ``target`` parameter instead. One definition serves every command.
    """

    def decorator(command):
        signature = inspect.signature(command, eval_str=True)  # real annotations: Typer reads them as given
        kept = [p for p in signature.parameters.values() if p.name != target]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
                 for name, (kind, default) in options.items()]  # fmt: skip

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            kwargs[target] = build(**{name: kwargs.pop(name) for name in options})
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*kept, *added])
        return wrapper

    return decorator


def _preprocessing(cell_frame, stain, cell_diameter, resize, gaussian, median, clahe, grayscale) -> Preprocessing:
    return Preprocessing(cell_frame=cell_frame, stain=stain, cell_diameter=cell_diameter, resize=resize, gaussian_sigma=gaussian,
                         median_size=median, clahe_clip=clahe, grayscale=grayscale)  # fmt: skip


def _run_options(cache_dir, no_cache, jobs, batch_size, weights, device, scheduler, skip_errors) -> api.RunOptions:
    return api.RunOptions(cache_dir=cache_dir, use_cache=not no_cache, jobs=jobs, skip_errors=skip_errors,
                          batch_size=batch_size, weights=weights, device=device, scheduler=scheduler)  # fmt: skip


#: --resize, --gaussian, ... as one Preprocessing argument named ``preprocessing``.
preprocessing_options = option_group(
    "preprocessing", _preprocessing,
    cell_frame=(CellFrameOpt, None), stain=(StainOpt, None), cell_diameter=(CellDiameterOpt, None), resize=(ResizeOpt, None),
    gaussian=(GaussianOpt, 0.0), median=(MedianOpt, 0), clahe=(ClaheOpt, 0.0), grayscale=(GrayOpt, False),
)  # fmt: skip
#: --cache-dir, --jobs, --weights, ... as one api.RunOptions argument named ``run``.
run_options = option_group(
    "run", _run_options,
    cache_dir=(CacheDirOpt, None), no_cache=(NoCacheOpt, False), jobs=(JobsOpt, None), batch_size=(BatchOpt, 32),
    weights=(WeightsOpt, None), device=(DeviceOpt, "auto"), scheduler=(SchedulerOpt, None),
    skip_errors=(SkipErrorsOpt, False),
)  # fmt: skip


def api_json(data) -> str:
    from bloodcli.reports import to_json

    return to_json(data)


def _print_metrics(metrics: dict, title: str) -> None:
    from bloodcli.reports import print_metrics

    print_metrics(metrics, stdout, title)


def _augmentation(spec: str | None) -> Augmentation | None:
    """Parse --augment; warn when it adds nothing."""
    augmentation = None if spec is None else Augmentation.from_string(spec)
    if augmentation is not None and not augmentation.enabled:
        stderr.print("[yellow]warning:[/] --augment adds no copies without copies=N (N >= 1)")
    return augmentation


def _report_table(table) -> None:
    log(f"{len(table)} samples, {table.values.shape[1]} features ({table.n_computed} computed, {table.n_cached} from cache)")
    if table.augmented is not None:
        _report_augmented(table.augmented)
    _report_skipped(table.failures)


def _report_augmented(augmented) -> None:
    log(f"added {len(augmented)} augmented training rows: {augmented.augmentation.describe()}")


def _report_skipped(failures) -> None:
    if failures:
        stderr.print(f"[yellow]skipped {len(failures)} file(s):[/]")
        for path, reason in failures:
            stderr.print(f"  {path}: {reason}", highlight=False)


@app.command()
@handle_errors
@preprocessing_options
@run_options
def extract(
    dataset: Annotated[str, typer.Argument(help="Class-folder tree, CSV manifest or VOC folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Features file: .joblib, .csv or .parquet.")],
    features: FeaturesOpt = "glcm,shape,color",
    feature_option: FeatureOptionOpt = None,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: api.RunOptions = api.RunOptions(),
) -> None:
    """Compute features of a dataset and save them (cached per image)."""
    with _progress("extracting") as progress:
        options = replace(run, progress=progress)
        table = api.featurize(dataset, features, preprocessing, feature_option or None, options)
    table.save(output)
    _report_table(table)
    summary = {
        "output": str(output), "n_samples": len(table), "n_features": int(table.values.shape[1]),
        "n_computed": table.n_computed, "n_cached": table.n_cached,
        "skipped": [{"path": p, "reason": r} for p, r in table.failures],
    }  # fmt: skip
    if json_output:
        print(api_json(summary))
    else:
        log(f"wrote {output}")


@app.command()
@handle_errors
@preprocessing_options
@run_options
def train(
    dataset: Annotated[str, typer.Argument(help="Dataset (folder, CSV, VOC) or a features .joblib file.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Model file to write.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="svm, rf, logreg or xgboost.")] = "svm",
    features: FeaturesOpt = "glcm,shape,color",
    feature_option: FeatureOptionOpt = None,
    cv: Annotated[Optional[int], typer.Option("--cv", help="Report K-fold cross-validated metrics first.")] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Report metrics on a held-out fraction first.")] = None,
    augment: AugmentOpt = None,
    seed: SeedOpt = 0,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: api.RunOptions = api.RunOptions(),
) -> None:
    """Train a classifier; with --cv or --test-size, print held-out metrics."""
    if cv and test_size:
        raise UsageError("use either --cv or --test-size, not both")
    augmentation = _augmentation(augment)
    with _progress("extracting") as progress:
        options = replace(run, progress=progress)
        table = api.featurize(dataset, features, preprocessing, feature_option or None, options, augmentation)
    _report_table(table)
    log(f"training {model} on {len(table)} samples ({len(set(table.labels))} classes)")
    trained, result = api.train(table, model, cv=cv, test_size=test_size, seed=seed, jobs=resolve_jobs(run.jobs), scheduler=run.scheduler)
    if output is not None:
        trained.save(output)
        log(f"wrote {output}")
    metrics = trained.metrics
    if json_output:
        print(api_json({"model": str(output) if output else None, "metrics": metrics, "skipped": table.failures}))
    elif metrics is not None:
        _print_metrics(metrics, f"{model} — {metrics['protocol']}")
    elif output is None:
        log("nothing to report: pass --cv K or --test-size F for held-out metrics, or -o to save the model")


@app.command()
@handle_errors
@run_options
def predict(
    model: Annotated[Path, typer.Argument(help="Model file from 'bloodcli train'.")],
    inputs: Annotated[list[str], typer.Argument(help="Images, folders, globs, a CSV manifest or a VOC folder.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Predictions CSV [default: stdout].")] = None,
    run: api.RunOptions = api.RunOptions(),
) -> None:
    """Predict classes: CSV with path,label,prob_<class>... ."""
    from bloodcli.imaging import atomic_write
    from bloodcli.models import TrainedModel
    from bloodcli.reports import predictions_csv

    trained = TrainedModel.load(model)
    with _progress("predicting") as progress:
        options = replace(run, progress=progress)
        result = api.predict(trained, inputs, options)
    text = predictions_csv(result.paths, result.labels, result.probabilities, result.classes)
    _report_skipped(result.failures)
    if output is None:
        sys.stdout.write(text)
    else:
        with atomic_write(output, "w") as handle:
            handle.write(text)
        log(f"wrote {len(result.paths)} predictions to {output}")


@app.command()
@handle_errors
@preprocessing_options
@run_options
def evaluate(
    source: Annotated[str, typer.Argument(metavar="MODEL|TRAIN_DATASET", help="Model file from 'bloodcli train'; with --test, a training dataset.")],
    dataset: Annotated[Optional[str], typer.Argument(metavar="DATASET", show_default=False, help="Labelled dataset (folder, CSV, VOC) or features .joblib file to score MODEL on.")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Train on TRAIN_DATASET, then score on this labelled dataset.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="With --test: svm (default), rf, logreg or xgboost.")] = None,
    features: Annotated[Optional[str], typer.Option("--features", "-f", help="With --test: extractors, comma-separated (default glcm,shape,color).")] = None,
    feature_option: FeatureOptionOpt = None,
    augment: AugmentOpt = None,
    seed: SeedOpt = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write metrics.json, confusion_matrix.csv/.png, report.html here.")] = None,
    label_map: LabelMapOpt = None,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: api.RunOptions = api.RunOptions(),
) -> None:
    """Score a model on a labelled dataset.

    evaluate MODEL DATASET: score a saved model.

    evaluate TRAIN_DATASET --test DATASET: train on TRAIN_DATASET (-m, -f, -F, preprocessing options, --augment, --seed),
    then score on DATASET, whose features are computed as the training set's.
    """
    training = {"--model": model, "--features": features, "--feature-option": feature_option, "--augment": augment,
                "preprocessing options": preprocessing != Preprocessing()}  # fmt: skip
    _check_evaluate_form(dataset, test, [name for name, value in training.items() if value])
    labels = api.parse_label_map(label_map)
    with _progress("extracting") as progress:
        options = replace(run, progress=progress)
        if test is None:
            metrics, title = _evaluate_saved(Path(source), dataset, options, labels)
        else:
            outcome = api.train_and_test(
                source, test, features or DEFAULT_FEATURES, model or "svm", preprocessing, feature_option or None, options,
                augmentation=_augmentation(augment), label_map=labels, seed=seed, jobs=resolve_jobs(run.jobs),
            )  # fmt: skip
            _report_table(outcome.train)
            _report_table(outcome.test)
            metrics, title = outcome.metrics, f"{outcome.model.name} trained on {source}, scored on {test}"
    _report_evaluation(metrics, title, out_dir, json_output)


def _check_evaluate_form(dataset: str | None, test: str | None, training_options: list[str]) -> None:
    if test is not None and dataset is not None:
        raise UsageError("with --test, give only the training dataset: evaluate TRAIN_DATASET --test DATASET")
    if test is None and dataset is None:
        raise UsageError("missing DATASET: evaluate MODEL DATASET, or evaluate TRAIN_DATASET --test DATASET")
    if test is None and training_options:
        raise UsageError(f"{', '.join(training_options)} only apply with --test (a saved model keeps its own settings)")


def _evaluate_saved(model: Path, dataset: str, options: api.RunOptions, label_map: dict) -> tuple[dict, str]:
    from bloodcli.models import TrainedModel

    trained = TrainedModel.load(model)
    table = api.featurize_for_model(trained, dataset, options)
    _report_table(table)
    return api.evaluate(trained, table, label_map), f"{model.name} on {dataset}"


def _report_evaluation(metrics: dict, title: str, out_dir: Path | None, json_output: bool) -> None:
    """Warnings on stderr, then the outputs of 'evaluate'."""
    from bloodcli.reports import write_evaluation_outputs

    seen = metrics["n_seen_in_training"]
    if seen:
        stderr.print(
            f"[bold yellow]warning:[/] {seen} of {metrics['n_samples']} samples were used to train this model: "
            "these metrics are not held-out estimates"
        )
    if metrics["n_unknown_class"]:
        stderr.print(f"[yellow]warning:[/] {metrics['n_unknown_class']} sample(s) have labels the model does not know "
                     f"({', '.join(metrics['classes_unknown_to_model'])}); they count as errors", highlight=False)  # fmt: skip
    if out_dir is not None:
        from bloodcli.html_report import evaluation_html, write_html

        write_html(out_dir / "report.html", evaluation_html(metrics, f"bloodcli evaluate: {title}"))
        for path in [*write_evaluation_outputs(out_dir, metrics), out_dir / "report.html"]:
            log(f"wrote {path}")
    if json_output:
        print(api_json(metrics))
    else:
        _print_metrics(metrics, "Evaluation" + (" (includes TRAINING samples)" if seen else " (held-out)"))


@app.command()
@handle_errors
@preprocessing_options
@run_options
def compare(
    dataset: Annotated[str, typer.Argument(help="Dataset (folder, CSV, VOC) or a features .joblib file.")],
    more_sets: Annotated[Optional[list[str]], typer.Argument(help="More feature sets (so '--feature-sets A B C' works unquoted).", show_default=False)] = None,
    feature_sets: Annotated[
        Optional[list[str]],
        typer.Option("--feature-sets", "-s", help="Feature set, extractors joined by '+', e.g. glcm+shape+color (repeatable; "
                     "space-separated sets in one value also work).  [default: glcm+shape+color]"),
    ] = None,
    models: Annotated[str, typer.Option("--models", "-m", help="Classifiers, comma-separated.")] = "svm,rf,logreg,xgboost",
    folds: Annotated[int, typer.Option("--folds", help="Folds per cross-validation round.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", help="Cross-validation rounds (round r uses seed + r).")] = 3,
    metric: Annotated[str, typer.Option("--metric", help="Metric that picks the best and is tested (balanced_accuracy, accuracy, f1_macro, ...).")] = "balanced_accuracy",
    tune: Annotated[bool, typer.Option("--tune", help="Tune hyper-parameters by inner CV on each training part (nested CV; slower).")] = False,
    test: Annotated[Optional[str], typer.Option("--test", help="Labelled test set: fit every configuration on all of DATASET and score it once here (no CV).")] = None,
    label_map: LabelMapOpt = None,
    augment: AugmentOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write results.csv, results.json and report.html here.")] = None,
    seed: SeedOpt = 0,
    feature_option: FeatureOptionOpt = None,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: api.RunOptions = api.RunOptions(),
) -> None:
    """Compare feature sets (classical, deep, fused) across classifiers on the same repeated CV folds.

    With --test, every configuration is instead fitted on all of DATASET and scored once on the test set.
    """
    from bloodcli.compare import compare as run_compare
    from bloodcli.reports import comparison_table, write_comparison_outputs

    sets = [spec for value in [*(feature_sets or []), *(more_sets or [])] for spec in value.split()] or ["glcm+shape+color"]
    augmentation, labels = _augmentation(augment), api.parse_label_map(label_map)
    with _progress("extracting") as progress:
        options = replace(run, progress=progress)
        plan = f"fitted on {dataset}, scored on {test}" if test else f"{repeats}x{folds}-fold CV"
        log(f"comparing {len(sets)} feature set(s) x {len(models.split(','))} model(s), {plan}")
        result = run_compare(dataset, sets, models, folds, repeats, seed, options, tune, metric=metric, preprocessing=preprocessing,
                             feature_options=feature_option or None, augmentation=augmentation, test=test, label_map=labels)  # fmt: skip
    _report_skipped(result.failures)
    _report_comparison_inputs(result)
    data = result.to_dict()
    if out_dir is not None:
        for path in write_comparison_outputs(out_dir, result):
            log(f"wrote {path}")
    if json_output:
        print(api_json(data))
    else:
        stdout.print(comparison_table(data))
        stdout.print(data["sentence"], highlight=False)


def _report_comparison_inputs(result) -> None:
    """Augmented rows added, and test samples left out of the metrics or also in the training set."""
    if result.augmented is not None:
        _report_augmented(result.augmented)
    test = result.test
    if test is not None and test.excluded:
        labels = ", ".join(f"{label} ({count})" for label, count in test.excluded.items())
        stderr.print(f"[yellow]warning:[/] {sum(test.excluded.values())} test sample(s) left out of the metrics, "
                     f"their labels being no training class: {labels}", highlight=False)  # fmt: skip
    if test is not None and test.n_seen_in_training:
        stderr.print(f"[bold yellow]warning:[/] {test.n_seen_in_training} test image(s) are also in the training set")


@app.command()
@handle_errors
def info(
    target: Annotated[str, typer.Argument(help="A dataset (folder, CSV, VOC) or a model file.")],
    json_output: JsonOpt = False,
) -> None:
    """Describe a dataset (classes, counts, sizes, unreadable files) or a model file."""
    from bloodcli.models import MODEL_FORMAT, TrainedModel

    if Path(target).is_file() and _is_zip(target):
        trained = TrainedModel.load(target)
        data = {
            "format": MODEL_FORMAT, "model": trained.name, "classes": trained.classes,
            "features": trained.settings.to_dict(), "n_features": len(trained.feature_names),
            "provenance": trained.provenance, "metrics": trained.metrics,
        }  # fmt: skip
    else:
        data = api.dataset_info(target)
    if json_output:
        print(api_json(data))
    else:
        _print_info(data)


def _is_zip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _print_info(data: dict) -> None:
    from rich.table import Table

    if "classes" in data and isinstance(data["classes"], dict):
        stdout.print(f"{data['source']}: {data['layout']} dataset, {data['n_samples']} samples from {data['n_images']} images"
                     + (f", {data['n_groups']} groups" if data.get("n_groups") else ""), highlight=False)  # fmt: skip
        table = Table("class", "samples")
        for name, count in data["classes"].items():
            table.add_row(name, str(count))
        stdout.print(table)
        stdout.print("image sizes: " + ", ".join(f"{k} ({v})" for k, v in data["image_sizes"].items()), highlight=False)
        if data["unreadable"]:
            stdout.print(f"[yellow]{len(data['unreadable'])} unreadable:[/]")
            for item in data["unreadable"]:
                stdout.print(f"  {item['path']}: {item['reason']}", highlight=False)
    else:
        stdout.print_json(api_json(data))


@app.command("features")
def list_features() -> None:
    """List the feature extractors and their parameters."""
    from rich.table import Table

    from bloodcli.features import EXTRACTORS

    table = Table("name", "description", "parameters (defaults)")
    for name, cls in EXTRACTORS.items():
        params = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in cls.defaults.items())
        table.add_row(name, cls.description, params)
    stdout.print(table)


@cache_app.command("clean")
@handle_errors
def cache_clean(
    cache_dir: CacheDirOpt = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", help="Only this extractor's entries.")] = None,
) -> None:
    """Delete cached features."""
    cache = api.RunOptions(cache_dir).cache()
    removed = cache.clean(extractor)
    log(f"removed {removed} cached entries from {cache.root}")


@cache_app.command("info")
@handle_errors
def cache_info(cache_dir: CacheDirOpt = None, json_output: JsonOpt = False) -> None:
    """Show cache location, entries and size per extractor setting."""
    cache = api.RunOptions(cache_dir).cache()
    stats = cache.stats()
    if json_output:
        print(api_json({"cache_dir": str(cache.root), "namespaces": stats}))
        return
    stdout.print(f"cache: {cache.root}", highlight=False)
    for namespace, values in stats.items():
        stdout.print(f"  {namespace}: {values['entries']} entries, {values['bytes'] / 1e6:.1f} MB", highlight=False)


# --- segment: whole smear images into cells (issue 3) -----------------------------------------


@app.command()
@handle_errors
def segment(
    inputs: Annotated[list[str], typer.Argument(help="Smear images, folders, globs or a VOC folder.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Folder for label masks, overlays, objects.csv, counts.csv.")],
    method: Annotated[str, typer.Option("--method", "-m", help="hsv (connected components) or watershed (splits touching red cells).")] = "watershed",
    crops: Annotated[bool, typer.Option("--crops", help="Also write each cell to OUT/crops/<class>/ (a dataset for extract/train).")] = False,
    evaluate: Annotated[Optional[Path], typer.Option("--evaluate", help="VOC folder: score detection and counts against its boxes.")] = None,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Folder of white-cell masks (<stem>.png): score Dice/IoU.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Any segmentation threshold NAME=VALUE (repeatable; see bloodcli.segmentation.SegmentationParams).")] = None,
    nucleus_sat: Annotated[Optional[int], typer.Option("--nucleus-sat", help="Min saturation of nuclear stain (0-255).")] = None,
    cytoplasm_sat: Annotated[Optional[int], typer.Option("--cytoplasm-sat", help="Min saturation of white-cell cytoplasm (0-255).")] = None,
    wbc_nucleus_area: Annotated[Optional[int], typer.Option("--wbc-nucleus-area", help="Min nuclear area of a white cell (px); smaller stained blobs are platelets.")] = None,
    platelet_area: Annotated[Optional[int], typer.Option("--platelet-area", help="Min platelet area (px); smaller blobs are debris.")] = None,
    rbc_contrast: Annotated[Optional[int], typer.Option("--rbc-contrast", help="How much darker than background (L*, 0-255) red cells are.")] = None,
    rbc_area: Annotated[Optional[int], typer.Option("--rbc-area", help="Min red-cell area (px).")] = None,
    peak_distance: Annotated[Optional[int], typer.Option("--peak-distance", help="Min distance between watershed seeds (px).")] = None,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    skip_errors: SkipErrorsOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Segment smear images into red cells, white cells and platelets; count and optionally score them."""
    import dataclasses

    from bloodcli.datasets import load_inputs
    from bloodcli.segmentation import SegmentationParams
    from bloodcli.segmentation_eval import segment_files

    named = {"nucleus_sat_min": nucleus_sat, "cytoplasm_sat_min": cytoplasm_sat, "wbc_nucleus_min_area": wbc_nucleus_area,
             "platelet_min_area": platelet_area, "rbc_contrast": rbc_contrast, "rbc_min_area": rbc_area,
             "peak_min_distance": peak_distance}  # fmt: skip
    params = SegmentationParams.from_strings(param)
    params = dataclasses.replace(params, **{k: v for k, v in named.items() if v is not None})
    dataset = load_inputs(inputs, skip_errors=skip_errors)
    paths = list(dict.fromkeys(s.path for s in dataset.samples))  # a VOC folder lists an image once per box
    with _progress("segmenting") as progress:
        with compute_backend(scheduler) as client:
            run = segment_files(paths, out_dir, method, params, crops=crops, voc_dir=evaluate, mask_dir=masks,
                                jobs=resolve_jobs(jobs), skip_errors=skip_errors, progress=progress, executor=client)  # fmt: skip
    failures = list(dataset.problems) + run.failures
    _report_skipped(failures)
    totals = {name: sum(row[name] for row in run.counts) for name in ("RBC", "WBC", "platelet")}
    if json_output:
        print(api_json({"out_dir": str(out_dir), "method": method, "n_images": len(run.counts), "n_objects": run.n_objects,
                        "n_resumed": run.n_resumed, "counts": totals, "metrics": run.metrics, "params": params.to_dict(),
                        "skipped": [{"path": p, "reason": r} for p, r in failures]}))  # fmt: skip
        return
    resumed = f" ({run.n_resumed} finished earlier, reused)" if run.n_resumed else ""
    log(f"segmented {len(run.counts)} image(s) into {run.n_objects} objects{resumed}; wrote {out_dir}")
    stdout.print(", ".join(f"{name}: {count}" for name, count in totals.items()), highlight=False)
    if run.metrics is not None:
        _print_segment_metrics(run.metrics)


def _print_segment_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table("metric", "value", title="Segmentation vs ground truth")
    for key, value in metrics.items():
        table.add_row(key, "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
    stdout.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
