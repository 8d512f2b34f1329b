"""The workflows users call from Python; the command line is a thin layer over them.

Each workflow takes what to compute as a :class:`~bloodcli.pipeline.plan.Plan` (or the values to
build one) and how to run as :class:`~bloodcli.pipeline.options.ExecutionOptions`, checks every
option before any image is read, and returns plain result objects.

Examples
--------
>>> from bloodcli import api
>>> table = api.featurize("sample_data/pbc", "glcm,shape,color")                          # doctest: +SKIP
>>> model, result = api.train(table, "svm", cv=5)                                          # doctest: +SKIP
>>> api.evaluate(model, api.featurize_for_model(model, "other_lab/"))                     # doctest: +SKIP
>>> run = api.train_and_test("pbc/", "other_lab/", Plan.build(augmentation=Augmentation(copies=4)))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bloodcli.describe import dataset_info, info, model_info
from bloodcli.errors import DatasetError, UsageError
from bloodcli.features import extractor_kind, parse_feature_names, parse_feature_sets
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.datasets import Dataset, Sample, load_inputs
from bloodcli.learn.classifiers import DEFAULT_COMPARE_MODELS, classifier_entry, parse_models
from bloodcli.learn.labels import most_likely
from bloodcli.learn.model_checks import CNN_MODEL
from bloodcli.learn.models import AnyModel, check_no_weights, is_cnn, load_model
from bloodcli.pipeline import featurize as features
from bloodcli.pipeline.options import ExecutionOptions
from bloodcli.pipeline.parallel import compute_backend
from bloodcli.pipeline.plan import Plan
from bloodcli.pipeline.table import FeatureTable
from bloodcli.pipeline.union import extract_union

if TYPE_CHECKING:  # model files (and importlib.metadata) load with the workflows that fit or read models
    from bloodcli.learn.compare import ComparisonResult
    from bloodcli.learn.model_file import TrainedModel
    from bloodcli.learn.validation import EvaluationResult

# Fitting and scoring modules (scikit-learn, SciPy) are imported by the workflows that fit or score,
# so the command line starts in a fraction of a second and extraction never loads them.

__all__ = [
    "Augmentation", "ExecutionOptions", "Plan", "Preprocessing", "analyze", "compare", "dataset_info", "evaluate", "featurize",
    "featurize_for_model", "info", "load_model", "model_info", "predict", "segment", "train", "train_and_test",
]  # fmt: skip


def featurize(source, plan: Plan | str = "glcm,shape,color", options: ExecutionOptions | None = None) -> FeatureTable:
    """Features of a dataset (path or :class:`Dataset`) by ``plan`` (or a feature list), or a features file as it is."""
    return features.featurize(source, Plan.build(plan) if isinstance(plan, str) else plan, options)


def featurize_for_model(model: TrainedModel, source, options: ExecutionOptions | None = None, *,
                        labelled: bool = True, weights: str | None = None) -> FeatureTable:  # fmt: skip
    """Features computed exactly as the model's training features were (``weights``: the model's weights file moved)."""
    table = features.featurize_like(model.settings, source, options, labelled=labelled, weights=weights)
    if features.is_features_file(source):  # computed elsewhere: refuse other settings
        model.check_compatible(table)
    return table


def train(table: FeatureTable, model: str = "svm", *, cv: int | None = None, test_size: float | None = None,
          seed: int = 0, options: ExecutionOptions | None = None) -> tuple[TrainedModel, EvaluationResult | None]:  # fmt: skip
    """Fit on all rows; with ``cv`` or ``test_size`` also report held-out metrics first.

    The held-out metrics come from models fitted without the test rows (references fitted on
    images included, when the table can refit); the returned model is fitted on every row and
    stores those metrics as its provenance. Augmented copies join only the training parts of their
    originals, and all of them the final fit. With a Dask scheduler, joblib-parallel work (folds,
    forests) runs on the cluster and classifiers that can train there do.
    """
    from bloodcli.learn.model_file import train_model
    from bloodcli.learn.validation import check_class_sizes, cross_validate, holdout_evaluate

    options = options or ExecutionOptions()
    check_training(model, cv, test_size)
    Dataset(table.samples, "training data", "").require_classes(2)
    check_class_sizes(table.labels, table.groups, [model], cv, test_size)
    result = None
    with compute_backend(options.scheduler) as client:
        if cv:
            result = cross_validate(table, model, cv, seed, options.workers)
        elif test_size:
            result = holdout_evaluate(table, model, test_size, seed)
        trained = train_model(table, model, seed, options.workers, client)
    if result is not None:
        trained.metrics = result.summary()
    return trained, result


def check_training(model: str, cv: int | None = None, test_size: float | None = None) -> None:
    """Refuse unusable training options before any image is read."""
    if model.strip().lower() != CNN_MODEL:  # -m cnn: a fine-tuned network (bloodcli.learn.cnn), not a classifier
        classifier_entry(model)
    if cv and test_size:
        raise UsageError("use either --folds or --test-size, not both")
    if cv is not None and cv < 2:
        raise UsageError(f"cross-validation needs at least 2 folds, got {cv}")
    if test_size is not None and not 0 < test_size < 1:
        raise UsageError(f"--test-size must be between 0 and 1, got {test_size}")


def training_data(source, models: str | Sequence[str] = "svm", *, folds: int | None = None, test_size: float | None = None,
                  options: ExecutionOptions | None = None):  # fmt: skip
    """``source`` ready for :func:`featurize`, its class sizes checked against the folds and classifiers.

    A dataset is loaded (listing only, no image decoded) so that a class too small for ``folds``
    or for a classifier is refused before any feature is computed; a features file is returned as
    it is (:func:`train` checks its rows).
    """
    from bloodcli.learn.validation import check_class_sizes

    if features.is_features_file(source):
        return source
    dataset = features.load_source(source, options or ExecutionOptions())
    dataset.require_classes(2)
    check_class_sizes(dataset.labels, dataset.groups, parse_models(models), folds, test_size)
    return dataset


def train_cnn(source, settings=None, preprocessing: Preprocessing = Preprocessing(), *, cv: int | None = None,
              test_size: float | None = None, options: ExecutionOptions | None = None, on_epoch=None):  # fmt: skip
    """Fine-tune a CNN (:class:`~bloodcli.learn.cnn.settings.CNNSettings`) on a labelled dataset's images.

    Like :func:`train`: with ``cv`` or ``test_size`` held-out metrics come first, from networks fine-tuned on each
    training part only. Returns the model (fitted on every image), the held-out result (or None) and the images.
    """
    from bloodcli.learn.cnn import workflows
    from bloodcli.learn.cnn.settings import CNNSettings

    options, settings = options or ExecutionOptions(), settings or CNNSettings()
    check_training(CNN_MODEL, cv, test_size)
    workflows.check_cnn_inputs(source, preprocessing)
    settings = workflows.prepare(settings, options)
    data, settings = workflows.load_training_images(source, settings, preprocessing, options)
    from bloodcli.learn.validation import check_class_sizes

    check_class_sizes(data.labels, data.groups, [], cv, test_size)
    model, result = workflows.train_cnn(data, settings, preprocessing, cv=cv, test_size=test_size, on_epoch=on_epoch)
    return model, result, data


def evaluate_cnn(model, source, options: ExecutionOptions | None = None, label_map: Mapping[str, str] | None = None) -> tuple[dict, object]:
    """:func:`evaluate` of a fine-tuned CNN on a labelled dataset's images: metrics and the images scored."""
    from bloodcli.learn.cnn.workflows import score_saved

    metrics, data = score_saved(model, source, options or ExecutionOptions(), label_map)
    metrics["input_warning"] = input_warning(model, data.samples)
    return metrics, data


