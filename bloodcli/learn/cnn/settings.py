"""What a fine-tuned CNN is: backbone, input size, training schedule and on-the-fly augmentation.

The default augmentation recipe was fixed from the literature before any cross-lab score was
seen: strong HED stain jitter (Tellez et al. 2019, Medical Image Analysis 58: CNNs trained with
strong HED colour augmentation generalise across centres better than with stain normalisation),
with brightness/contrast, mild blur, rescaling, 90° rotations and flips. With ``-m cnn`` every
training image is augmented afresh in each epoch; ``--augment`` keys override the recipe and
``copies=0`` switches it off.

Examples
--------
>>> settings = CNNSettings(backbone="mobilenetv2", image_size=96, epochs=1)
>>> settings.augmentation.hed
0.1
>>> cnn_augmentation("hed=0.2,copies=0").enabled
False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from bloodcli.errors import UsageError
from bloodcli.features.deep import BACKBONES
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.learn.cnn.framing import FRAMING_RANGE, measure_framing
from bloodcli.settings import parse_like, split_pairs

#: Fixed before any cross-lab score was looked at (see the module docstring); copies=1 only means "on".
CNN_AUGMENTATION = Augmentation(copies=1, hed=0.1, brightness=0.1, contrast=0.2, blur=1.0, scale=0.1, rotate=True, flip=True)


def cnn_augmentation(spec: str | None) -> Augmentation:
    """``--augment`` for a CNN: the keys given replace those of :data:`CNN_AUGMENTATION`."""
    if spec is None:
        return CNN_AUGMENTATION
    names = [f.name for f in fields(Augmentation)]
    changes = {}
    for name, value in split_pairs(spec, "--augment item", f"NAME=VALUE with NAME one of {', '.join(names)}"):
        key = name.lower().replace("-", "_")
        if key not in names:
            raise UsageError(f"bad --augment item {name}={value!r}: expected NAME=VALUE with NAME one of {', '.join(names)}")
        changes[key] = parse_like(getattr(CNN_AUGMENTATION, key), value, f"--augment item {key}")
    return replace(CNN_AUGMENTATION, **changes)


@dataclass(frozen=True)
class CNNSettings:
    """How a CNN is built and trained.

    Parameters
    ----------
    backbone : str
        A :data:`~bloodcli.features.deep.BACKBONES` name.
    weights : str
        ``"imagenet"``, ``"none"`` (seeded random initialisation) or a no-top ``.h5`` file to start from.
    alpha : float
        Width multiplier (MobileNets); read from a weights file when it says.
    image_size : int
        Images are resized to ``image_size`` squared pixels (128-160 keeps a CPU usable).
    epochs : int
        Most epochs of the fine-tuning phase (early stopping may end it sooner).
    head_epochs : int
        Epochs of the first phase, training the new head on the frozen backbone.
    batch_size : int
    fine_tune_fraction : float
        Share of the backbone's layers, from the top, unfrozen in the second phase (batch norms stay frozen).
    head_lr, fine_tune_lr : float
        Adam learning rates of the two phases (the second decays on a cosine).
    patience : int
        Epochs without a lower validation loss before early stopping (best weights are kept).
    validation_fraction : float
        Share of the training part held out (group-aware) for early stopping.
    dropout : float
    augmentation : Augmentation
        On-the-fly augmentation (``copies=0``: off).
    framing : float or str
        Side of the square each image is cut to around its cell, in red-cell diameters estimated in the image
        (:mod:`bloodcli.learn.cnn.framing`); ``"auto"``: measured on the training images (a trained network
        records the number); ``"none"``: images as they are.
    seed : int
    """

    backbone: str = "mobilenetv2"
    weights: str = "imagenet"
    weights_sha256: str = ""
    alpha: float = 1.0
    image_size: int = 128
    epochs: int = 12
    head_epochs: int = 2
    batch_size: int = 32
    fine_tune_fraction: float = 1.0
    head_lr: float = 1e-3
    fine_tune_lr: float = 5e-4
    patience: int = 3
    validation_fraction: float = 0.15
    dropout: float = 0.2
    augmentation: Augmentation = field(default_factory=lambda: CNN_AUGMENTATION)
    framing: float | str = "auto"
    seed: int = 0

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise UsageError(f"unknown backbone {self.backbone!r} (choose from {', '.join(BACKBONES)})")
        if self.image_size < 32:
            raise UsageError(f"--image-size must be at least 32 pixels, got {self.image_size}")
        if self.epochs < 0 or self.head_epochs < 0 or self.epochs + self.head_epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        low, high = FRAMING_RANGE
        if self.framing not in ("auto", "none") and not (not isinstance(self.framing, str) and low <= self.framing <= high):
            raise UsageError(f"--framing must be auto, none or {low:g}-{high:g} red-cell diameters, "
                             f"got {self.framing!r}")
        if not 0 <= self.fine_tune_fraction <= 1 or not 0 < self.validation_fraction < 1 or not 0 <= self.dropout < 1:
            raise UsageError("fine_tune_fraction must be in [0, 1], validation_fraction in (0, 1) and dropout in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CNNSettings":
        """Settings recorded in a model file (unknown keys refused by the dataclass)."""
        values = dict(data)
        values["augmentation"] = Augmentation(**values.get("augmentation", {}))
        return cls(**values)

    def framed_for(self, samples) -> "CNNSettings":
        """These settings with ``framing="auto"`` measured on the training ``samples`` ("none" when no red cell is found)."""
        if self.framing != "auto":
            return self
        measured = measure_framing(samples)
        return replace(self, framing="none" if measured is None else measured)

    @property
    def framing_ratio(self) -> float | None:
        """The framing in red-cell diameters, once known (None: images as they are, or not measured yet)."""
        return None if isinstance(self.framing, str) else float(self.framing)

    def describe(self) -> str:
        alpha = f" alpha {self.alpha}" if BACKBONES[self.backbone].has_alpha else ""
        framed = f", framed to {self.framing_ratio:g} red-cell diameters" if self.framing_ratio else ""
        framed = ", images unframed" if self.framing == "none" else framed
        return f"fine-tuned {self.backbone}{alpha} at {self.image_size} px{framed}"
