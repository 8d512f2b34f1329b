"""The extraction runner: a list of extractors over a dataset, through the cache, in parallel.

Per-image (classical) extractors run in worker processes (``jobs``, or a Dask client as
executor); batched extractors (CNN backbones) run in the main process in batches while threads
decode the next ones. Every result goes through the :class:`~bloodcli.pipeline.cache.FeatureCache`,
so a second run over the same images computes nothing. Images stream: only feature vectors are kept.

With an :class:`~bloodcli.imaging.augmentation.Augmentation`, each sample's augmented copies are work
items like the sample itself (decode, crop, augment, preprocess, extract, cache) and come back
as :attr:`FeatureTable.augmented`, apart from the rows of the originals.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bloodcli.errors import DatasetError, ImageReadError, UsageError
from bloodcli.features.base import CellImage, FeatureExtractor
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.imaging.preprocessing import MAX_SIDE, Preprocessing
from bloodcli.io.datasets import Dataset, Sample, crop
from bloodcli.io.images import content_hash, decode_image
from bloodcli.pipeline.cache import FeatureCache
from bloodcli.pipeline.file_hashes import FileHashes, file_status, read_hashed
from bloodcli.pipeline.options import ProgressCallback
from bloodcli.pipeline.parallel import in_order, in_worker, map_chunks, ramped_chunks, resolve_jobs
from bloodcli.pipeline.plan import FeatureSettings
from bloodcli.pipeline.table import AugmentedRows, FeatureTable


@dataclass
class _SampleResult:
    key: str | None
    vectors: list[np.ndarray] | None
    computed: int = 0
    error: str | None = None
    seen: tuple | None = None  # (status, content hash) of the file read, when a later run may trust it


def sample_key(digest: str, sample: Sample) -> str:
    """Cache key of a sample: the image content hash plus the crop box."""
    return digest if sample.box is None else f"{digest}-{'_'.join(map(str, sample.box))}"


#: Most pixels features are computed on (a 4096 x 4096 image): cells and smears are far smaller, and the
#: feature code's memory and time grow with the pixels (an 88-megapixel image took 12 GB and minutes).
FEATURE_PIXEL_LIMIT = MAX_SIDE * MAX_SIDE


def load_sample_image(data: bytes, sample: Sample, preprocessing: Preprocessing, augment=None) -> np.ndarray:
    """Decode, crop, augment (``augment(image)``, when given) and preprocess one sample's image."""
    image = crop(decode_image(data, sample.path), sample.box)
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageReadError(sample.id, f"image or box too small ({image.shape[1]}x{image.shape[0]} pixels)")
    if preprocessing.resize is None and image.shape[0] * image.shape[1] > FEATURE_PIXEL_LIMIT:  # before any work on it
        raise ImageReadError(sample.id, f"{image.shape[1]}x{image.shape[0]} pixels is more than features are computed on "
                                        f"({FEATURE_PIXEL_LIMIT:,}): crop the cells (boxes in a manifest, or "
                                        "'segment --crops') or downscale the image")  # fmt: skip
    return preprocessing.apply(image if augment is None else augment(image))


@dataclass(frozen=True)
class WorkItem:
    """One image to featurize: a sample as it is (``copy == 0``) or its augmented copy ``copy``."""

    sample: Sample
    copy: int = 0
    augmentation: Augmentation | None = None
    known: tuple | None = None  # (status, content hash) remembered for the file (:mod:`~bloodcli.pipeline.file_hashes`)

    def key(self, digest: str) -> str:
        """Cache key from the file's content hash: a copy's adds the augmentation fingerprint and copy index."""
        key = sample_key(digest, self.sample)
        return self.augmentation.copy_key(key, self.copy) if self.copy else key

    def known_key(self) -> str | None:
        """The cache key without reading the file, when it is unchanged since its hash was remembered."""
        if self.known is None or file_status(str(self.sample.path)) != self.known[0]:
            return None
        return self.key(self.known[1])

    def image(self, data: bytes, preprocessing: Preprocessing) -> np.ndarray:
        """The preprocessed image; a copy is augmented between cropping and preprocessing."""
        if not self.copy:
            return load_sample_image(data, self.sample, preprocessing)
        key = sample_key(content_hash(data), self.sample)
        return load_sample_image(data, self.sample, preprocessing, lambda image: self.augmentation.apply(image, key, self.copy))


