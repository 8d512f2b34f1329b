"""High-level workflows behind the commands; each is usable directly from Python.

Examples
--------
>>> from bloodcli import api
>>> table = api.featurize("sample_data/pbc", "glcm,shape,color")          # doctest: +SKIP
>>> model, result = api.train(table, "svm", cv=5)                          # doctest: +SKIP
>>> api.evaluate(model, api.featurize_for_model(model, "other_lab/"))     # doctest: +SKIP
>>> run = api.train_and_test("pbc/", "other_lab/", augmentation=Augmentation(copies=4))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from bloodcli.augmentation import Augmentation
from bloodcli.cache import FeatureCache, default_cache_dir
from bloodcli.datasets import Dataset, crop, load_dataset, load_inputs
from bloodcli.distributed import compute_backend
from bloodcli.errors import ImageReadError, UsageError
from bloodcli.evaluation import EvaluationResult, cross_validate, holdout_evaluate
from bloodcli.features import (
    build_extractors, deep, extract_features, extractors_from_settings, parse_feature_names, parse_feature_options,
)  # fmt: skip
from bloodcli.features.extraction import FeatureTable, ProgressCallback
from bloodcli.imaging import decode_image, read_bytes
from bloodcli.metrics import classification_metrics
from bloodcli.models import TrainedModel, most_likely, train_model
from bloodcli.preprocessing import Preprocessing, fit_references

FEATURES_SUFFIX = ".joblib"


@dataclass
class RunOptions:
    """Options shared by every command that computes features."""

    cache_dir: Path | None = None
    use_cache: bool = True
    jobs: int | None = None
    skip_errors: bool = False
    batch_size: int = 32
    progress: ProgressCallback | None = None
    weights: str | None = None  # deep extractors: "imagenet", "none" or a local .h5 file
    device: str = "auto"  # deep extractors: "cpu", "gpu" or "auto"
    scheduler: str | None = None  # Dask scheduler address or "local"; default $DASK_SCHEDULER_ADDRESS

    def extraction_kwargs(self) -> dict:
        return dict(cache=self.cache(), jobs=self.jobs, skip_errors=self.skip_errors, progress=self.progress,
                    batch_size=self.batch_size)  # fmt: skip

    def cache(self) -> FeatureCache:
        return FeatureCache((self.cache_dir or default_cache_dir()) if self.use_cache else None)


def is_features_file(source) -> bool:
    return str(source).lower().endswith(FEATURES_SUFFIX) and Path(source).is_file()


def featurize(
    source: str | Path | Dataset,
    features: str | Sequence[str] = "glcm,shape,color",
    preprocessing: Preprocessing = Preprocessing(),
    feature_options=None,
    options: RunOptions | None = None,
    augmentation: Augmentation | None = None,
) -> FeatureTable:
    """Features of a dataset (path or :class:`Dataset`), or a saved features file as it is.

    With an enabled ``augmentation``, the table also holds the features of each image's augmented
    copies (``FeatureTable.augmented``); stain and scale references are fitted on the originals.
    """
    options = options or RunOptions()
    augmentation = augmentation if augmentation is not None and augmentation.enabled else None
    if not isinstance(source, Dataset) and is_features_file(source):
        if augmentation is not None:
            raise UsageError(f"--augment needs images, but {source} is a features file")
        return FeatureTable.load(source)
    if options.weights is not None:
        feature_options = deep.weights_options(parse_feature_names(features), _options_dict(feature_options), options.weights)
    extractors = build_extractors(features, feature_options)
    deep.use_device(options.device)
    dataset = source if isinstance(source, Dataset) else load_dataset(source, skip_errors=options.skip_errors)
    if preprocessing.needs_fitting:
        preprocessing = fit_preprocessing(dataset, preprocessing)
    return _extract(dataset, extractors, preprocessing, options, augmentation)


def fit_preprocessing(dataset: Dataset, preprocessing: Preprocessing, max_images: int = 100) -> Preprocessing:
    """Fit stain/scale references on up to ``max_images`` evenly spaced images of ``dataset``."""
    step = max(1, len(dataset) // max_images)
    images = (_sample_image(s) for s in dataset.samples[::step])
    return fit_references(preprocessing, [i for i in images if i is not None])


def _sample_image(sample):
    try:
        return crop(decode_image(read_bytes(sample.path), sample.path), sample.box)
    except ImageReadError:
        return None


def _extract(dataset: Dataset, extractors, preprocessing: Preprocessing, options: RunOptions, augmentation=None) -> FeatureTable:
    """Run the extraction facade locally or, with a scheduler, on Dask workers."""
    with compute_backend(options.scheduler) as client:
        return extract_features(dataset, extractors, preprocessing, executor=client, augmentation=augmentation,
                                **options.extraction_kwargs())  # fmt: skip


def _options_dict(feature_options) -> dict:
    if feature_options is None or isinstance(feature_options, Mapping):
        return dict(feature_options or {})
    return parse_feature_options(feature_options)


def featurize_for_model(model: TrainedModel, source, options: RunOptions | None = None, labelled: bool = True) -> FeatureTable:
    """Features computed exactly as the model's training features were."""
    options = options or RunOptions()
    if not isinstance(source, Dataset) and is_features_file(source):
        table = FeatureTable.load(source)
        model.check_compatible(table)
        return table
    if isinstance(source, Dataset):
        dataset = source
    elif labelled:
        dataset = load_dataset(source, skip_errors=options.skip_errors)
    else:
        dataset = load_inputs(source if isinstance(source, (list, tuple)) else [source], skip_errors=options.skip_errors)
    settings = model.settings
    if options.weights is not None:  # the model's weights file lives elsewhere on this machine
        settings = replace(settings, extractors=deep.override_weights(settings.extractors, options.weights))
    extractors = extractors_from_settings(settings)
    deep.use_device(options.device)
    return _extract(dataset, extractors, settings.preprocessing, options)


