"""The batch runner behind ``bloodcli segment``: per-image outputs, resumable, parallel."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bloodcli.errors import ImageReadError, InputDataError
from bloodcli.io.files import atomic_write
from bloodcli.segmentation.scoring import ImageScore, find_truth, score_image, summarize
from bloodcli.segmentation.smear import Segmentation

CROP_MARGIN = 0.1
#: Finished-image records are written together, at most this many images or seconds of work at a time:
#: an interrupted run redoes at most that much.
RECORD_BATCH, RECORD_SECONDS = 16, 1.0


@dataclass
class SegmentRun:
    """What :func:`segment_files` did: per-image counts and scores, outputs and failures."""

    out_dir: Path
    counts: list[dict]  # one row per image: image, RBC, WBC, platelet
    n_objects: int
    scores: list[ImageScore]
    metrics: dict | None
    failures: list[tuple[str, str]]
    n_resumed: int = 0  # images whose finished outputs from an earlier, interrupted run were reused
    labelled: object | None = None  # with --labels: the manifest's LabelledCrops (segmentation.manifest)


@dataclass
class _ImageResult:
    image: str
    counts: dict
    rows: list[dict]
    score: ImageScore | None = None
    failure: str | None = None
    resumed: bool = False
    fingerprint: str | None = None  # of the image content and every setting: the key of its record
    record: str | None = None  # that record as one JSON line, serialised where the image was segmented (a worker)


def segment_files(
    paths: list[Path], out_dir: str | Path, method: str = "watershed", params=None, *, crops: bool = False,
    overlays: bool = False, voc_dir: str | Path | None = None, mask_dir: str | Path | None = None, jobs: int = 1,
    skip_errors: bool = False, progress=None, executor=None,
) -> SegmentRun:  # fmt: skip
    """Segment image files, writing label masks, tables (overlays, crops) to ``out_dir``.

    Writes ``labels/<stem>.png`` (16-bit ids), ``objects.csv``, ``counts.csv``, with ``overlays``
    ``overlays/<stem>.png`` and with ``crops`` ``crops/<class>/<stem>_<id>.png`` (a class-folder
    dataset). With ``voc_dir`` and/or ``mask_dir`` it also scores every image against the
    truth found by file stem and writes ``scores.csv`` and ``metrics.json``.

    Unreadable images raise :class:`ImageReadError`, or with ``skip_errors`` are listed in
    ``failures``. ``jobs > 1`` segments images in that many worker processes; an ``executor``
    (e.g. a Dask client) runs them there instead.

    Each finished image leaves a record in ``out_dir/.done/`` (after its files, in batches of
    :data:`RECORD_BATCH` images or :data:`RECORD_SECONDS`, each batch one atomically written file),
    keyed by the image content and every setting; a rerun after an interruption reuses those
    images and produces the same tables as an uninterrupted run. Per-image files are renamed into
    place whole but not synced to disk one by one (a killed run never leaves half a file; the
    tables at the end are synced).
    """
    from bloodcli.segmentation.smear import SegmentationParams, check_method

    params = params or SegmentationParams()
    check_method(method)
    out_dir = Path(out_dir)
    names = unique_names(paths)
    evaluate = voc_dir is not None or mask_dir is not None
    task = (out_dir, method, params, crops, overlays, voc_dir, mask_dir, evaluate)
    records = _Records(out_dir / ".done")
    results = []
    # Closed at once on an error: a pool's generator left to the garbage collector would stop a later call's pool.
    try:
        with contextlib.closing(_run(paths, names, [records.finished.get(n) for n in names], task, jobs, executor)) as run:
            for result in run:
                if result.failure is not None and not skip_errors:
                    raise ImageReadError(result.image, result.failure)
                results.append(result)
                records.add(names[len(results) - 1], result)
                if progress is not None:
                    progress(1, len(paths))
    finally:
        records.flush()  # the images finished so far survive an error or an interruption
    return _finish(out_dir, results, evaluate)


class _Records:
    """The records of finished images in ``folder``: read at the start, written in batches."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.finished: dict[str, dict] = {}  # name -> {"fingerprint", "result"}, the latest record of each
        for batch in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            try:
                lines = batch.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    record = json.loads(line)
                    self.finished[record["name"]] = record
                except (ValueError, KeyError, TypeError):
                    continue
        self.pending: list[str] = []
        self.since = time.monotonic()

    def add(self, name: str, result: "_ImageResult") -> None:
        if result.failure is None and not result.resumed:
            self.pending.append(result.record)
        if len(self.pending) >= RECORD_BATCH or time.monotonic() - self.since >= RECORD_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with atomic_write(self.folder / f"{time.time_ns()}.jsonl", "w", durable=False) as handle:
                handle.write("\n".join(self.pending) + "\n")
        self.pending, self.since = [], time.monotonic()