def train_and_test_cnn(train_source, test_source, settings=None, preprocessing: Preprocessing = Preprocessing(),
                       options: ExecutionOptions | None = None, *, label_map: Mapping[str, str] | None = None,
                       on_epoch=None) -> "TrainTestRun":  # fmt: skip
    """:func:`train_and_test` with a CNN fine-tuned on every image of ``train_source`` (nothing of the test set)."""
    from bloodcli.learn.cnn import workflows
    from bloodcli.learn.cnn.settings import CNNSettings

    options = options or ExecutionOptions()
    workflows.check_cnn_inputs(train_source, preprocessing)
    settings = workflows.prepare(settings or CNNSettings(), options)
    model, train, test, metrics = workflows.fit_and_score(train_source, test_source, settings, preprocessing, options,
                                                          label_map, on_epoch)  # fmt: skip
    metrics["input_warning"] = input_warning(model, test.samples)
    return TrainTestRun(model, train, test, metrics)


@dataclass
class Predictions:
    paths: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    classes: list[str]
    failures: list[tuple[str, str]]
    #: One line when the inputs look unlike the model's training images (:func:`input_warning`), else None.
    warning: str | None = None
    #: One line when many inputs are unlike every training class in feature space (:func:`novelty_warning`).
    novelty: str | None = None


