"""Training-time stain, colour and geometry augmentation, so models survive a change of lab.

Each training image may get ``copies`` augmented copies: HED stain jitter (Tellez et al., 2018),
brightness and contrast, Gaussian blur, rescaling, rotation by multiples of 90° and mirroring.
Copies go through the same extraction pipeline (crop, augment, preprocess, extract, cache) as
the originals, but they are training rows only: evaluation folds and test sets never see them
(:func:`bloodcli.evaluation.expand_split`), and ``predict`` never augments.

The random draws of copy ``k`` of an image depend only on the seed, the image's content key and
``k``, so a rerun gives identical features and finds every copy in the feature cache.

Examples
--------
>>> augmentation = Augmentation.from_string("copies=4,hed=0.08,flip=false")
>>> augmentation.copies, augmentation.hed, augmentation.flip
(4, 0.08, False)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from bloodcli.errors import UsageError
from bloodcli.imaging.preprocessing import check_range, resize_longer_side
from bloodcli.settings import settings_from_pairs

if TYPE_CHECKING:  # NumPy and OpenCV load in the functions that touch pixels: the settings load with the CLI's help
    import numpy as np

#: More copies than this multiply extraction time without adding variety the jitter ranges do not already give.
MAX_COPIES = 100


@dataclass(frozen=True)
class Augmentation:
    """Settings of training-time augmentation (``copies=0``: off).

    Parameters
    ----------
    copies : int
        Augmented copies per training image.
    hed : float
        HED stain jitter strength ``h``: each stain amount ``x`` (optical density deconvolved with
        scikit-image's HED vectors) becomes ``x * alpha + beta``, ``alpha ~ U(1 - h, 1 + h)``,
        ``beta ~ U(-h, h)``.
    brightness : float
        Brightness shift ``~ U(-b, b)``, a fraction of the full intensity range.
    contrast : float
        Contrast factor ``~ U(1 - c, 1 + c)`` around the image mean.
    blur : float
        Largest Gaussian blur sigma in pixels; sigma ``~ U(0, blur)``.
    scale : float
        Rescale factor ``~ U(1 - s, 1 + s)``.
    rotate : bool
        Rotate by a random multiple of 90°.
    flip : bool
        Mirror left-right with probability 1/2.
    seed : int
        Seed of the random draws (combined with each image's content key and copy index).
    """

    copies: int = 0
    hed: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    blur: float = 1.0
    scale: float = 0.1
    rotate: bool = True
    flip: bool = True
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.copies <= MAX_COPIES or not 0 <= self.seed < 2**32:
            raise UsageError(f"--augment copies must be from 0 to {MAX_COPIES} and seed from 0 to 2**32-1")
        for name in ("hed", "contrast", "scale"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"--augment {name} must be in [0, 1), got {getattr(self, name)}")
        check_range("--augment brightness", self.brightness, 0, 1)
        check_range("--augment blur (max sigma, px)", self.blur, 0, 20)

    @classmethod
    def from_string(cls, spec: str | None) -> Augmentation:
        """Parse ``"copies=4,hed=0.08,flip=false"``; keys left out keep their defaults."""
        return settings_from_pairs(cls, spec, "--augment item")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return self.copies > 0

    def describe(self) -> str:
        """The settings in words, for logs and protocols."""
        if not self.enabled:
            return "no augmentation"
        geometry = [name for name in ("rotate", "flip") if getattr(self, name)]
        return (f"{self.copies} augmented copies per training image (hed {self.hed}, brightness {self.brightness}, "
                f"contrast {self.contrast}, blur <= {self.blur} px, scale ±{self.scale}"
                f"{''.join(', ' + name for name in geometry)}; seed {self.seed})")  # fmt: skip

    def fingerprint(self) -> str:
        """Hash of every setting but ``copies``: copy k is the same whatever the number of copies."""
        settings = {k: v for k, v in self.to_dict().items() if k != "copies"}
        return hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=8).hexdigest()

    def copy_key(self, key: str, copy: int) -> str:
        """Cache key of copy ``copy`` of the image whose key is ``key`` (never equal to an original's)."""
        return f"{key}-aug{self.fingerprint()}-{copy}"

    def rng(self, key: str, copy: int) -> np.random.Generator:
        """The random generator of copy ``copy`` of the image with content key ``key``."""
        import numpy as np

        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng([self.seed, digest, copy])

    def apply(self, rgb: np.ndarray, key: str, copy: int) -> np.ndarray:
        """Copy ``copy`` of the image ``rgb`` whose content key is ``key``."""
        return augment(rgb, self.rng(key, copy), self)


def augment(rgb: np.ndarray, rng: np.random.Generator, augmentation: Augmentation) -> np.ndarray:
    """One random variant of an RGB ``uint8`` image.

    Geometry first (rotation, mirroring, rescaling), then colour (HED jitter, brightness and
    contrast), then blur. A strength of 0 (or ``False``) skips that step, so with every step off
    the image is returned unchanged.
    """
    import cv2
    import numpy as np

    a = augmentation
    image = rgb
    if a.rotate:
        image = np.rot90(image, int(rng.integers(4)))
    if a.flip and rng.random() < 0.5:
        image = image[:, ::-1]
    image = np.ascontiguousarray(image)  # OpenCV needs contiguous arrays
    if a.scale:
        image = resize_longer_side(image, max(2, round(max(image.shape[:2]) * rng.uniform(1 - a.scale, 1 + a.scale))))
    if a.hed:
        image = hed_jitter(image, rng, a.hed)
    if a.brightness or a.contrast:
        image = brightness_contrast(image, rng.uniform(-a.brightness, a.brightness), rng.uniform(1 - a.contrast, 1 + a.contrast))
    if a.blur:
        image = cv2.GaussianBlur(image, (0, 0), max(rng.uniform(0, a.blur), 1e-3))  # sigma 0 is an OpenCV error
    return image


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Tellez et al. (2018) stain jitter: ``x * alpha + beta`` per haematoxylin, eosin and DAB amount.

    The amounts come from colour deconvolution of the optical density with scikit-image's HED
    stain vectors. :func:`skimage.color.rgb2hed` itself is not used: it clips negative amounts
    (its round trip alone moves pixels by several levels) and divides the density by ln(10^6),
    which would make ``beta = 0.05`` darken blank background by half.
    """
    import numpy as np
    from skimage.color import hed_from_rgb, rgb_from_hed

    from bloodcli.imaging.stain import optical_density

    stains = optical_density(rgb) @ hed_from_rgb  # (rgb + 1) / 256: black has a finite density; the round trip is exact
    alpha = rng.uniform(1 - strength, 1 + strength, 3)
    beta = rng.uniform(-strength, strength, 3)
    return _to_uint8(256.0 * np.exp(-((stains * alpha + beta) @ rgb_from_hed)) - 1.0)


def brightness_contrast(rgb: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Scale intensities by ``contrast`` around the image mean, then shift by ``brightness`` (of the range)."""
    import numpy as np

    image = rgb.astype(np.float32)
    mean = image.mean()
    return _to_uint8((image - mean) * contrast + mean + 255.0 * brightness)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


__all__ = ["Augmentation", "augment", "brightness_contrast", "hed_jitter"]