def train(
    table: FeatureTable, model: str = "svm", *, cv: int | None = None, test_size: float | None = None,
    seed: int = 0, jobs: int = 1, scheduler: str | None = None,
) -> tuple[TrainedModel, EvaluationResult | None]:  # fmt: skip
    """Fit on all rows; with ``cv`` or ``test_size`` also report held-out metrics first.

    The held-out metrics come from models fitted without the test rows; the returned model is
    fitted on every row and stores those metrics as its provenance. Augmented copies in the table
    join only the training parts of their originals, and all of them the final fit. With a Dask
    ``scheduler``, joblib-parallel work (folds, forests) runs on the cluster and XGBoost trains
    with xgboost.dask.
    """
    Dataset(table.samples, "training data", "").require_classes(2)
    result = None
    with compute_backend(scheduler) as client:
        if cv:
            result = cross_validate(table, model, cv, seed, jobs)
        elif test_size:
            result = holdout_evaluate(table, model, test_size, seed)
        trained = train_model(table, model, seed, jobs, client)
    if result is not None:
        trained.metrics = result.summary()
    return trained, result


@dataclass
class Predictions:
    paths: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    classes: list[str]
    failures: list[tuple[str, str]]


def predict(model: TrainedModel, inputs: Sequence[str | Path], options: RunOptions | None = None) -> Predictions:
    """Predict labels and class probabilities of images, folders, globs or a dataset."""
    table = featurize_for_model(model, list(map(str, inputs)), options, labelled=False)
    probabilities = model.predict_proba(table.values)
    labels = most_likely(probabilities, model.classes)
    return Predictions([s.id for s in table.samples], labels, probabilities, model.classes, table.failures)


def align_labels(labels, classes: Sequence[str], label_map: Mapping[str, str] | None = None) -> np.ndarray:
    """Map another dataset's label names onto a model's classes.

    An explicit ``label_map`` (dataset label -> model class) applies first; then labels that
    match a class ignoring case and surrounding space take that class's spelling.
    """
    by_folded_name = {c.strip().casefold(): c for c in classes}
    label_map = dict(label_map or {})

    def align(label: str) -> str:
        label = label_map.get(label, label)
        return by_folded_name.get(str(label).strip().casefold(), label)

    return np.array([align(label) for label in labels], dtype=object)