def predict(model: AnyModel, inputs: Sequence[str | Path], options: ExecutionOptions | None = None,
            weights: str | None = None) -> Predictions:  # fmt: skip
    """Predict labels and class probabilities of images, folders, globs or a dataset."""
    if is_cnn(model):
        check_no_weights(weights)
        data = model.load_images(load_inputs(list(map(str, inputs)), skip_errors=(options or ExecutionOptions()).skip_errors),
                                 options or ExecutionOptions())  # fmt: skip
        probabilities = model.predict_proba(data.images)
        return Predictions([s.id for s in data.samples], most_likely(probabilities, model.classes), probabilities,
                           model.classes, data.failures, input_warning(model, data.samples))  # fmt: skip
    table = featurize_for_model(model, list(map(str, inputs)), options, labelled=False, weights=weights)
    probabilities = model.predict_proba(table.values)
    return Predictions([s.id for s in table.samples], most_likely(probabilities, model.classes), probabilities,
                       model.classes, table.failures, input_warning(model, table.samples),
                       novelty_warning(model, table.values))  # fmt: skip


def novelty_warning(model: TrainedModel, values: np.ndarray) -> str | None:
    """One line when many rows lie outside the model's training classes in feature space (:mod:`bloodcli.learn.novelty`)."""
    return None if model.envelope is None else model.envelope.warning(values)


def input_warning(model: AnyModel, samples: Sequence[Sample]) -> str | None:
    """One line when ``samples`` look unlike the model's training images (size, cell size, colour), else None.

    Compares a profile of up to :data:`~bloodcli.pipeline.data_profile.PROFILE_IMAGES` inputs with the one the
    model file records; models without a recorded profile give None.
    """
    from bloodcli.pipeline import data_profile

    if model.profile is None:
        return None
    return data_profile.input_warning(model.profile, data_profile.profile_samples(list(samples)))


def evaluate(model: TrainedModel, table: FeatureTable, label_map: Mapping[str, str] | None = None) -> dict:
    """Metrics of ``model`` on a labelled feature table of another dataset.

    Labels are aligned to the model's classes; samples whose label is no model class are left
    out of the metrics and counted (``n_unknown_class``), as in :func:`train_and_test` and
    ``compare --test``. ``n_seen_in_training`` counts samples the model was trained on, so a
    score on training data is never mistaken for a held-out score.
    """
    from bloodcli.learn.validation import ExternalTest

    source = table.samples[0].path.parent if table.samples else "dataset"
    test = ExternalTest.of(source, table, model.classes, model.training_keys, label_map)
    metrics = test.metrics(model.predict_proba(test.values))
    metrics["input_warning"] = input_warning(model, table.samples)
    metrics["novelty_warning"] = novelty_warning(model, table.values)
    return metrics


@dataclass
class TrainTestRun:
    """A model trained on one dataset and scored on another (:func:`train_and_test`)."""

    model: AnyModel
    train: FeatureTable  # an ImageSet for a CNN
    test: FeatureTable
    metrics: dict