def _namespace(extractors: Sequence[FeatureExtractor], preprocessing: Preprocessing) -> str:
    """Cache namespace of a set of extractors run together: one entry per image holds all their features."""
    settings = json.dumps(FeatureSettings.of(extractors, preprocessing).to_dict(), sort_keys=True, default=lambda v: np.asarray(v).tolist())
    return f"{'+'.join(e.name for e in extractors)}-{hashlib.blake2b(settings.encode(), digest_size=8).hexdigest()}"


def _process_sample(
    item: WorkItem, extractors, namespace: str, preprocessing: Preprocessing, cache: FeatureCache
) -> _SampleResult:
    """Worker: features of one sample (or copy) for the per-image extractors, through the cache.

    The extractors' vectors are cached together, one entry per image (one file read or written,
    not one per extractor); ``namespace`` is computed once per run rather than per image. An image
    unchanged since its content hash was remembered is not read at all when its entry exists.
    """
    sample = item.sample
    ends = list(itertools.accumulate(e.n_features for e in extractors))
    split = lambda vector: [vector[start:end] for start, end in zip([0, *ends], ends)]  # noqa: E731
    try:
        known = item.known_key()
        cached = None if known is None else cache.get(namespace, known, size=ends[-1])
        if cached is not None:  # the file is not even read
            return _SampleResult(known, split(cached))
        data, digest, status = read_hashed(sample.path)
        key, seen = item.key(digest), None if status is None else (status, digest)
        cached = cache.get(namespace, key, size=ends[-1]) if key != known else None
        if cached is not None:
            return _SampleResult(key, split(cached), seen=seen)
        image = item.image(data, preprocessing)
        cells: dict[int, CellImage] = {}  # one per mask version: conversions and masks computed once
        vectors = []
        for extractor in extractors:
            cell = cells.setdefault(extractor.mask_version, CellImage(image, extractor.mask_version, preprocessing.roi))
            vectors.append(extractor.compute(cell))
        values = _finite(np.concatenate(vectors))
        if values.size != ends[-1]:
            raise ValueError(f"extractors {[e.name for e in extractors]} returned {values.size} values, not {ends[-1]}")
        cache.put(namespace, key, values)
        return _SampleResult(key, split(values), computed=len(extractors), seen=seen)
    except ImageReadError as exc:
        return _SampleResult(None, None, error=exc.cause if exc.path == str(sample.path) else str(exc))


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    return values if np.isfinite(values).all() else np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


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
    hashes = FileHashes(cache.root)
    items, source = _work_items(dataset.samples, augmentation, hashes.recall(s.path for s in dataset.samples))
    n = len(items)
    columns: dict[int, np.ndarray] = {}
    keys: list[str | None] = [None] * n
    errors: dict[int, str] = {}
    seen: dict[str, tuple] = {}  # file -> (status, content hash) to remember
    computed = 0

    def record(index: int, result: _SampleResult, owners: Sequence[FeatureExtractor]) -> None:
        nonlocal computed
        if result.error is not None:
            if not skip_errors:
                raise ImageReadError(items[index].sample.id, result.error)
            errors.setdefault(index, result.error)
            return
        keys[index] = result.key
        if result.seen is not None:
            seen[str(items[index].sample.path)] = result.seen
        computed += result.computed
        for extractor, vector in zip(owners, result.vectors):
            if id(extractor) not in columns:
                columns[id(extractor)] = np.zeros((n, vector.size), np.float32)
            columns[id(extractor)][index] = vector

    total_steps = n * (int(bool(per_image)) + len(batched))
    advance = (lambda: progress(1, total_steps)) if progress else (lambda: None)
    # Closed at once on an error: a worker pool's generator left to the garbage collector would shut the
    # shared pool down in the middle of a later call.
    if per_image:
        with contextlib.closing(_run_per_image(items, per_image, preprocessing, cache, jobs, executor)) as results:
            for index, result in enumerate(results):
                record(index, result, per_image)
                advance()
    for extractor in batched:
        todo = [i for i in range(n) if i not in errors]
        with contextlib.closing(_run_batched(items, todo, keys, extractor, preprocessing, cache, batch_size)) as batches:
            for index, result in batches:
                record(index, result, [extractor])
                advance()
    hashes.remember(seen)
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


