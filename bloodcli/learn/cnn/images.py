"""The pixels a CNN trains and predicts on: each sample decoded, cropped, preprocessed and resized.

Images are decoded as for feature extraction (:func:`bloodcli.pipeline.runner.load_sample_image`,
so crop boxes and preprocessing options apply alike), or first framed in red-cell diameters
(:mod:`bloodcli.learn.cnn.framing`), then resized to the network's square input with area
averaging when shrinking. The array of a whole dataset is ``n * size² * 3`` bytes
(3,200 crops at 128 px: 157 MB).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from bloodcli.errors import ImageReadError
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.datasets import Dataset, Sample, SampleArrays
from bloodcli.io.images import content_hash, decode_image, read_bytes
from bloodcli.learn.cnn.framing import frame
from bloodcli.pipeline.options import ProgressCallback
from bloodcli.pipeline.runner import load_sample_image, sample_key
from bloodcli.segmentation.scale import estimate_rbc_diameter


def square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size`` x ``size`` (area averaging when shrinking avoids aliasing)."""
    shrinking = image.shape[0] * image.shape[1] > size * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def load_images(samples: list[Sample], size: int, preprocessing: Preprocessing = Preprocessing(), *, framing: float | None = None,
                skip_errors: bool = False, progress: ProgressCallback | None = None, threads: int = 2):  # fmt: skip
    """``(images uint8 (n, size, size, 3), kept sample indices, content keys, failures [(id, cause)])``.

    ``framing``: cut each image to that many red-cell diameters around its cell first. An unreadable image
    stops the run unless ``skip_errors``; then it is left out and listed.
    """
    rbc_diameters: dict[str, float | None] = {}  # per image file: the boxes of one smear share its estimate

    def framed(data: bytes, sample: Sample) -> np.ndarray:
        image = decode_image(data, sample.path)
        key = str(sample.path)
        if key not in rbc_diameters:
            rbc_diameters[key] = estimate_rbc_diameter(image)
        return preprocessing.apply(frame(image, sample.box, framing, rbc_diameters[key]))

    def load(sample: Sample):
        try:
            data = read_bytes(sample.path)
            image = framed(data, sample) if framing else load_sample_image(data, sample, preprocessing)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            return square(image, size), sample_key(content_hash(data), sample), None
        except ImageReadError as exc:
            if not skip_errors:
                raise
            return None, None, exc.cause

    images, kept, keys, failures = [], [], [], []
    with ThreadPoolExecutor(threads) as pool:
        for index, (image, key, error) in enumerate(pool.map(load, samples)):
            if progress is not None:
                progress(1, len(samples))
            if error is not None:
                failures.append((samples[index].id, error))
                continue
            images.append(image)
            kept.append(index)
            keys.append(key)
    array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return array, np.asarray(kept, dtype=np.int64), keys, failures


@dataclass
class ImageSet(SampleArrays):
    """Samples with their pixels: what a CNN fits and is scored on (the counterpart of a feature table)."""

    samples: list[Sample]
    images: np.ndarray  # uint8 (n, size, size, 3)
    keys: list[str]  # content keys, to tell training images in a test set
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def values(self) -> np.ndarray:
        """The pixels, under the name a feature table gives its rows (so held-out tests treat both alike)."""
        return self.images

    @property
    def content_keys(self) -> list[str]:
        return self.keys

    def subset(self, rows) -> "ImageSet":
        rows = np.asarray(rows, dtype=np.int64)
        return ImageSet([self.samples[i] for i in rows], self.images[rows], [self.keys[i] for i in rows], [])

    @classmethod
    def load(cls, dataset: Dataset, size: int, preprocessing: Preprocessing = Preprocessing(), *, framing: float | None = None,
             skip_errors: bool = False, progress: ProgressCallback | None = None) -> "ImageSet":  # fmt: skip
        images, kept, keys, failures = load_images(dataset.samples, size, preprocessing, framing=framing, skip_errors=skip_errors,
                                                   progress=progress)  # fmt: skip
        return cls([dataset.samples[i] for i in kept], images, keys, list(dataset.problems) + failures)