def train_and_test(train_source, test_source, plan: Plan | None = None, options: ExecutionOptions | None = None, *,
                   label_map: Mapping[str, str] | None = None) -> TrainTestRun:  # fmt: skip
    """Fit ``plan``'s classifier on every sample of ``train_source`` (and its copies), score on ``test_source``.

    References are fitted on the training images only and the test features are computed with
    them (:func:`featurize_for_model`): nothing of the test set reaches fitting. Test labels are
    aligned to the training classes as in :func:`evaluate`.
    """
    from bloodcli.learn.model_file import TrainedModel
    from bloodcli.learn.splits import TrainingRows
    from bloodcli.learn.validation import ExternalTest, augmentation_note, fit_and_test

    plan, options = plan or Plan.build(), options or ExecutionOptions()
    classifier_entry(plan.classifier)
    table = features.featurize(train_source, plan, options)
    Dataset(table.samples, str(train_source), "").require_classes(2)
    test_table = features.featurize_like(table.settings, test_source, options)
    classes = sorted(set(table.labels))
    test = ExternalTest.of(test_source, test_table, classes, table.content_keys, label_map)
    with compute_backend(options.scheduler) as client:
        estimator, result = fit_and_test(TrainingRows.of(table), test.values, test.labels, plan.classifier,
                                         seed=plan.seed, jobs=options.workers, client=client)  # fmt: skip
    copies = f" + {len(table.augmented)} augmented copies" if table.augmented is not None else ""
    protocol = f"trained on {train_source} ({len(table)} samples{copies}); scored on the test set {test_source}"
    metrics = test.metrics(result.probabilities, protocol + augmentation_note(table))
    trained = TrainedModel.of(table, estimator, plan.classifier, plan.seed)
    metrics["input_warning"] = input_warning(trained, test_table.samples)
    return TrainTestRun(trained, table, test_table, metrics)


def write_mask_overlays(table: FeatureTable, out_dir: str | Path) -> int:
    """Draw the single-cell masks classical features were measured on, one overlay per row of ``table``."""
    from bloodcli.pipeline.mask_overlays import write_mask_overlays as draw

    return draw(table, out_dir)


def compare(
    source, feature_sets: Sequence[str] = ("glcm+shape+color",), models: str | Sequence[str] = DEFAULT_COMPARE_MODELS, *,
    folds: int = 5, repeats: int = 3, seed: int = 0, tune: bool = False, metric: str = "balanced_accuracy",
    preprocessing: Preprocessing = Preprocessing(), feature_options=None, weights: str | None = None,
    augmentation: Augmentation | None = None, test=None, label_map: Mapping[str, str] | None = None,
    options: ExecutionOptions | None = None, networks: Sequence = (), on_epoch=None,
) -> ComparisonResult:  # fmt: skip
    """Score every (feature set, model) pair on the same repeated, stratified, group-aware folds.

    With ``test``, fit every pair on all of ``source`` instead and score it once on ``test``, whose
    features use the training set's fitted references. ``source`` may be a features ``.npz``
    file (no image work at all). See :mod:`bloodcli.learn.compare`. ``networks``: CNN settings to fine-tune on the same
    folds, each also fused with every classical set (:mod:`bloodcli.learn.cnn.comparison`).
    """
    from bloodcli.learn.compare import check_metric, compare_configs
    from bloodcli.learn.validation import ExternalTest

    options = options or ExecutionOptions()
    sets, model_names = parse_feature_sets(feature_sets), parse_models(models)
    check_metric(metric)
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}")
    if test is None and folds < 2:
        raise UsageError(f"cross-validation needs at least 2 folds, got {folds}")
    needed = parse_feature_names([n for s in sets for n in s])
    if networks:  # checked, and their weights files found, before any image work
        from bloodcli.learn.cnn.workflows import check_cnn_inputs, prepare

        if test is not None:
            raise UsageError("compare --cnn scores on cross-validation folds; to score a CNN on another dataset use "
                             "'bloodcli evaluate TRAIN -m cnn --test OTHER'")  # fmt: skip
        check_cnn_inputs(source, preprocessing)
        networks = [prepare(n, options) for n in networks]
        weights = weights if any(extractor_kind(n) == "deep" for n in needed) else None  # --weights was the networks'
    plan = Plan.build(needed, feature_options, weights=weights, preprocessing=preprocessing, augmentation=augmentation, seed=seed)
    data = training_data(source, model_names, folds=None if test is not None else folds, options=options)
    table, spans, timings = extract_union(data, plan, options)
    Dataset(table.samples, str(source), "").require_classes(2)
    held_out = None
    if test is not None:
        test_table = features.featurize_like(table.settings, test, options)
        held_out = ExternalTest.of(test, test_table, sorted(set(table.labels)), table.content_keys, label_map)
    result = compare_configs(table, spans, timings, sets, model_names, folds=folds, repeats=repeats, seed=seed,
                             jobs=options.workers, tune=tune, metric=metric, test=held_out, source=str(source))  # fmt: skip
    if networks:
        from bloodcli.learn.cnn.comparison import add_networks

        add_networks(result, table, spans, sets, model_names, networks, preprocessing, on_epoch)
    return result


