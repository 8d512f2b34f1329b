"""What a file is, for ``bloodcli info``: a model file's manifest, or a dataset's classes, counts and image sizes.

Describing a model reads its manifest alone, so this module (re-exported by :mod:`bloodcli.api`)
starts without the estimator, extractor or image code: ``bloodcli info MODEL`` answers at once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from bloodcli.errors import ImageReadError
from bloodcli.learn.model_checks import read_manifest
from bloodcli.learn.models import describe

if TYPE_CHECKING:
    from bloodcli.learn.models import AnyModel


def dataset_info(source: str | Path, skip_errors: bool = True, check_images: bool = True) -> dict:
    """Classes, counts, image sizes and unreadable files of a dataset."""
    from bloodcli.io.datasets import load_dataset
    from bloodcli.io.images import decode_image, read_bytes

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


def model_info(path: str | Path | None, trained: AnyModel | None = None) -> dict:
    """What a model file records (:func:`bloodcli.learn.models.describe`), read from its manifest alone.

    ``trained``: the model of ``path`` already loaded, or a model never saved (``path`` None).
    """
    return describe(trained.manifest() if trained is not None else read_manifest(path), path)


def info(target: str | Path) -> dict:
    """:func:`model_info` of a model file, else :func:`dataset_info`."""
    path = Path(target)
    if path.is_file():
        with open(path, "rb") as handle:
            if handle.read(4) == b"PK\x03\x04":
                return model_info(path)
    return dataset_info(target)
