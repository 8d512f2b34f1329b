"""``analyze``: segment smears, classify every white cell with a model, count per smear and for the batch.

The run has three resumable stages, each streaming over the smears:

1. segmentation (:func:`~bloodcli.segmentation.batch.segment_files`, into ``OUT/segmentation/``: label
   masks, overlays, ``objects.csv``, ``counts.csv``), which keeps a record per finished smear;
2. white-cell crops (``OUT/crops/<smear>/<object id>.png``), framed as the model's training crops
   (:mod:`bloodcli.analysis.framing`), deterministic, written atomically;
3. features and classes, through the feature cache (``featurize_for_model``), so a rerun after an
   interruption computes only what is missing and writes the same tables.

The tables (:mod:`bloodcli.analysis.outputs`) are written last, each atomically.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bloodcli.analysis.framing import Framing
from bloodcli.errors import ImageReadError, UsageError
from bloodcli.io.datasets import Dataset, Sample
from bloodcli.io.images import read_image, write_image
from bloodcli.learn.models import AnyModel, check_no_weights, is_cnn
from bloodcli.pipeline import data_profile
from bloodcli.pipeline.featurize import featurize_like
from bloodcli.pipeline.options import ExecutionOptions
from bloodcli.pipeline.parallel import compute_backend
from bloodcli.segmentation.batch import unique_names, segment_files

#: Default ``--min-confidence``: a white cell whose top class probability is below it is flagged for review.
MIN_CONFIDENCE = 0.5
SEGMENTATION_DIR, CROPS_DIR = "segmentation", "crops"


@dataclass
class Cell:
    """One white cell: where it is, its crop, its class and class probabilities."""

    smear: str
    name: str  # the smear's output name
    object_id: int
    box: tuple[int, int, int, int]
    crop: str  # path relative to the output folder
    label: str = ""
    probabilities: list[float] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        return max(self.probabilities) if self.probabilities else 0.0


@dataclass
class SmearResult:
    """Counts of one smear and its white cells."""

    smear: str
    name: str
    counts: dict[str, int]  # RBC, WBC, platelet, as segmented
    cells: list[Cell]


@dataclass
class Analysis:
    """What :func:`analyze_smears` found, ready for the tables and the report."""

    out_dir: Path
    model: str
    classes: list[str]
    min_confidence: float
    framing: Framing
    smears: list[SmearResult]
    failures: list[tuple[str, str]]
    warning: str | None = None
    n_resumed: int = 0


def check_min_confidence(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--min-confidence must be between 0 and 1, got {value}")


def _classify(model: AnyModel, dataset: Dataset, options: ExecutionOptions, weights: str | None):
    """Class probabilities of the crops of ``dataset``, the samples they are of, the crops skipped, and a line when
    many crops lie outside a feature model's envelope (:mod:`bloodcli.learn.novelty`)."""
    if is_cnn(model):
        check_no_weights(weights)
        data = model.load_images(dataset, options)
        return model.predict_proba(data.images), data.samples, data.failures, None
    table = featurize_like(model.settings, dataset, options, labelled=False, weights=weights)
    novelty = model.envelope.warning(table.values) if model.envelope is not None else None
    return model.predict_proba(table.values), table.samples, table.failures, novelty


def analyze_smears(paths: list[Path], model: AnyModel, out_dir: str | Path, method: str = "watershed", params=None, *,
                   min_confidence: float = MIN_CONFIDENCE, options: ExecutionOptions | None = None,
                   weights: str | None = None) -> Analysis:  # fmt: skip
    """Counts and the white-cell differential of each smear image in ``paths`` (see the module docstring).

    With ``options.scheduler``, segmentation and feature extraction each run on Dask, one after the other.
    """
    options = options or ExecutionOptions()
    check_min_confidence(min_confidence)
    out_dir = Path(out_dir)
    with compute_backend(options.scheduler) as client:
        run = segment_files(paths, out_dir / SEGMENTATION_DIR, method, params, overlays=True, jobs=options.workers,  # the report shows them
                            skip_errors=options.skip_errors, progress=options.progress, executor=client)  # fmt: skip
    frame = Framing.of(model.profile)
    names = dict(zip(map(str, paths), unique_names(paths)))
    smears = [SmearResult(row["image"], names[row["image"]], {k: int(row[k]) for k in ("RBC", "WBC", "platelet")}, [])
              for row in run.counts]  # fmt: skip
    cells = _crop_white_cells(out_dir, smears, frame)
    failures = list(run.failures)
    warning = None
    if cells:
        dataset = Dataset(_cell_samples(out_dir, cells, model), str(out_dir / CROPS_DIR), "files")
        probabilities, scored, skipped, novelty = _classify(model, dataset, replace(options, progress=None), weights)
        by_id = {s.id: row for row, s in enumerate(scored)}
        for cell, sample in zip(cells, dataset.samples):
            row = by_id.get(sample.id)
            if row is not None:
                cell.probabilities = [round(float(p), 6) for p in probabilities[row]]
                cell.label = model.classes[int(np.argmax(probabilities[row]))]
        failures += skipped
        warnings = [
            data_profile.input_warning(model.profile, data_profile.profile_samples(dataset.samples), "the white-cell crops")
            if model.profile is not None else None,
            novelty,  # crops resized alike, colour off: the image profile misses what the feature envelope sees
        ]  # fmt: skip
        warning = "; ".join(w for w in warnings if w) or None
    return Analysis(out_dir, model.name, list(model.classes), min_confidence, frame, smears, failures, warning, run.n_resumed)


def _cell_samples(out_dir: Path, cells: list[Cell], model: AnyModel) -> list[Sample]:
    """What the classifier reads of each cell: its crop, or, for a CNN that frames its inputs in red-cell diameters
    (:mod:`bloodcli.learn.cnn.framing`), the cell's box in the whole smear, framed as its training crops were."""
    if is_cnn(model) and model.settings.framing_ratio:
        return [Sample(Path(c.smear), group=c.name, box=c.box) for c in cells]
    return [Sample(out_dir / c.crop, group=c.name) for c in cells]


def _crop_white_cells(out_dir: Path, smears: list[SmearResult], frame: Framing) -> list[Cell]:
    """Write the crop of every segmented white cell; returns them in smear and object order."""
    by_smear: dict[str, list[dict]] = {}
    with open(out_dir / SEGMENTATION_DIR / "objects.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["class"] == "WBC":
                by_smear.setdefault(row["image"], []).append(row)
    cells = []
    for smear in smears:
        rows = by_smear.get(smear.smear, [])
        if not rows:
            continue
        try:
            rgb = read_image(smear.smear)
        except ImageReadError:  # segmented moments ago; a file replaced since is skipped like any unreadable one
            continue
        for row in rows:
            box = tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            relative = f"{CROPS_DIR}/{smear.name}/{row['object_id']}.png"
            centroid = (float(row["centroid_x"]), float(row["centroid_y"]))
            write_image(out_dir / relative, frame.crop(rgb, box, centroid, float(row["area"])))
            cell = Cell(smear.smear, smear.name, int(row["object_id"]), box, relative)
            smear.cells.append(cell)
            cells.append(cell)
    return cells