def parse_label_map(spec: str | None) -> dict[str, str]:
    """Parse ``"NEUTROPHIL=neutrophil,seg=neutrophil"`` into a dictionary."""
    pairs = [item.split("=", 1) for item in (spec or "").split(",") if item.strip()]
    if any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
        raise UsageError(f"bad --label-map {spec!r}: expected DATASET_LABEL=MODEL_CLASS[,...]")
    return {source.strip(): target.strip() for source, target in pairs}


def evaluate(model: TrainedModel, table: FeatureTable, label_map: Mapping[str, str] | None = None) -> dict:
    """Metrics of ``model`` on a labelled feature table.

    Labels are aligned to the model's classes (:func:`align_labels`). The result says how many
    samples the model was trained on (``n_seen_in_training``) so a score on training data is
    never mistaken for a held-out score.
    """
    truth = align_labels(table.labels, model.classes, label_map)
    unknown = sorted(set(truth) - set(model.classes))
    probabilities = model.predict_proba(table.values)
    predicted = most_likely(probabilities, model.classes)
    labels = list(model.classes) + unknown
    padded = np.hstack([probabilities, np.zeros((len(table), len(unknown)))])
    metrics = classification_metrics(truth, predicted, labels, padded)
    seen = set(model.training_keys)
    metrics["n_seen_in_training"] = sum(1 for key in table.content_keys if key in seen)
    metrics["classes_unknown_to_model"] = unknown
    metrics["n_unknown_class"] = int(np.isin(truth, unknown).sum())
    metrics["skipped"] = [{"path": p, "reason": r} for p, r in table.failures]
    return metrics


@dataclass
class TrainTestRun:
    """A model trained on one dataset and scored on another (:func:`train_and_test`)."""

    model: TrainedModel
    train: FeatureTable
    test: FeatureTable
    metrics: dict


def train_and_test(
    train_source, test_source, features: str | Sequence[str] = "glcm,shape,color", model: str = "svm",
    preprocessing: Preprocessing = Preprocessing(), feature_options=None, options: RunOptions | None = None, *,
    augmentation: Augmentation | None = None, label_map: Mapping[str, str] | None = None, seed: int = 0, jobs: int = 1,
) -> TrainTestRun:  # fmt: skip
    """Fit on every sample of ``train_source`` (and its augmented copies), score on ``test_source``.

    Stain and scale references are fitted on the training images only, and the test features are
    computed exactly as the model's (:func:`featurize_for_model`): nothing of the test set reaches
    fitting. Test labels are aligned to the training classes as in :func:`evaluate`.
    """
    options = options or RunOptions()
    table = featurize(train_source, features, preprocessing, feature_options, options, augmentation)
    trained, _ = train(table, model, seed=seed, jobs=jobs, scheduler=options.scheduler)
    test = featurize_for_model(trained, test_source, options)
    metrics = evaluate(trained, test, label_map)
    copies = f" + {len(table.augmented)} augmented copies" if table.augmented is not None else ""
    metrics["protocol"] = f"trained on {train_source} ({len(table)} samples{copies}); scored on the test set {test_source}"
    return TrainTestRun(trained, table, test, metrics)


def dataset_info(source: str | Path, skip_errors: bool = True, check_images: bool = True) -> dict:
    """Classes, counts, image sizes and unreadable files of a dataset."""
    dataset = load_dataset(source, skip_errors=skip_errors)
    sizes: Counter = Counter()
    unreadable = list(dataset.problems)
    if check_images:
        for path in sorted({s.path for s in dataset.samples}):
            try:
                image = decode_image(read_bytes(path), path)
                sizes[f"{image.shape[1]}x{image.shape[0]}"] += 1
            except ImageReadError as exc:
                unreadable.append((str(path), exc.cause))
    return {
        "source": str(source),
        "layout": dataset.kind,
        "n_samples": len(dataset),
        "n_images": len({s.path for s in dataset.samples}),
        "classes": dataset.class_counts(),
        "n_groups": len(set(dataset.groups)) if dataset.groups is not None else None,
        "image_sizes": dict(sizes.most_common()),
        "unreadable": [{"path": p, "reason": r} for p, r in unreadable],
    }
