"""Commands that fit and score: ``train``, ``predict``, ``evaluate`` and ``compare``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from bloodcli.cli.app import app, handle_errors, lazy_module
from bloodcli.cli.options import (
    DEFAULTS,
    AugmentOpt,
    FeatureOptionOpt,
    FeaturesOpt,
    JsonOpt,
    LabelMapOpt,
    ModelOpt,
    OutDirOpt,
    OutputFileOpt,
    SeedOpt,
    WeightsOpt,
    augmentation,
    cnn_settings,
    execution_options,
    network_options,
    preprocessing_options,
)  # fmt: skip
from bloodcli.cli.output import output, report_table, to_json
from bloodcli.errors import UsageError
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.learn.classifiers import CLASSIFIERS, DEFAULT_COMPARE_MODELS
from bloodcli.pipeline.options import ExecutionOptions

api = lazy_module("bloodcli.api")

FoldsOpt = Annotated[Optional[int], typer.Option("--folds", help="Report K-fold cross-validated metrics first.")]


@app.command()
@handle_errors
@preprocessing_options
@execution_options
@network_options
def train(
    dataset: Annotated[str, typer.Argument(help="Dataset (folder, CSV, VOC) or a features .npz file.")],
    output_path: OutputFileOpt = None,
    model: ModelOpt = DEFAULTS["model"],
    features: FeaturesOpt = DEFAULTS["features"],
    feature_option: FeatureOptionOpt = None,
    weights: WeightsOpt = None,
    folds: FoldsOpt = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Report metrics on a held-out fraction first.")] = None,
    augment: AugmentOpt = None,
    seed: SeedOpt = 0,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: ExecutionOptions = ExecutionOptions(),
    network: dict = {},  # noqa: B006 - replaced by network_options
) -> None:
    """Train a classifier (or, with -m cnn, fine-tune a network); with --folds or --test-size, print held-out metrics first."""
    api.check_training(model, folds, test_size)
    settings = cnn_settings(model, network, weights=weights, augment=augment, batch_size=run.batch_size, seed=seed,
                            feature_option=feature_option)  # fmt: skip
    if settings is not None:
        return _train_cnn(dataset, settings, output_path, folds, test_size, json_output, preprocessing, run)
    plan = api.Plan.build(features, feature_option, weights=weights, preprocessing=preprocessing, augmentation=augmentation(augment),
                      classifier=model, seed=seed)  # fmt: skip
    out = output()
    data = api.training_data(dataset, plan.classifier, folds=folds, test_size=test_size, options=run)
    with out.progress("extracting") as progress:
        table = api.featurize(data, plan, replace(run, progress=progress))
    report_table(table)
    out.log(f"training {plan.classifier} on {len(table)} samples ({len(set(table.labels))} classes)")
    trained, _ = api.train(table, plan.classifier, cv=folds, test_size=test_size, seed=seed, options=run)
    _report_training(trained, output_path, json_output, table.failures)


def _train_cnn(dataset, settings, output_path, folds, test_size, json_output, preprocessing, run) -> None:
    out = output()
    out.log(f"fine-tuning {settings.describe()} on {dataset}")
    with out.progress("reading images") as progress:
        trained, _, data = api.train_cnn(dataset, settings, preprocessing, cv=folds, test_size=test_size,
                                         options=replace(run, progress=progress), on_epoch=_epoch_lines())  # fmt: skip
    out.skipped(data.failures)
    _report_training(trained, output_path, json_output, data.failures)


def _epoch_lines():
    """A line per epoch (loss, validation accuracy) on a terminal; nothing in a pipeline."""
    out = output()
    return out.log if sys.stderr.isatty() and not out.quiet else None


def _report_training(trained, output_path, json_output: bool, failures) -> None:
    out = output()
    if output_path is not None:
        trained.save(output_path)
        out.log(f"wrote {output_path}")
    metrics = trained.metrics
    if json_output:
        print(to_json({"model": str(output_path) if output_path else None, "metrics": metrics, "skipped": failures}))
    elif metrics is not None:
        _print_metrics(metrics, f"{trained.name} — {metrics['protocol']}")
    elif output_path is None:
        out.log("nothing to report: pass --folds K or --test-size F for held-out metrics, or -o to save the model")


@app.command()
@handle_errors
@execution_options
def predict(
    model: Annotated[Path, typer.Argument(help="Model file from 'bloodcli train'.")],
    inputs: Annotated[list[str], typer.Argument(help="Images, folders, globs, a CSV manifest or a VOC folder.")],
    output_path: Annotated[Optional[Path], typer.Option("--output", "-o", help="Predictions CSV (default: stdout).")] = None,
    weights: WeightsOpt = None,
    run: ExecutionOptions = ExecutionOptions(),
) -> None:
    """Predict classes: CSV with path,label,prob_<class>... ."""
    from bloodcli.io.files import atomic_write
    from bloodcli.report.tables import predictions_csv

    trained = api.load_model(model)
    out = output()
    with out.progress("predicting") as progress:
        result = api.predict(trained, inputs, replace(run, progress=progress), weights=weights)
    text = predictions_csv(result.paths, result.labels, result.probabilities, result.classes)
    out.skipped(result.failures)
    for warning in (result.warning, result.novelty):
        if warning:
            out.warn(warning, loud=True)
    if output_path is None:
        sys.stdout.write(text)
    else:
        with atomic_write(output_path, "w") as handle:
            handle.write(text)
        out.log(f"wrote {len(result.paths)} predictions to {output_path}")


@app.command()
@handle_errors
@preprocessing_options
@execution_options
@network_options
def evaluate(
    source: Annotated[str, typer.Argument(metavar="MODEL|TRAIN_DATASET", help="Model file from 'bloodcli train'; with --test, a training dataset.")],
    dataset: Annotated[Optional[str], typer.Argument(metavar="DATASET", show_default=False, help="Labelled dataset (folder, CSV, VOC) or features .npz file to score MODEL on.")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Train on TRAIN_DATASET, then score on this labelled dataset.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=f"With --test: classifier (default: {DEFAULTS['model']}).")] = None,
    features: Annotated[Optional[str], typer.Option("--features", "-f", help=f"With --test: extractors (default: {DEFAULTS['features']}).")] = None,
    feature_option: FeatureOptionOpt = None,
    weights: WeightsOpt = None,
    augment: AugmentOpt = None,
    seed: SeedOpt = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write metrics.json, confusion_matrix.csv/.png, report.html here.")] = None,
    label_map: LabelMapOpt = None,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: ExecutionOptions = ExecutionOptions(),
    network: dict = {},  # noqa: B006 - replaced by network_options
) -> None:
    """Score a model on a labelled dataset.

    evaluate MODEL DATASET: score a saved model.

    evaluate TRAIN_DATASET --test DATASET: train on TRAIN_DATASET (-m, -f, -F, preprocessing options, --augment, --seed),
    then score on DATASET, whose features are computed as the training set's.
    """
    from bloodcli.learn.labels import parse_label_map

    training = {"--model": model, "--features": features, "--feature-option": feature_option, "--augment": augment,
                "preprocessing options": preprocessing != Preprocessing(), "--backbone/--epochs/--image-size": network}  # fmt: skip
    _check_evaluate_form(dataset, test, [name for name, value in training.items() if value])
    labels = parse_label_map(label_map)
    out = output()
    with out.progress("extracting") as progress:
        options = replace(run, progress=progress)
        if test is None:
            metrics, title, model_info = _evaluate_saved(Path(source), dataset, options, labels, weights)
        elif (settings := cnn_settings(model or DEFAULTS["model"], network, weights=weights, augment=augment,
                                       batch_size=run.batch_size, seed=seed, feature_option=feature_option)) is not None:  # fmt: skip
            outcome = api.train_and_test_cnn(source, test, settings, preprocessing, options, label_map=labels, on_epoch=_epoch_lines())
            out.skipped(outcome.train.failures + outcome.test.failures)
        else:
            plan = api.Plan.build(features or DEFAULTS["features"], feature_option, weights=weights, preprocessing=preprocessing,
                              augmentation=augmentation(augment), classifier=model or DEFAULTS["model"], seed=seed)  # fmt: skip
            outcome = api.train_and_test(source, test, plan, options, label_map=labels)
            report_table(outcome.train)
            report_table(outcome.test)
        if test is not None:
            metrics, title = outcome.metrics, f"{outcome.model.name} trained on {source}, scored on {test}"
            model_info = api.model_info(None, outcome.model)
    _report_evaluation(metrics, title, out_dir, json_output, model_info)


def _check_evaluate_form(dataset: str | None, test: str | None, training_options: list[str]) -> None:
    if test is not None and dataset is not None:
        raise UsageError("with --test, give only the training dataset: evaluate TRAIN_DATASET --test DATASET")
    if test is None and dataset is None:
        raise UsageError("missing DATASET: evaluate MODEL DATASET, or evaluate TRAIN_DATASET --test DATASET")
    if test is None and training_options:
        raise UsageError(f"{', '.join(training_options)} only apply with --test (a saved model keeps its own settings)")


def _evaluate_saved(model: Path, dataset: str, options: ExecutionOptions, label_map: dict, weights) -> tuple[dict, str, dict]:
    trained = api.load_model(model)
    if api.is_cnn(trained):
        api.check_no_weights(weights)
        metrics, data = api.evaluate_cnn(trained, dataset, options, label_map)
        output().skipped(data.failures)
    else:
        table = api.featurize_for_model(trained, dataset, options, weights=weights)
        report_table(table)
        metrics = api.evaluate(trained, table, label_map)
    return metrics, f"{model.name} on {dataset}", api.model_info(model, trained)


def _report_evaluation(metrics: dict, title: str, out_dir: Path | None, json_output: bool, model_info: dict) -> None:
    """Warnings on stderr, then the outputs of 'evaluate'."""
    from bloodcli.report.outputs import write_evaluation_outputs

    out = output()
    seen = metrics["n_seen_in_training"]
    if seen:
        out.warn(f"{seen} of the samples were used to train this model: these metrics are not held-out estimates", loud=True)
    for warning in (metrics.get("input_warning"), metrics.get("novelty_warning")):
        if warning:
            out.warn(warning, loud=True)
    if metrics["n_unknown_class"]:
        out.warn(f"{metrics['n_unknown_class']} sample(s) left out of the metrics: their labels are no class of the model "
                 f"({', '.join(metrics['classes_unknown_to_model'])}); see --label-map")  # fmt: skip
    if out_dir is not None:
        for path in write_evaluation_outputs(out_dir, metrics, f"bloodcli evaluate: {title}", model_info):
            out.log(f"wrote {path}")
    if json_output:
        print(to_json(metrics))
    else:
        _print_metrics(metrics, "Evaluation" + (" (includes TRAINING samples)" if seen else " (held-out)"))


def _print_metrics(metrics: dict, title: str) -> None:
    from bloodcli.report.tables import print_metrics

    print_metrics(metrics, output().stdout, title)


@app.command()
@handle_errors
@preprocessing_options
@execution_options
@network_options
def compare(
    dataset: Annotated[str, typer.Argument(help="Dataset (folder, CSV, VOC) or a features .npz file.")],
    more_sets: Annotated[Optional[list[str]], typer.Argument(help="More feature sets (so '--features A B C' works unquoted).", show_default=False)] = None,
    features: Annotated[
        Optional[list[str]],
        typer.Option("--features", "-f", help="Feature set, extractors joined by '+', e.g. glcm+shape+color (repeatable; "
                     f"space-separated sets in one value also work). (default: {DEFAULTS['features'].replace(',', '+')})"),
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=f"Classifiers, comma-separated, of {', '.join(CLASSIFIERS)}.")] = DEFAULT_COMPARE_MODELS,
    folds: Annotated[int, typer.Option("--folds", help="Folds per cross-validation round.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", help="Cross-validation rounds (round r uses seed + r).")] = 3,
    metric: Annotated[str, typer.Option("--metric", help="Metric that picks the best and is tested (balanced_accuracy, accuracy, f1_macro, ...).")] = "balanced_accuracy",
    tune: Annotated[bool, typer.Option("--tune", help="Tune hyper-parameters by inner CV on each training part (nested CV; slower).")] = False,
    test: Annotated[Optional[str], typer.Option("--test", help="Labelled test set: fit every configuration on all of DATASET and score it once here (no CV).")] = None,
    cnn: Annotated[Optional[str], typer.Option("--cnn", help="Also fine-tune these backbones (comma-separated, e.g. mobilenetv2) "
                   "on the same folds, each network's embedding also fused with every classical set (--epochs, --image-size; "
                   "a network per fold and repeat: consider --repeats 1).")] = None,
    label_map: LabelMapOpt = None,
    augment: AugmentOpt = None,
    out_dir: OutDirOpt = None,
    seed: SeedOpt = 0,
    feature_option: FeatureOptionOpt = None,
    weights: WeightsOpt = None,
    json_output: JsonOpt = False,
    preprocessing: Preprocessing = Preprocessing(),
    run: ExecutionOptions = ExecutionOptions(),
    network: dict = {},  # noqa: B006 - replaced by network_options
) -> None:
    """Compare feature sets (classical, deep, fused) and fine-tuned CNNs (--cnn) across classifiers on the same repeated CV folds.

    With --test, every configuration is instead fitted on all of DATASET and scored once on the test set.
    Writes results.csv, results.json and report.html with --out-dir.
    """
    from bloodcli.learn.labels import parse_label_map
    from bloodcli.report.outputs import write_comparison_outputs
    from bloodcli.report.tables import comparison_table

    sets = [spec for value in [*(features or []), *(more_sets or [])] for spec in value.split()] or [DEFAULTS["features"].replace(",", "+")]
    networks = _networks(cnn, network, weights=weights, augment=augment, batch_size=run.batch_size, seed=seed)
    out = output()
    with out.progress("extracting") as progress:
        plan_text = f"fitted on {dataset}, scored on {test}" if test else f"{repeats}x{folds}-fold CV"
        out.log(f"comparing {len(sets)} feature set(s) x {len(model.split(','))} model(s), {plan_text}")
        result = api.compare(
            dataset, sets, model, folds=folds, repeats=repeats, seed=seed, tune=tune, metric=metric, preprocessing=preprocessing,
            feature_options=feature_option, weights=weights, augmentation=augmentation(augment), test=test,
            label_map=parse_label_map(label_map), options=replace(run, progress=progress), networks=networks,
            on_epoch=_epoch_lines(),
        )  # fmt: skip
    out.skipped(result.failures)
    _report_comparison_inputs(result)
    data = result.to_dict()
    if out_dir is not None:
        for path in write_comparison_outputs(out_dir, result):
            out.log(f"wrote {path}")
    if json_output:
        print(to_json(data))
    else:
        out.print(comparison_table(data))
        out.print(data["sentence"])


def _networks(cnn: str | None, network: dict, **settings) -> list:
    """The CNN settings of ``compare --cnn A,B`` (none without it); --epochs and --image-size apply to each."""
    if "backbone" in network:
        raise UsageError("compare names its networks with --cnn BACKBONE[,BACKBONE...], not --backbone")
    if cnn is None:
        if network:
            raise UsageError("--epochs and --image-size apply to the networks of --cnn")
        return []
    names = [name.strip().lower() for name in cnn.split(",") if name.strip()]
    return [cnn_settings("cnn", {**network, "backbone": name}, feature_option=None, **settings) for name in names]


def _report_comparison_inputs(result) -> None:
    """Augmented rows added, and test samples left out of the metrics or also in the training set."""
    out = output()
    if result.augmented is not None:
        out.log(f"added {len(result.augmented)} augmented training rows: {result.augmented.augmentation.describe()}")
    test = result.test
    if test is not None and test.excluded:
        labels = ", ".join(f"{label} ({count})" for label, count in test.excluded.items())
        out.warn(f"{sum(test.excluded.values())} test sample(s) left out of the metrics, their labels being no training class: {labels}")
    if test is not None and test.n_seen_in_training:
        out.warn(f"{test.n_seen_in_training} test image(s) are also in the training set", loud=True)
