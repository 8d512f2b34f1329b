"""What to compute, validated once at the boundary: the :class:`Plan` and its recorded form.

A :class:`Plan` says which extractors run with which parameters (deep weights included), how
images are preprocessed and augmented, which classifier is fitted and with which seed. The
command line and the Python API build one with :meth:`Plan.build`, which checks every name and
value before any image is read. :class:`FeatureSettings` is the part that determines feature
values (extractor specs and fitted preprocessing): it is what features files, model files and
cache fingerprints record, so ``predict`` recomputes exactly the training features.

Examples
--------
>>> plan = Plan.build("glcm,shape", ["glcm.levels=16"], classifier="rf")
>>> plan.names, plan.extractors[0].params["levels"], plan.classifier
(['glcm', 'shape'], 16, 'rf')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bloodcli.features import DEFAULT_FEATURES, build_extractors, extractors_from_specs, parse_feature_names, parse_feature_options
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.imaging.preprocessing import Preprocessing

if TYPE_CHECKING:  # extractor code loads when a plan builds extractors: reading settings (``info``) needs none
    from bloodcli.features.base import FeatureExtractor


@dataclass(frozen=True)
class FeatureSettings:
    """Everything needed to recompute identical features: extractor specs and (fitted) preprocessing."""

    extractors: tuple[dict, ...]
    preprocessing: Preprocessing = Preprocessing()

    @classmethod
    def of(cls, extractors: Sequence[FeatureExtractor], preprocessing: Preprocessing) -> "FeatureSettings":
        return cls(tuple(e.spec() for e in extractors), preprocessing)

    def to_dict(self) -> dict:
        return {"extractors": [dict(e) for e in self.extractors], "preprocessing": self.preprocessing.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSettings":
        return cls(tuple(data["extractors"]), Preprocessing.from_dict(data.get("preprocessing")))

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.extractors]

    def describe(self) -> str:
        return f"features {'+'.join(self.names)}; preprocessing {self.preprocessing.describe()}"


@dataclass(frozen=True)
class Plan:
    """What a run computes and fits.

    Parameters
    ----------
    extractors : tuple of FeatureExtractor
        Built and validated; their outputs are concatenated in this order.
    preprocessing : Preprocessing
        As given: references (stain, ``cell_diameter="auto"``) are fitted on training images later.
    augmentation : Augmentation or None
        Training-time copies; None when off.
    classifier : str
        A classifier registry name (checked by the workflows that fit, before extraction).
    seed : int
        Seed of splits, classifiers and augmentation draws.
    """

    extractors: tuple[FeatureExtractor, ...]
    preprocessing: Preprocessing = Preprocessing()
    augmentation: Augmentation | None = None
    classifier: str = "svm"
    seed: int = 0

    @classmethod
    def build(
        cls, features: str | Sequence[str] = DEFAULT_FEATURES, feature_options: Mapping | Sequence[str] | None = None, *,
        weights: str | None = None, preprocessing: Preprocessing = Preprocessing(),
        augmentation: Augmentation | None = None, classifier: str = "svm", seed: int = 0,
    ) -> "Plan":  # fmt: skip
        """Check and build a plan from command-line shaped values.

        ``feature_options`` are ``-F EXTRACTOR.PARAM=VALUE`` strings or ``{extractor: {param: value}}``;
        ``weights`` (``imagenet``, ``none`` or a local ``.h5``) applies to every deep extractor.
        """
        from bloodcli.features import deep

        options = parse_feature_options(feature_options)
        if weights is not None:
            options = deep.weights_options(parse_feature_names(features), options, weights)
        augmentation = augmentation if augmentation is not None and augmentation.enabled else None
        return cls(tuple(build_extractors(features, options)), preprocessing, augmentation, classifier.strip().lower(), seed)

    @classmethod
    def reproducing(cls, settings: FeatureSettings, weights: str | None = None) -> "Plan":
        """The plan that recomputes recorded features (a model's, a training table's).

        ``weights`` points deep extractors at another copy of their weights file; its checksum
        must match the recorded one.
        """
        from bloodcli.features import deep

        specs = settings.extractors if weights is None else deep.override_weights(settings.extractors, weights)
        return cls(tuple(extractors_from_specs(specs)), settings.preprocessing)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.extractors]