def _work_items(samples: list[Sample], augmentation: Augmentation | None, known: dict) -> tuple[list[WorkItem], np.ndarray]:
    """Every sample, then its copies 1..k (copy-major), and the sample index of each item."""
    copies = augmentation.copies if augmentation is not None else 0
    items = [WorkItem(s, k, augmentation if k else None, known.get(str(s.path))) for k in range(copies + 1) for s in samples]
    return items, np.tile(np.arange(len(samples)), copies + 1)


def _extract_chunk(items, extractors, namespace, preprocessing, cache) -> list[_SampleResult]:
    """Task of several samples at once, so per-task overhead is paid once per chunk."""
    return [_process_sample(item, extractors, namespace, preprocessing, cache) for item in items]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_per_image(items, extractors, preprocessing, cache, jobs, executor=None) -> Iterator[_SampleResult]:
    """Results in item order, streamed: only feature vectors are ever held, never images."""
    arguments = (extractors, _namespace(extractors, preprocessing), preprocessing, cache)
    if executor is not None:
        chunks = _chunks(items, 32)
        futures = in_order(lambda chunk: executor.submit(in_worker, _extract_chunk, chunk, *arguments), chunks, ahead=64)
        return (result for future in futures for result in future.result())
    jobs = min(resolve_jobs(jobs), len(items))
    # A stop on a bad image cancels the chunks in flight on purpose: joblib's warning about it is noise.
    warnings.filterwarnings("ignore", message=r"\d+ tasks (which were still being processed|have been successfully executed)", category=UserWarning)
    chunks = ramped_chunks(items, max(1, min(16, len(items) // (4 * jobs))), jobs)
    return (result for chunk in map_chunks(_extract_chunk, chunks, jobs, *arguments) for result in chunk)


def _run_batched(items, todo, keys, extractor, preprocessing, cache, batch_size) -> Iterator[tuple[int, _SampleResult]]:
    """Batches of decoded images for a CNN; decoding of the next batch overlaps inference.

    ``keys`` holds the cache keys an earlier pass already computed (None where not), so a cache
    hit there needs no file read at all.
    """
    namespace = _namespace([extractor], preprocessing)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def load(index: int):
        item = items[index]
        try:
            known = keys[index] or item.known_key()
            cached = None if known is None else cache.get(namespace, known)
            if cached is not None:
                return index, known, cached, None, None, None
            data, digest, status = read_hashed(item.sample.path)
            key, seen = item.key(digest), None if status is None else (status, digest)
            cached = cache.get(namespace, key) if key != known else None
            if cached is not None:
                return index, key, cached, None, None, seen
            return index, key, None, extractor.prepare(item.image(data, preprocessing)), None, seen
        except ImageReadError as exc:
            return index, None, None, None, exc.cause, None

    with ThreadPoolExecutor(max_workers=max(2, min(8, resolve_jobs(None)))) as pool:
        submit_batch = lambda batch: [pool.submit(load, index) for index in batch]  # noqa: E731
        for futures in in_order(submit_batch, batches, ahead=2):
            loaded = [future.result() for future in futures]
            to_compute = [item for item in loaded if item[3] is not None]
            if to_compute:
                outputs = extractor.compute_batch([item[3] for item in to_compute])
                for (index, key, *_), vector in zip(to_compute, outputs):
                    cache.put(namespace, key, _finite(vector))
                fresh = {item[0]: _finite(v) for item, v in zip(to_compute, outputs)}
            else:
                fresh = {}
            for index, key, cached, image, error, seen in loaded:
                if error is not None:
                    yield index, _SampleResult(None, None, error=error)
                else:
                    vector = cached if cached is not None else fresh[index]
                    yield index, _SampleResult(key, [vector], computed=int(image is not None), seen=seen)
