"""Dataset loaders: every command reads its inputs through :func:`load_dataset`.

Supported layouts
-----------------
folder per class
    ``DIR/<class>/*.jpg`` (any supported image extension, nested folders allowed).
CSV manifest
    Columns ``path,label[,group][,xmin,ymin,xmax,ymax]``; paths are relative to the CSV.
    ``image``/``file``/``filename`` are accepted for ``path`` and ``class`` for ``label``.
Pascal VOC
    A folder with ``Annotations/*.xml`` (and ``JPEGImages/``) or XML files beside the images:
    one sample per box, cropped with a margin, labelled by the box class and grouped by source image.
files
    Single images, folders of images or glob patterns, without labels (for ``predict``).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from bloodcli.errors import DatasetError
from bloodcli.io.images import is_image_path

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sample:
    """One image (or one box of an image) with its optional label and group."""

    path: Path
    label: str | None = None
    group: str | None = None
    box: Box | None = None  # (xmin, ymin, xmax, ymax) crop, pixels, exclusive max

    @property
    def id(self) -> str:
        """A readable identifier: the path, plus the box when the sample is a crop."""
        return str(self.path) if self.box is None else f"{self.path}#{','.join(map(str, self.box))}"


@dataclass
class Dataset:
    """An ordered list of samples and where they came from."""

    samples: list[Sample]
    source: str
    kind: str
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, cause) skipped at load

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[str | None]:
        return [s.label for s in self.samples]

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples if s.label is not None})

    @property
    def groups(self) -> list[str] | None:
        """Group of each sample, or None when the dataset has no groups."""
        if all(s.group is None for s in self.samples):
            return None
        return [s.group if s.group is not None else s.id for s in self.samples]

    @property
    def is_labelled(self) -> bool:
        return bool(self.samples) and all(s.label is not None for s in self.samples)

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples if s.label is not None).items()))

    def subset(self, indices: Iterable[int]) -> "Dataset":
        return Dataset([self.samples[i] for i in indices], self.source, self.kind, list(self.problems))

    def require_classes(self, minimum: int = 2) -> None:
        """Raise :class:`DatasetError` unless the dataset is labelled with enough classes."""
        if not self.samples:
            raise DatasetError(f"{self.source}: dataset has no images")
        if not self.is_labelled:
            raise DatasetError(f"{self.source}: dataset has no labels (use a class-folder, CSV or VOC dataset)")
        if len(self.classes) < minimum:
            raise DatasetError(
                f"{self.source}: dataset has {len(self.classes)} class ({', '.join(self.classes)}); "
                f"at least {minimum} are needed"
            )


class SampleArrays:
    """``labels`` and ``groups`` of a ``samples`` list as object arrays: the rows of a table of features or of
    pixels, as splits and classifiers take them."""

    samples: list[Sample]

    @property
    def labels(self):
        import numpy as np

        return np.array([s.label for s in self.samples], dtype=object)

    @property
    def groups(self):
        import numpy as np

        groups = Dataset(self.samples, "", "").groups
        return None if groups is None else np.array(groups, dtype=object)


def load_dataset(
    source: str | os.PathLike,
    *,
    skip_errors: bool = False,
    box_margin: float = 0.1,
    voc_classes: Sequence[str] | None = None,
) -> Dataset:
    """Load a labelled dataset from a class-folder tree, CSV manifest or VOC folder.

    Parameters
    ----------
    source : path
        Folder or CSV file.
    skip_errors : bool
        Drop unusable entries (missing files, empty class folders, malformed XML) and record
        them in ``Dataset.problems`` instead of raising.
    box_margin : float
        Margin added around VOC/CSV boxes, as a fraction of the box size.
    voc_classes : sequence of str, optional
        Keep only these VOC box classes.
    """
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return _load_csv(path, skip_errors, box_margin)
        if is_image_path(path):
            return Dataset([Sample(path)], str(path), "files")
        raise DatasetError(f"{path}: not a dataset (expected a folder, a .csv manifest or an image)")
    if _voc_annotation_dir(path) is not None:
        return _load_voc(path, skip_errors, box_margin, voc_classes)
    return _load_class_folders(path, skip_errors)


def load_inputs(inputs: Sequence[str | os.PathLike], *, skip_errors: bool = False) -> Dataset:
    """Load images to predict: files, folders (searched recursively), globs, or one dataset.

    A single CSV manifest or VOC folder is loaded as a dataset so boxes are honoured.
    """
    if len(inputs) == 1:
        only = Path(inputs[0])
        if only.is_file() and only.suffix.lower() == ".csv" or only.is_dir() and _voc_annotation_dir(only):
            return load_dataset(only, skip_errors=skip_errors)
    samples: list[Sample] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        matches = _expand_input(str(item))
        if not matches:
            if not skip_errors:
                raise DatasetError(f"{item}: no such image, folder or matching file")
            problems.append((str(item), "no such image, folder or matching file"))
        samples.extend(Sample(p) for p in matches)
    if not samples and not problems:
        raise DatasetError("no input images given")
    return Dataset(samples, " ".join(map(str, inputs)), "files", problems)


def _expand_input(item: str) -> list[Path]:
    path = Path(item)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p))
    if path.is_file():
        return [path]
    if glob.has_magic(item):
        return sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
    return []


def _load_class_folders(root: Path, skip_errors: bool) -> Dataset:
    samples: list[Sample] = []
    problems: list[tuple[str, str]] = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if is_image_path(p)]
        hint = " (images without class folders: use them with predict)" if loose else ""
        raise DatasetError(f"{root}: no class folders found{hint}")
    for class_dir in class_dirs:
        images = sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_path(p))
        if not images:
            if not skip_errors:
                raise DatasetError(f"{class_dir}: class folder '{class_dir.name}' has no images")
            problems.append((str(class_dir), "class folder has no images"))
        samples.extend(Sample(p, class_dir.name) for p in images)
    if not samples:
        raise DatasetError(f"{root}: dataset has no images")
    return Dataset(samples, str(root), "folder", problems)


_PATH_COLUMNS = ("path", "image", "file", "filename")
_LABEL_COLUMNS = ("label", "class")
_BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")


def _load_csv(csv_path: Path, skip_errors: bool, box_margin: float) -> Dataset:
    rows, columns = _read_manifest(csv_path)
    path_col = next((c for c in _PATH_COLUMNS if c in columns), None)
    label_col = next((c for c in _LABEL_COLUMNS if c in columns), None)
    if path_col is None:
        raise DatasetError(f"{csv_path}: manifest needs a 'path' column (found: {', '.join(columns) or 'none'})")
    has_box = all(c in columns for c in _BOX_COLUMNS)
    samples: list[Sample] = []
    problems: list[tuple[str, str]] = []
    for line_no, row in enumerate(rows, start=2):
        try:
            samples.append(_manifest_sample(csv_path, row, path_col, label_col, has_box, box_margin))
        except DatasetError as exc:
            if not skip_errors:
                raise DatasetError(f"{csv_path}:{line_no}: {exc}") from None
            problems.append((f"{csv_path}:{line_no}", str(exc)))
    if not samples:
        raise DatasetError(f"{csv_path}: manifest lists no usable images")
    return Dataset(samples, str(csv_path), "csv", problems)


def _read_manifest(csv_path: Path) -> tuple[list[dict[str, str]], list[str]]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError:
        raise DatasetError(f"{csv_path}: manifest is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))  # not splitlines(): a quoted field may hold a newline
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    rows = [
        {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        for row in reader
        if any((v or "").strip() for v in row.values() if isinstance(v, str))
    ]
    return rows, columns


def _manifest_sample(csv_path, row, path_col, label_col, has_box, box_margin) -> Sample:
    relative = row.get(path_col, "")
    if not relative:
        raise DatasetError("empty path")
    image_path = (csv_path.parent / relative) if not os.path.isabs(relative) else Path(relative)
    if not image_path.is_file():
        raise DatasetError(f"{image_path}: file not found")
    label = row.get(label_col) if label_col else None
    group = row.get("group") or None
    box = None
    if has_box:
        try:
            raw = _box_coordinates(row[c] for c in _BOX_COLUMNS)
        except (ValueError, OverflowError):
            raise DatasetError(f"{image_path}: box coordinates are not finite numbers") from None
        box = _pad_box(raw, box_margin)
        group = group or str(image_path)
    return Sample(image_path, label or None, group, box)


def _box_coordinates(texts) -> Box:
    """Pixel coordinates from text; OverflowError for inf (and 1e400), ValueError for nan or text."""
    return tuple(int(round(float(text))) for text in texts)


def _voc_annotation_dir(root: Path) -> Path | None:
    annotations = root / "Annotations"
    if annotations.is_dir() and any(annotations.glob("*.xml")):
        return annotations
    if any(root.glob("*.xml")):
        return root
    return None


def _load_voc(root: Path, skip_errors: bool, box_margin: float, voc_classes) -> Dataset:
    annotation_dir = _voc_annotation_dir(root)
    samples: list[Sample] = []
    problems: list[tuple[str, str]] = []
    for xml_path in sorted(annotation_dir.glob("*.xml")):
        try:
            samples.extend(_voc_samples(xml_path, root, box_margin, voc_classes))
        except DatasetError as exc:
            if not skip_errors:
                raise
            problems.append((str(xml_path), str(exc).split(": ", 1)[-1]))
    if not samples:
        raise DatasetError(f"{root}: VOC annotations contain no usable boxes")
    return Dataset(samples, str(root), "voc", problems)


def read_voc_boxes(xml_path: Path) -> tuple[str, list[tuple[str, Box]]]:
    """Parse a Pascal VOC file into its image file name and ``(class, box)`` pairs.

    Degenerate boxes (zero width or height) are dropped.
    """
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{xml_path}: malformed VOC XML ({exc})") from None
    root = tree.getroot()
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise DatasetError(f"{xml_path}: VOC XML has no <filename>")
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if not name or bnd is None:
            raise DatasetError(f"{xml_path}: <object> without <name> or <bndbox>")
        try:
            box = _box_coordinates(bnd.findtext(c) for c in _BOX_COLUMNS)
        except (TypeError, ValueError, OverflowError):
            raise DatasetError(f"{xml_path}: box coordinates are missing or not finite numbers") from None
        if box[2] > box[0] and box[3] > box[1]:
            boxes.append((name, box))
    return filename, boxes


def _voc_samples(xml_path: Path, root: Path, box_margin: float, voc_classes) -> list[Sample]:
    filename, boxes = read_voc_boxes(xml_path)
    image_path = _find_voc_image(root, xml_path, filename)
    wanted = set(voc_classes) if voc_classes else None
    return [
        Sample(image_path, name, image_path.stem, _pad_box(box, box_margin))
        for name, box in boxes
        if wanted is None or name in wanted
    ]


def _find_voc_image(root: Path, xml_path: Path, filename: str) -> Path:
    candidates = [root / "JPEGImages" / filename, xml_path.parent / filename, root / filename]
    stem = Path(filename).stem or xml_path.stem
    candidates += [root / "JPEGImages" / f"{stem}{ext}" for ext in (".jpg", ".png", ".jpeg", ".bmp", ".tif")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{xml_path}: image '{filename}' not found")


def _pad_box(box: Box, margin: float) -> Box:
    xmin, ymin, xmax, ymax = box
    if xmax <= xmin or ymax <= ymin:
        raise DatasetError(f"degenerate box {box}")
    pad_x = int(round((xmax - xmin) * margin))
    pad_y = int(round((ymax - ymin) * margin))
    return (max(0, xmin - pad_x), max(0, ymin - pad_y), xmax + pad_x, ymax + pad_y)


def crop(image, box: Box | None):
    """Crop an RGB array to ``box`` (clipped to the image); ``None`` returns the image."""
    if box is None:
        return image
    xmin, ymin, xmax, ymax = box
    height, width = image.shape[:2]
    xmin, xmax = max(0, min(xmin, width - 1)), max(1, min(xmax, width))
    ymin, ymax = max(0, min(ymin, height - 1)), max(1, min(ymax, height))
    return image[ymin:ymax, xmin:xmax]
