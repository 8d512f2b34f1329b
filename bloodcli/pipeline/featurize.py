"""From a source and a plan to a feature table: load the dataset, fit references, run the extraction.

Stain and scale references (``--stain``, ``--cell-diameter auto``) are fitted on training images
only. A table whose preprocessing was fitted can refit (``FeatureTable.refit``): given the rows of
a training part, it recomputes every row with references fitted on those rows alone, which is
how cross-validation keeps test folds out of every fitted step. Refits with the same references
come from the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from bloodcli.errors import ImageReadError, UsageError
from bloodcli.features import deep
from bloodcli.features.base import FeatureExtractor
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.imaging.preprocessing import Preprocessing, fit_references
from bloodcli.io.datasets import Dataset, crop, load_dataset, load_inputs
from bloodcli.io.images import decode_image, read_bytes
from bloodcli.pipeline.options import ExecutionOptions
from bloodcli.pipeline.parallel import compute_backend
from bloodcli.pipeline.plan import FeatureSettings, Plan
from bloodcli.pipeline.runner import extract_features
from bloodcli.pipeline.table import FeatureTable

FEATURES_SUFFIX = ".npz"
#: Features files of bloodcli 0.1: recognised so that :meth:`FeatureTable.load` can refuse them in one line.
PICKLED_FEATURES_SUFFIX = ".joblib"
#: Stain/scale references are fitted on at most this many evenly spaced training images.
REFERENCE_IMAGES = 100


#: Header of a features table exported as CSV (``FeatureTable.to_frame``): recognised so it is not taken for a manifest.
EXPORTED_CSV_HEADER = "path,box,label,group,"


def is_features_file(source) -> bool:
    """Whether ``source`` names a features file (``.npz``, ``.parquet``, an exported CSV or a 0.1 ``.joblib``)."""
    if isinstance(source, Dataset) or not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        return False
    name = str(source).lower()
    if name.endswith(".csv"):
        with open(source, encoding="utf-8-sig", errors="replace") as handle:
            return handle.readline(4096).startswith(EXPORTED_CSV_HEADER)
    return name.endswith((FEATURES_SUFFIX, ".parquet", PICKLED_FEATURES_SUFFIX))


def load_source(source, options: ExecutionOptions, labelled: bool = True) -> Dataset:
    """A :class:`Dataset` as it is, a labelled dataset path, or (``labelled=False``) images, folders and globs."""
    if isinstance(source, Dataset):
        return source
    if labelled:
        return load_dataset(source, skip_errors=options.skip_errors)
    return load_inputs(source if isinstance(source, (list, tuple)) else [source], skip_errors=options.skip_errors)


def featurize(source, plan: Plan, options: ExecutionOptions | None = None) -> FeatureTable:
    """Features of a dataset (path or :class:`Dataset`) by ``plan``, or a saved features file as it is.

    With augmentation, the table also holds the features of each image's augmented copies
    (``FeatureTable.augmented``); references are fitted on the originals.
    """
    options = options or ExecutionOptions()
    if is_features_file(source):
        if plan.augmentation is not None:
            raise UsageError(f"--augment needs images, but {source} is a features file")
        return FeatureTable.load(source)
    return featurize_dataset(load_source(source, options), plan, options)


def featurize_dataset(dataset: Dataset, plan: Plan, options: ExecutionOptions) -> FeatureTable:
    """:func:`featurize` of a loaded dataset; the table can refit when references were fitted."""
    preprocessing = fitted_preprocessing(dataset, plan)
    table = run_extraction(dataset, plan.extractors, preprocessing, options, plan.augmentation)
    return with_refit(table, dataset, plan, options)


def fitted_preprocessing(dataset: Dataset, plan: Plan) -> Preprocessing:
    """The plan's preprocessing with its references fitted on ``dataset`` (as it is when it needs none)."""
    return fit_preprocessing(dataset, plan.preprocessing) if plan.preprocessing.needs_fitting else plan.preprocessing


def with_refit(table: FeatureTable, dataset: Dataset, plan: Plan, options: ExecutionOptions) -> FeatureTable:
    """``table`` made able to refit its references on some of its rows, when the plan fits any."""
    if plan.preprocessing.needs_fitting:
        table.refit = _Refit(Dataset(table.samples, dataset.source, dataset.kind), plan, replace(options, progress=None))
    return table


@dataclass(frozen=True)
class _Refit:
    """``FeatureTable.refit``: every row again, with references fitted on some rows only."""

    dataset: Dataset  # the table's rows, in order
    plan: Plan
    options: ExecutionOptions

    def __call__(self, rows: np.ndarray) -> FeatureTable:
        training = Dataset([self.dataset.samples[i] for i in rows], self.dataset.source, self.dataset.kind)
        fitted = fitted_preprocessing(training, self.plan)
        table = run_extraction(self.dataset, self.plan.extractors, fitted, self.options, self.plan.augmentation)
        if len(table) != len(self.dataset):  # these images were all read before: rows must line up
            raise AssertionError(f"a refit kept {len(table)} of {len(self.dataset)} rows")
        return table


def featurize_like(settings: FeatureSettings, source, options: ExecutionOptions | None = None, *,
                   labelled: bool = True, weights: str | None = None) -> FeatureTable:  # fmt: skip
    """Features computed exactly as recorded in ``settings`` (a model's or a training table's).

    Nothing is fitted: the recorded references are used. A features file is returned as it is
    (the caller checks that its settings match).
    """
    options = options or ExecutionOptions()
    if is_features_file(source):
        return FeatureTable.load(source)
    plan = Plan.reproducing(settings, weights)
    return run_extraction(load_source(source, options, labelled), plan.extractors, settings.preprocessing, options)


def fit_preprocessing(dataset: Dataset, preprocessing: Preprocessing, max_images: int = REFERENCE_IMAGES) -> Preprocessing:
    """Fit stain/scale references on up to ``max_images`` evenly spaced images of ``dataset``."""
    step = max(1, len(dataset) // max_images)
    images = (_sample_image(s) for s in dataset.samples[::step])
    return fit_references(preprocessing, [i for i in images if i is not None])


def _sample_image(sample):
    try:
        return crop(decode_image(read_bytes(sample.path), sample.path), sample.box)
    except ImageReadError:
        return None


def run_extraction(dataset: Dataset, extractors: Sequence[FeatureExtractor], preprocessing: Preprocessing,
                   options: ExecutionOptions, augmentation: Augmentation | None = None) -> FeatureTable:  # fmt: skip
    """The extraction runner, locally or, with a scheduler, on Dask workers."""
    if any(e.batched for e in extractors):
        deep.use_device(options.device)
    with compute_backend(options.scheduler) as client:
        return extract_features(
            dataset, extractors, preprocessing, cache=options.cache(), jobs=options.jobs, skip_errors=options.skip_errors,
            progress=options.progress, batch_size=options.batch_size, executor=client, augmentation=augmentation,
        )  # fmt: skip
