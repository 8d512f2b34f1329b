"""The extraction facade: run a list of extractors over a dataset with caching and parallelism.

Classical extractors run per image in worker processes (``jobs``); batched extractors (CNN
backbones) run in the main process in batches. Every result goes through the
:class:`~bloodcli.cache.FeatureCache`, so a second run over the same images computes nothing.

With an :class:`~bloodcli.augmentation.Augmentation`, each sample's augmented copies are work
items like the sample itself (decode, crop, augment, preprocess, extract, cache) and come back
as :attr:`FeatureTable.augmented`, apart from the rows of the originals.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import joblib
import numpy as np

from bloodcli.cache import FeatureCache
from bloodcli.datasets import Dataset, Sample, crop
from bloodcli.errors import DatasetError, ImageReadError, InputDataError, UsageError
from bloodcli.features.base import CellImage, FeatureExtractor
from bloodcli.imaging import atomic_write, content_hash, decode_image, read_bytes
from bloodcli.preprocessing import Preprocessing

if TYPE_CHECKING:  # augmentation imports features.base: a runtime import here would be circular
    from bloodcli.augmentation import Augmentation

ProgressCallback = Callable[[int, int], None]  # (samples just finished, total steps)


@dataclass(frozen=True)
class FeatureSettings:
    """Everything needed to recompute identical features: extractor specs and preprocessing."""

    extractors: tuple[dict, ...]
    preprocessing: Preprocessing = Preprocessing()

    @classmethod
    def of(cls, extractors: Sequence[FeatureExtractor], preprocessing: Preprocessing) -> "FeatureSettings":
        return cls(tuple(e.spec() for e in extractors), preprocessing)

    def to_dict(self) -> dict:
        return {"extractors": [dict(e) for e in self.extractors], "preprocessing": self.preprocessing.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSettings":
        return cls(tuple(data["extractors"]), Preprocessing.from_dict(data.get("preprocessing")))

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.extractors]

    def describe(self) -> str:
        return f"features {'+'.join(self.names)}; preprocessing {self.preprocessing.describe()}"


@dataclass
class AugmentedRows:
    """Features of augmented copies of a table's rows: rows to fit on, never to score.

    Row ``j`` is a copy of original row ``source_index[j]``. :meth:`FeatureTable.save` does not
    write them: they are a training-time device, recomputed (or read from the cache) when needed.
    """

    values: np.ndarray
    source_index: np.ndarray
    augmentation: Augmentation

    def __len__(self) -> int:
        return len(self.source_index)

    def to_dict(self) -> dict:
        """The augmentation settings and the number of copies, as recorded in models and reports."""
        return dict(self.augmentation.to_dict(), n_rows=len(self))

    def select(self, rows: Sequence[int]) -> "AugmentedRows":
        """The copies of original rows ``rows`` only, their sources renumbered to positions in ``rows``."""
        position = {row: i for i, row in enumerate(rows)}
        keep = np.isin(self.source_index, list(position))
        sources = np.array([position[s] for s in self.source_index[keep]], dtype=np.int64)
        return AugmentedRows(self.values[keep], sources, self.augmentation)


@dataclass
class FeatureTable:
    """Features of a dataset: one row per successfully processed sample (plus, apart, augmented copies)."""

    values: np.ndarray
    feature_names: list[str]
    samples: list[Sample]
    content_keys: list[str]
    settings: FeatureSettings
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_computed: int = 0
    n_cached: int = 0
    augmented: AugmentedRows | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def with_copies(self) -> tuple[np.ndarray, np.ndarray]:
        """Values of the rows followed by their augmented copies, and the row each one shows (for fitting)."""
        rows = np.arange(len(self))
        if self.augmented is None:
            return self.values, rows
        return np.vstack([self.values, self.augmented.values]), np.concatenate([rows, self.augmented.source_index])

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=object)

    @property
    def groups(self) -> np.ndarray | None:
        groups = Dataset(self.samples, "", "").groups
        return None if groups is None else np.array(groups, dtype=object)

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.values, columns=self.feature_names)
        frame.insert(0, "path", [str(s.path) for s in self.samples])
        frame.insert(1, "box", ["" if s.box is None else ",".join(map(str, s.box)) for s in self.samples])
        frame.insert(2, "label", [s.label for s in self.samples])
        frame.insert(3, "group", [s.group for s in self.samples])
        return frame

    def save(self, path: str | os.PathLike) -> None:
        """Save as joblib (plain arrays and builtins only); ``.csv``/``.parquet`` export a table."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            with atomic_write(path, "w") as handle:
                self.to_frame().to_csv(handle, index=False)
        elif suffix == ".parquet":
            with atomic_write(path) as handle:
                self.to_frame().to_parquet(handle, index=False)
        else:
            with atomic_write(path) as handle:
                joblib.dump(self._to_payload(), handle, compress=3)

    def _to_payload(self) -> dict:
        return {
            "format": "bloodcli-features/1",
            "values": self.values,
            "feature_names": list(self.feature_names),
            "samples": [(str(s.path), s.label, s.group, s.box) for s in self.samples],
            "content_keys": list(self.content_keys),
            "settings": self.settings.to_dict(),
            "failures": list(self.failures),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureTable":
        try:
            payload = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise InputDataError(f"{path}: not a readable bloodcli features file ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != "bloodcli-features/1":
            raise InputDataError(f"{path}: not a bloodcli features file")
        samples = [Sample(Path(p), label, group, tuple(box) if box else None) for p, label, group, box in payload["samples"]]
        return cls(
            payload["values"], payload["feature_names"], samples, payload["content_keys"],
            FeatureSettings.from_dict(payload["settings"]), [tuple(f) for f in payload["failures"]],
        )  # fmt: skip


@dataclass
class _SampleResult:
    key: str | None
    vectors: list[np.ndarray] | None
    computed: int = 0
    error: str | None = None


def sample_key(data: bytes, sample: Sample) -> str:
    """Cache key of a sample: the image content hash plus the crop box."""
    digest = content_hash(data)
    return digest if sample.box is None else f"{digest}-{'_'.join(map(str, sample.box))}"


def load_sample_image(data: bytes, sample: Sample, preprocessing: Preprocessing, augment=None) -> np.ndarray:
    """Decode, crop, augment (``augment(image)``, when given) and preprocess one sample's image."""
    image = crop(decode_image(data, sample.path), sample.box)
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageReadError(sample.id, f"image or box too small ({image.shape[1]}x{image.shape[0]} pixels)")
    return preprocessing.apply(image if augment is None else augment(image))


@dataclass(frozen=True)
class WorkItem:
    """One image to featurize: a sample as it is (``copy == 0``) or its augmented copy ``copy``."""

    sample: Sample
    copy: int = 0
    augmentation: Augmentation | None = None

    def key(self, data: bytes) -> str:
        """Cache key: a copy's adds the augmentation fingerprint and copy index to its sample's."""
        key = sample_key(data, self.sample)
        return self.augmentation.copy_key(key, self.copy) if self.copy else key

    def image(self, data: bytes, preprocessing: Preprocessing) -> np.ndarray:
        """The preprocessed image; a copy is augmented between cropping and preprocessing."""
        if not self.copy:
            return load_sample_image(data, self.sample, preprocessing)
        key = sample_key(data, self.sample)
        return load_sample_image(data, self.sample, preprocessing, lambda image: self.augmentation.apply(image, key, self.copy))


def _namespace(extractor: FeatureExtractor, preprocessing: Preprocessing) -> str:
    settings = FeatureSettings.of([extractor], preprocessing)
    return f"{extractor.name}-{joblib.hash(settings.to_dict())[:16]}"


def _process_sample(
    item: WorkItem, extractors, namespaces: list[str], preprocessing: Preprocessing, cache: FeatureCache
) -> _SampleResult:
    """Worker: features of one sample (or copy) for the per-image extractors, through the cache.

    ``namespaces`` are the extractors' cache namespaces, computed once per run rather than per image.
    """
    sample = item.sample
    try:
        data = read_bytes(sample.path)
        key = item.key(data)
        vectors = [cache.get(namespace, key) for namespace in namespaces]
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            cell = CellImage(item.image(data, preprocessing))
            for i in missing:
                vectors[i] = _finite(extractors[i].compute(cell))
                cache.put(namespaces[i], key, vectors[i])
        return _SampleResult(key, vectors, computed=len(missing))
    except ImageReadError as exc:
        return _SampleResult(None, None, error=exc.cause if exc.path == str(sample.path) else str(exc))


def _finite(values: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def extract_features(
    dataset: Dataset,
    extractors: Sequence[FeatureExtractor],
    preprocessing: Preprocessing = Preprocessing(),
    *,
    cache: FeatureCache | None = None,
    jobs: int | None = 1,
    skip_errors: bool = False,
    progress: ProgressCallback | None = None,
    batch_size: int = 32,
    executor=None,
    augmentation: Augmentation | None = None,
) -> FeatureTable:
    """Compute features for every sample of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    extractors : sequence of FeatureExtractor
        Their outputs are concatenated in this order.
    preprocessing : Preprocessing
    cache : FeatureCache, optional
        Where to look up and store per-sample features (disabled when None).
    jobs : int or None
        Worker processes for per-image extractors; None or -1 uses every core.
    skip_errors : bool
        Record unreadable images in ``FeatureTable.failures`` instead of raising.
    progress : callable, optional
        Called as ``progress(advance, total)``; ``total`` counts one step per sample and pass
        (one pass for all per-image extractors, one per batched extractor).
    batch_size : int
        Batch size of batched (CNN) extractors.
    executor : Executor-like, optional
        Where per-image work runs instead of local processes: anything with
        ``submit(fn, *args)`` returning futures, e.g. a Dask ``distributed.Client`` (then ``jobs``
        is ignored).
    augmentation : Augmentation, optional
        Also featurize ``augmentation.copies`` augmented copies of every sample, returned in
        ``FeatureTable.augmented``. A sample is kept only when it and all its copies succeed.

    Returns
    -------
    FeatureTable
    """
    if not extractors:
        raise UsageError("no feature extractors selected")
    if not dataset.samples:
        raise DatasetError(f"{dataset.source}: dataset has no images")
    cache = cache or FeatureCache(None)
    per_image = [e for e in extractors if not e.batched]
    batched = [e for e in extractors if e.batched]
    items, source = _work_items(dataset.samples, augmentation)
    n = len(items)
    columns: dict[int, np.ndarray] = {}
    keys: list[str | None] = [None] * n
    errors: dict[int, str] = {}
    computed = 0

    def record(index: int, result: _SampleResult, owners: Sequence[FeatureExtractor]) -> None:
        nonlocal computed
        if result.error is not None:
            if not skip_errors:
                raise ImageReadError(items[index].sample.id, result.error)
            errors.setdefault(index, result.error)
            return
        keys[index] = result.key
        computed += result.computed
        for extractor, vector in zip(owners, result.vectors):
            columns.setdefault(id(extractor), np.zeros((n, vector.size), np.float32))[index] = vector

    total_steps = n * (int(bool(per_image)) + len(batched))
    advance = (lambda: progress(1, total_steps)) if progress else (lambda: None)
    if per_image:
        results = _run_per_image(items, per_image, preprocessing, cache, jobs, executor)
        for index, result in enumerate(results):
            record(index, result, per_image)
            advance()
    for extractor in batched:
        todo = [i for i in range(n) if i not in errors]
        batches = _run_batched(items, todo, keys, extractor, preprocessing, cache, batch_size)
        for index, result in batches:
            record(index, result, [extractor])
            advance()
    failed = {}  # sample index -> first error of the sample or any of its copies
    for index in sorted(errors):
        failed.setdefault(source[index], errors[index])
    kept = [i for i in range(n) if source[i] not in failed]
    if not kept:
        raise DatasetError(f"{dataset.source}: no image could be read")
    values = np.concatenate([columns[id(e)][kept] for e in extractors if id(e) in columns], axis=1)
    names = [name for e in extractors for name in e.feature_names()]
    failures = list(dataset.problems) + [(dataset.samples[i].id, cause) for i, cause in sorted(failed.items())]
    total = len(kept) * len(extractors)
    originals = [i for i in kept if not items[i].copy]
    table = FeatureTable(
        values[: len(originals)], names, [items[i].sample for i in originals], [keys[i] for i in originals],
        FeatureSettings.of(extractors, preprocessing), failures, computed, total - computed,
    )  # fmt: skip
    if len(kept) > len(originals):  # copies follow the originals (see _work_items)
        sources = np.searchsorted(np.asarray(originals), source[kept[len(originals) :]])
        table.augmented = AugmentedRows(values[len(originals) :], sources, augmentation)
    return table


def _work_items(samples: list[Sample], augmentation: Augmentation | None) -> tuple[list[WorkItem], np.ndarray]:
    """Every sample, then its copies 1..k (copy-major), and the sample index of each item."""
    copies = augmentation.copies if augmentation is not None else 0
    items = [WorkItem(s) for s in samples] + [WorkItem(s, k, augmentation) for k in range(1, copies + 1) for s in samples]
    return items, np.tile(np.arange(len(samples)), copies + 1)


def resolve_jobs(jobs: int | None) -> int:
    """Number of worker processes: None, 0 or negative means every available core."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return available if not jobs or jobs < 0 else jobs


def _extract_chunk(items, extractors, namespaces, preprocessing, cache) -> list[_SampleResult]:
    """Worker task: several samples at once, so per-task overhead is paid once per chunk."""
    cv2.setNumThreads(1)  # one worker per core: OpenCV's own thread pool would oversubscribe it
    return [_process_sample(item, extractors, namespaces, preprocessing, cache) for item in items]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_per_image(items, extractors, preprocessing, cache, jobs, executor=None) -> Iterator[_SampleResult]:
    """Results in item order, streamed: only feature vectors are ever held, never images."""
    namespaces = [_namespace(e, preprocessing) for e in extractors]
    arguments = (extractors, namespaces, preprocessing, cache)
    if executor is not None:
        chunks = _chunks(items, 32)
        futures = in_order(lambda chunk: executor.submit(_extract_chunk, chunk, *arguments), chunks, ahead=64)
        return (result for future in futures for result in future.result())
    workers = min(resolve_jobs(jobs), len(items))
    if workers <= 1:
        return (_process_sample(item, *arguments) for item in items)
    chunks = _chunks(items, max(1, min(16, len(items) // (4 * workers))))
    parallel = joblib.Parallel(n_jobs=workers, return_as="generator")
    return (result for chunk in parallel(joblib.delayed(_extract_chunk)(c, *arguments) for c in chunks) for result in chunk)


def in_order(submit, items, ahead: int):
    """Yield ``submit(item)`` handles in order while keeping ``ahead`` items submitted.

    Bounded look-ahead keeps memory to a few tasks' results however large the dataset.
    """
    pending: deque = deque()
    remaining = iter(items)
    for item in itertools.islice(remaining, ahead):
        pending.append(submit(item))
    while pending:
        current = pending.popleft()
        following = next(remaining, None)
        if following is not None:
            pending.append(submit(following))
        yield current


def _run_batched(items, todo, keys, extractor, preprocessing, cache, batch_size) -> Iterator[tuple[int, _SampleResult]]:
    """Batches of decoded images for a CNN; decoding of the next batch overlaps inference.

    ``keys`` holds the cache keys an earlier pass already computed (None where not), so a cache
    hit there needs no file read at all.
    """
    namespace = _namespace(extractor, preprocessing)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def load(index: int):
        item = items[index]
        try:
            data, key = None, keys[index]
            if key is None:
                data = read_bytes(item.sample.path)
                key = item.key(data)
            cached = cache.get(namespace, key)
            if cached is not None:
                return index, key, cached, None, None
            data = data if data is not None else read_bytes(item.sample.path)
            return index, key, None, extractor.prepare(item.image(data, preprocessing)), None
        except ImageReadError as exc:
            return index, None, None, None, exc.cause

    with ThreadPoolExecutor(max_workers=max(2, min(8, resolve_jobs(None)))) as pool:
        submit_batch = lambda batch: [pool.submit(load, index) for index in batch]  # noqa: E731
        for futures in in_order(submit_batch, batches, ahead=2):
            loaded = [future.result() for future in futures]
            to_compute = [item for item in loaded if item[3] is not None]
            if to_compute:
                outputs = extractor.compute_batch([item[3] for item in to_compute])
                for (index, key, _, _, _), vector in zip(to_compute, outputs):
                    cache.put(namespace, key, _finite(vector))
                fresh = {item[0]: _finite(v) for item, v in zip(to_compute, outputs)}
            else:
                fresh = {}
            for index, key, cached, image, error in loaded:
                if error is not None:
                    yield index, _SampleResult(None, None, error=error)
                else:
                    vector = cached if cached is not None else fresh[index]
                    yield index, _SampleResult(key, [vector], computed=int(image is not None))