def is_segment_output(folder: Path) -> bool:
    """True for a folder 'bloodcli segment' wrote (its resume records, or its tables beside its label masks)."""
    return (folder / ".done").is_dir() or ((folder / "counts.csv").is_file() and (folder / "labels").is_dir())


def exclude_segment_outputs(paths: list[Path], input_dirs: list[Path], out_dir: Path) -> list[Path]:
    """``paths`` without the images inside ``out_dir``, or inside an earlier output folder under an input folder.

    Otherwise ``segment DIR -o DIR/seg`` run twice would segment its own masks, overlays and crops.
    """
    out_dir = out_dir.resolve()
    roots = {d.resolve() for d in input_dirs}
    kept = []
    for path in paths:
        resolved = path.resolve()
        below = list(itertools.takewhile(lambda folder: folder not in roots, resolved.parents))
        if out_dir not in resolved.parents and (len(below) == len(resolved.parents) or not any(map(is_segment_output, below))):
            kept.append(path)
    return kept


def unique_names(paths: list[Path]) -> list[str]:
    """Output name of each image: its stem, suffixed where two inputs share one."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _run(paths, names, finished, task, jobs: int, executor=None):
    """Per-image results in input order, from this process and ``jobs - 1`` workers, or from ``executor``."""
    from bloodcli.pipeline.parallel import in_order, in_worker, map_chunks

    items = [[item] for item in zip(paths, names, finished)]  # chunks of one image: smears take tens of milliseconds
    if executor is not None:
        submit = lambda chunk: executor.submit(in_worker, _segment_chunk, chunk, *task)  # noqa: E731
        return (result for future in in_order(submit, items, ahead=64) for result in future.result())
    return (result for chunk in map_chunks(_segment_chunk, items, min(jobs, len(paths)), *task) for result in chunk)


def _segment_chunk(items, *task) -> list[_ImageResult]:
    return [_segment_one(*item, *task) for item in items]


def _segment_one(path, name, finished, out_dir, method, params, crops, overlays, voc_dir, mask_dir, evaluate) -> _ImageResult:
    """Segment one file and write its outputs; input errors come back as ``failure``.

    Errors are returned, not raised, so one bad file in a worker process neither loses the
    other results nor has to survive pickling as an exception.
    """
    from bloodcli.io.images import content_hash, read_bytes

    try:
        data = read_bytes(path)
    except ImageReadError as exc:
        return _ImageResult(str(path), {}, [], failure=exc.cause)
    settings = [content_hash(data), method, params.to_dict(), crops, overlays, str(voc_dir), str(mask_dir), str(path)]
    fingerprint = content_hash(json.dumps(settings, sort_keys=True, default=str).encode())
    if finished is not None and finished.get("fingerprint") == fingerprint:
        return _resumed(finished["result"])
    result = _segment_and_write(path, data, name, out_dir, method, params, crops, overlays, voc_dir, mask_dir, evaluate)
    result.fingerprint = fingerprint
    if result.failure is None:  # serialised here: in a worker, not in the command that collects every result
        result.record = _record_line(name, result)
    return result


def _record_line(name: str, result: _ImageResult) -> str:
    """The resume record of a finished image as one JSON line (no newline); without the ``record`` field itself."""
    fields = asdict(result)
    del fields["record"]
    return json.dumps({"name": name, "fingerprint": result.fingerprint, "result": fields}, default=_plain_number)


def _resumed(stored: dict) -> _ImageResult:
    """The result an earlier run with identical inputs and settings recorded."""
    result = _ImageResult(**stored)
    result.score = ImageScore(**result.score) if result.score else None
    result.resumed = True
    return result


def _segment_and_write(path, data, name, out_dir, method, params, crops, overlays, voc_dir, mask_dir, evaluate) -> _ImageResult:
    from bloodcli.io.images import decode_image, write_image
    from bloodcli.segmentation.smear import draw_overlay, segment_image

    try:
        rgb = decode_image(data, path)
        seg = segment_image(rgb, method, params)
        score = score_image(seg, str(path), *find_truth(path, voc_dir, mask_dir)) if evaluate else None
    except ImageReadError as exc:  # the image itself, or its truth mask (then named in the cause)
        return _ImageResult(str(path), {}, [], failure=exc.cause if exc.path == str(path) else str(exc))
    except (InputDataError, OSError) as exc:
        return _ImageResult(str(path), {}, [], failure=str(exc).removeprefix(f"{path}: "))
    write_image(out_dir / "labels" / f"{name}.png", seg.labels, durable=False)
    if overlays:
        write_image(out_dir / "overlays" / f"{name}.png", draw_overlay(rgb, seg), durable=False)
    if crops:
        _write_crops(rgb, seg, out_dir / "crops", name)
    # Plain Python numbers, so a resumed run (read back from JSON) writes identical tables.
    rows = json.loads(json.dumps([{"image": str(path), **obj.to_row()} for obj in seg.objects], default=_plain_number))
    counts = {"image": str(path), **seg.counts, "rbc_diameter": round(seg.rbc_diameter, 2)}
    return _ImageResult(str(path), counts, rows, score)


def _plain_number(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_crops(rgb: np.ndarray, seg: Segmentation, crop_dir: Path, name: str) -> None:
    from bloodcli.io.datasets import _pad_box, crop
    from bloodcli.io.images import write_image

    for obj in seg.objects:
        write_image(crop_dir / obj.cls / f"{name}_{obj.object_id}.png", crop(rgb, _pad_box(obj.bbox, CROP_MARGIN)), durable=False)


def _finish(out_dir: Path, results: list[_ImageResult], evaluate: bool) -> SegmentRun:
    from bloodcli.imaging.morphology import REGION_PROPERTIES
    from bloodcli.segmentation.smear import CLASSES

    done = [r for r in results if r.failure is None]
    rows = [row for r in done for row in r.rows]
    columns = ["image", "object_id", "class", "xmin", "ymin", "xmax", "ymax", "centroid_x", "centroid_y", "area"]
    columns += [f"shape_{p}" for p in REGION_PROPERTIES if p != "area"]
    _write_csv(out_dir / "objects.csv", columns, rows)
    counts = [r.counts for r in done]
    _write_csv(out_dir / "counts.csv", ["image", *CLASSES, "rbc_diameter"], counts)
    scores = [r.score for r in done if r.score is not None]
    metrics = None
    if evaluate:
        metrics = summarize(scores)
        _write_csv(out_dir / "scores.csv", list(ImageScore.__dataclass_fields__), [s.to_dict() for s in scores])
        with atomic_write(out_dir / "metrics.json", "w") as handle:
            handle.write(json.dumps(metrics, indent=2) + "\n")
    failures = [(r.image, r.failure) for r in results if r.failure is not None]
    resumed = sum(r.resumed for r in done)
    return SegmentRun(out_dir, counts, len(rows), scores, metrics, failures, resumed)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
