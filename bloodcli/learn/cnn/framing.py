"""Cells framed alike in every lab: a window of a fixed number of red-cell diameters around each cell.

One lab crops a white cell as a 360 px square with the cell in its middle third, another marks it with
a tight box on a 640 px smear, a third images at twice the magnification. A network that saw only the
first kind calls a cell that fills the frame "the biggest class". So every image the network fits or
predicts on is first cut to a square of ``framing`` typical red-cell diameters around the cell (the
image's centre, or the box's), then resized to the network input: the red cells around it become the
ruler, so magnification, camera and crop all drop out, while a large monocyte still looks larger than
a small lymphocyte (framing by the white cell's own size would erase that).

The red-cell diameter is estimated in each image by a granulometry
(:func:`bloodcli.segmentation.scale.estimate_rbc_diameter`: the whole smear when the sample is a box
of it). ``framing="auto"`` is measured on the training images, label-free, as the median of each
image's (box's) side over its red-cell diameter, so the training crops keep their framing and
anything else is framed like them. No setting here was chosen by looking at a score.
"""

from __future__ import annotations

import numpy as np

from bloodcli.imaging.stain import centred_window
from bloodcli.io.datasets import Sample, crop
from bloodcli.io.images import decode_image, read_bytes
from bloodcli.segmentation.scale import estimate_rbc_diameter

#: Training images whose geometry sets the framing (evenly spaced; the median settles long before).
FRAMING_IMAGES = 200
#: Framings accepted, in red-cell diameters (a window narrower than one red cell frames nothing).
FRAMING_RANGE = (1.0, 20.0)


def measure_framing(samples: list[Sample], limit: int = FRAMING_IMAGES) -> float | None:
    """Median side of the training images (or their boxes) in red-cell diameters; None when no red cell is found."""
    step = max(1, len(samples) // limit)
    ratios = []
    for sample in samples[::step][:limit]:
        image = decode_image(read_bytes(sample.path), sample.path)
        diameter = estimate_rbc_diameter(image)
        if diameter:
            region = crop(image, sample.box)
            ratios.append(np.sqrt(region.shape[0] * region.shape[1]) / diameter)
    return round(float(np.clip(np.median(ratios), *FRAMING_RANGE)), 3) if ratios else None


def frame(image: np.ndarray, box, framing: float, rbc_diameter: float | None) -> np.ndarray:
    """The square of ``framing`` x ``rbc_diameter`` pixels centred on ``box`` (or the image), mirrored beyond the
    image; the box (or image) as it is when no red cell was found in the image."""
    if not rbc_diameter:
        return crop(image, box)
    if box is None:
        cy, cx = image.shape[0] // 2, image.shape[1] // 2
    else:
        cy, cx = (box[1] + box[3]) // 2, (box[0] + box[2]) // 2
    half = max(2, round(framing * rbc_diameter / 2))
    # Only the window's own part of the image is padded, never a whole (possibly huge) smear.
    top, left = max(0, cy - half), max(0, cx - half)
    return centred_window(image[top : cy + half, left : cx + half], cy - top, cx - left, half, half)
