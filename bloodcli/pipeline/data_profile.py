"""What a model's training images looked like, and whether new inputs look alike.

A model file records a *training profile*: over up to :data:`PROFILE_IMAGES` evenly spaced training
images, the 5th, 50th and 95th percentiles of image height and width, of the diameter of the cell
nearest the centre (the single-cell mask classical features use), of that diameter relative to
the image (how the crops are framed) and of each colour channel's mean. ``predict``, ``evaluate``
and ``analyze`` profile their inputs the same way and warn when the inputs' median falls far
outside the training range: a model trained on single-cell crops given whole smears, images of
another magnification, or another stain, answers confidently and wrongly.

Tolerances (:data:`SIZE_TOLERANCE`, :data:`COLOUR_TOLERANCE`) are set beyond the spread seen between
images of one lab (PBC crops, BCCD crops and smears; see ``benchmarks/input_profile.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bloodcli.errors import ImageReadError
from bloodcli.io.datasets import Sample, crop
from bloodcli.io.images import decode_image, read_bytes

#: Images profiled at most (evenly spaced), in training and on inputs: the profile stays cheap.
PROFILE_IMAGES = 100
PROFILE_FORMAT = 1
#: Lengths (pixels) and ratios: an input median beyond [p5 / tolerance, p95 x tolerance] is out of range.
SIZE_TOLERANCE = 1.3
#: Channel means (0-255): an input median beyond [p5 - tolerance, p95 + tolerance] is out of range.
COLOUR_TOLERANCE = 20.0
#: Quantity -> (description, kind): "size" quantities are compared as ratios, "colour" ones as differences.
QUANTITIES = {
    "height": ("image height (px)", "size"),
    "width": ("image width (px)", "size"),
    "cell_diameter": ("central cell diameter (px)", "size"),
    "cell_share": ("cell diameter / shorter image side", "size"),
    "red": ("mean red", "colour"),
    "green": ("mean green", "colour"),
    "blue": ("mean blue", "colour"),
}


def measure_image(rgb: np.ndarray) -> dict[str, float]:
    """The profiled quantities of one image (cell quantities are NaN when it has no stained cell)."""
    from bloodcli.imaging.stain import cell_diameter

    height, width = rgb.shape[:2]
    diameter = cell_diameter(rgb) or float("nan")
    means = rgb.reshape(-1, 3).mean(axis=0)
    return {"height": float(height), "width": float(width), "cell_diameter": diameter,
            "cell_share": diameter / min(height, width), "red": float(means[0]), "green": float(means[1]),
            "blue": float(means[2])}  # fmt: skip


def profile_images(images) -> dict | None:
    """The profile of RGB images (an iterable); None when there are none."""
    rows = [measure_image(image) for image in images]
    if not rows:
        return None
    profile: dict = {"format": PROFILE_FORMAT, "n_images": len(rows)}
    for name in QUANTITIES:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        profile[name] = [round(float(v), 3) for v in np.percentile(values, [5, 50, 95])] if len(values) else None
    return profile


def profile_samples(samples: list[Sample], limit: int = PROFILE_IMAGES) -> dict | None:
    """The profile of up to ``limit`` evenly spaced samples (their crops); unreadable ones are left out."""
    step = max(1, -(-len(samples) // limit))
    return profile_images(image for image in map(_read, samples[::step]) if image is not None)


def _read(sample: Sample) -> np.ndarray | None:
    try:
        image = crop(decode_image(read_bytes(sample.path), sample.path), sample.box)
    except (ImageReadError, OSError):
        return None
    return image if min(image.shape[:2]) >= 2 else None


@dataclass(frozen=True)
class Deviation:
    """One quantity whose input median lies far outside the training 5-95 % range (``low`` to ``high``)."""

    quantity: str
    value: float
    low: float
    high: float

    def describe(self) -> str:
        return f"{QUANTITIES[self.quantity][0]} {self.value:.4g} (training {self.low:.4g}-{self.high:.4g})"


def deviations(training: dict | None, inputs: dict | None) -> list[Deviation]:
    """Quantities whose input median is far outside the training 5-95 % range, most deviant first."""
    if not training or not inputs:
        return []
    found = []
    for name, (_, kind) in QUANTITIES.items():
        if not training.get(name) or not inputs.get(name):
            continue
        low, _, high = training[name]
        value = inputs[name][1]
        if kind == "size":
            excess = max(low / SIZE_TOLERANCE / value if value > 0 else np.inf, value / (high * SIZE_TOLERANCE) if high > 0 else np.inf)
        else:
            excess = 1.0 + max(low - COLOUR_TOLERANCE - value, value - high - COLOUR_TOLERANCE) / COLOUR_TOLERANCE
        if excess > 1.0:
            found.append((excess, Deviation(name, value, low, high)))
    return [d for _, d in sorted(found, key=lambda item: -item[0])]


def input_warning(training: dict | None, inputs: dict | None, what: str = "the inputs") -> str | None:
    """One line saying how the inputs differ from the training images, or None when they look alike."""
    found = deviations(training, inputs)
    if not found:
        return None
    details = "; ".join(d.describe() for d in found)
    return f"{what} look unlike the model's training images ({details}): predictions may be wrong"


def framing(profile: dict | None) -> tuple[float, float] | None:
    """Crop height and width per cell diameter in the training images (median), or None when unknown."""
    if not profile or not profile.get("cell_diameter") or not profile.get("height"):
        return None
    diameter = profile["cell_diameter"][1]
    return (profile["height"][1] / diameter, profile["width"][1] / diameter) if diameter > 0 else None