def segment(inputs: Sequence[str], out_dir: str | Path, method: str = "watershed", params=None, *, crops: bool = False,
            overlays: bool = False, voc_dir=None, mask_dir=None, labels=None, options: ExecutionOptions | None = None):  # fmt: skip
    """Segment smear images (files, folders, globs or a VOC folder) into cells, writing ``out_dir``.

    With ``crops``, also writes the manifests of :mod:`bloodcli.segmentation.manifest` (``crops.csv``, and with
    ``labels``, an ``image,label`` CSV, ``labelled_crops.csv``) that ``train`` reads with smears as groups.
    Returns the :class:`~bloodcli.segmentation.batch.SegmentRun` and the input files that could not be listed.
    """
    from bloodcli.segmentation.batch import exclude_segment_outputs, segment_files
    from bloodcli.segmentation.manifest import read_labels, write_manifests
    from bloodcli.segmentation.scoring import check_truth_found

    options = options or ExecutionOptions()
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UsageError(f"--out-dir {out_dir}: exists and is not a folder")
    for option, folder in (("--evaluate", voc_dir), ("--masks", mask_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise UsageError(f"{option} {folder}: not a folder")
    if labels is not None and not crops:
        raise UsageError("--labels names crops: use it with --crops")
    named = read_labels(labels) if labels is not None else None
    dataset = load_inputs(inputs, skip_errors=options.skip_errors)
    paths = list(dict.fromkeys(s.path for s in dataset.samples))  # a VOC folder lists an image once per box
    paths = exclude_segment_outputs(paths, [Path(i) for i in inputs if Path(i).is_dir()], Path(out_dir))
    if not paths:
        raise DatasetError(f"no input images outside the output folder {out_dir} and earlier segment outputs")
    check_truth_found(paths, voc_dir, mask_dir)
    # Absolute: worker processes outlive this call and keep the working directory they started in.
    out_dir, voc_dir, mask_dir = (None if p is None else Path(p).absolute() for p in (out_dir, voc_dir, mask_dir))
    with compute_backend(options.scheduler) as client:
        run = segment_files(paths, out_dir, method, params, crops=crops, overlays=overlays, voc_dir=voc_dir, mask_dir=mask_dir,
                            jobs=options.workers, skip_errors=options.skip_errors, progress=options.progress,
                            executor=client)  # fmt: skip
    run.failures = list(dataset.problems) + run.failures
    if crops:
        run.labelled = write_manifests(out_dir, named, voc_dir)
    return run


def analyze(inputs: Sequence[str], model: TrainedModel, out_dir: str | Path, method: str = "watershed", params=None, *,
            min_confidence: float = 0.5, report: bool = True, weights: str | None = None,
            options: ExecutionOptions | None = None):  # fmt: skip
    """Segment smears, classify every white cell with ``model``, write counts and the differential per smear.

    Writes ``smears.csv``, ``smears.json``, ``cells.csv`` and (``report``) ``report.html`` into ``out_dir``, with
    the segmentation in ``out_dir/segmentation/`` and the white-cell crops in ``out_dir/crops/``; resumable
    (see :mod:`bloodcli.analysis.smears`). Returns the :class:`~bloodcli.analysis.smears.Analysis`.
    """
    from bloodcli.analysis.outputs import write_outputs
    from bloodcli.analysis.smears import analyze_smears, check_min_confidence
    from bloodcli.segmentation.smear import check_method

    options = options or ExecutionOptions()
    check_method(method)
    check_min_confidence(min_confidence)
    dataset = load_inputs(inputs, skip_errors=options.skip_errors)
    paths = list(dict.fromkeys(s.path for s in dataset.samples))
    out_dir = Path(out_dir).absolute()  # worker processes keep the working directory they started in
    analysis = analyze_smears(paths, model, out_dir, method, params, min_confidence=min_confidence, options=options,
                              weights=weights)  # fmt: skip
    analysis.failures = list(dataset.problems) + analysis.failures
    write_outputs(analysis, report)
    return analysis
