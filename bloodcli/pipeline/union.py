"""Feature sets for ``compare``: one table holding every extractor any set needs, and the columns of each.

Feature sets are column slices of that union, so adding a set or a classifier costs no image work.
Each extractor is extracted and timed on its own, so its cost per sample is measured.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bloodcli.errors import DatasetError, ModelFileError, UsageError
from bloodcli.features import extractor_kind, extractors_from_specs
from bloodcli.pipeline.featurize import (
    fitted_preprocessing,
    is_features_file,
    load_source,
    run_extraction,
    with_refit,
)
from bloodcli.pipeline.options import ExecutionOptions
from bloodcli.pipeline.parallel import start_workers
from bloodcli.pipeline.plan import FeatureSettings, Plan
from bloodcli.pipeline.table import AugmentedRows, FeatureTable


@dataclass
class ExtractorTiming:
    """Wall-clock extraction time of one extractor over the dataset, and how much came from cache."""

    name: str
    kind: str
    seconds: float | None
    n_samples: int
    n_computed: int
    n_cached: int

    @property
    def ms_per_sample(self) -> float | None:
        """Cost of computing one image: the run's time over the images computed in it.

        None when nothing was computed (all from the cache or a features file): a cache read
        says nothing about the cost. The run's few cache reads are included; they are cheap next
        to a computation (a fully cached re-run is ~50x faster).
        """
        if self.seconds is None or self.n_computed == 0:
            return None
        return 1000.0 * self.seconds / self.n_computed

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "ms_per_sample": self.ms_per_sample, "n_computed": self.n_computed,
            "n_cached": self.n_cached, "from_features_file": self.seconds is None,
        }  # fmt: skip


def extract_union(source, plan: Plan, options: ExecutionOptions) -> tuple[FeatureTable, dict[str, slice], list[ExtractorTiming]]:
    """One table with every extractor of ``plan``, the column span of each, and their timings.

    Each extractor is extracted (and timed) on its own, so its cost per sample is measured
    rather than estimated; a features ``.npz`` file is used as it is, without image work.
    """
    if is_features_file(source):
        if plan.augmentation is not None:
            raise UsageError(f"--augment needs images, but {source} is a features file")
        return _from_features_file(source, plan.names)
    dataset = load_source(source, options)
    start_workers(min(options.workers, len(dataset)))  # so the first extractor timed doesn't pay for their start-up
    preprocessing = fitted_preprocessing(dataset, plan)  # once for every extractor
    tables, timings = [], []
    for extractor in plan.extractors:
        start = time.perf_counter()
        table = run_extraction(dataset, [extractor], preprocessing, options, plan.augmentation)
        seconds = time.perf_counter() - start
        tables.append(table)
        images = table.n_computed + table.n_cached  # one extractor: one per original and copy
        timings.append(ExtractorTiming(extractor.name, extractor_kind(extractor.name), seconds, images, table.n_computed, table.n_cached))
    union, spans = _join(tables)
    # A refit recomputes every extractor in one pass with references fitted once per training part.
    return with_refit(union, dataset, plan, options), spans, timings


def spans_of(settings: FeatureSettings) -> dict[str, slice]:
    """Column span of each extractor recorded in ``settings`` (its width depends on its parameters only)."""
    spans, start = {}, 0
    for extractor in extractors_from_specs(settings.extractors, check_resources=False):
        width = len(extractor.feature_names())
        spans[extractor.name] = slice(start, start + width)
        start += width
    return spans


def columns_of(spans: dict[str, slice], names: Sequence[str]) -> np.ndarray:
    """Column indices of the extractors ``names``, in that order."""
    return np.concatenate([np.arange(spans[n].start, spans[n].stop) for n in names])


def _join(tables: list[FeatureTable]) -> tuple[FeatureTable, dict[str, slice]]:
    """Concatenate per-extractor tables column-wise over the samples every one of them kept."""
    ids = [[s.id for s in t.samples] for t in tables]
    common = set.intersection(*map(set, ids))
    rows = [[i for i, sample_id in enumerate(t_ids) if sample_id in common] for t_ids in ids]
    first = tables[0]
    settings = FeatureSettings(tuple(e for t in tables for e in t.settings.extractors), first.settings.preprocessing)
    failures = list(dict.fromkeys(f for t in tables for f in t.failures))
    union = FeatureTable(
        np.hstack([t.values[r] for t, r in zip(tables, rows)]), [n for t in tables for n in t.feature_names],
        [first.samples[i] for i in rows[0]], [first.content_keys[i] for i in rows[0]], settings, failures,
        sum(t.n_computed for t in tables), sum(t.n_cached for t in tables), _join_augmented(tables, rows),
    )  # fmt: skip
    return union, spans_of(settings)


def _join_augmented(tables: list[FeatureTable], rows: list[list[int]]) -> AugmentedRows | None:
    """Column-wise join of the augmented copies of the rows every table kept."""
    if tables[0].augmented is None:
        return None
    parts = [t.augmented.select(r) for t, r in zip(tables, rows)]
    if not all(np.array_equal(p.source_index, parts[0].source_index) for p in parts):
        raise AssertionError("extractors returned different augmented copies")
    return AugmentedRows(np.hstack([p.values for p in parts]), parts[0].source_index, parts[0].augmentation)


def _from_features_file(path, names: Sequence[str]) -> tuple[FeatureTable, dict[str, slice], list[ExtractorTiming]]:
    table = FeatureTable.load(path)
    try:
        spans = spans_of(table.settings)
    except ModelFileError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    if max((s.stop for s in spans.values()), default=0) != table.values.shape[1]:
        raise DatasetError(f"{path}: {table.values.shape[1]} feature columns, but its extractors describe another number")
    missing = [n for n in names if n not in spans]
    if missing:
        raise UsageError(f"{path} has features {'+'.join(spans)}, not {', '.join(missing)}")
    timings = [ExtractorTiming(n, extractor_kind(n), None, len(table), 0, 0) for n in names]  # read, neither computed nor cached
    return table, spans, timings
