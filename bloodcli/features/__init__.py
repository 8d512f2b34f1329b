"""Feature extractors: a name -> class registry behind one extraction facade.

Adding an extractor is one entry in :data:`EXTRACTORS` (a :class:`FeatureExtractor` subclass).

Examples
--------
>>> from bloodcli.features import build_extractors, extract_features
>>> extractors = build_extractors("glcm,shape,color")
>>> table = extract_features(dataset, extractors)          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bloodcli.errors import ModelFileError, UsageError
from bloodcli.features.base import CellImage, FeatureExtractor
from bloodcli.features.color import ColorExtractor
from bloodcli.features.deep import (
    EfficientNetB0Extractor, MobileNetExtractor, MobileNetV2Extractor, ResNet50Extractor, VGG16Extractor, VGG19Extractor,
)  # fmt: skip
from bloodcli.features.extraction import FeatureSettings, FeatureTable, extract_features
from bloodcli.features.shape import ShapeExtractor
from bloodcli.features.texture import GLCMExtractor

EXTRACTORS: dict[str, type[FeatureExtractor]] = {
    "glcm": GLCMExtractor,
    "shape": ShapeExtractor,
    "color": ColorExtractor,
    "resnet50": ResNet50Extractor,  # the default deep backbone
    "mobilenetv2": MobileNetV2Extractor,
    "mobilenet": MobileNetExtractor,
    "vgg16": VGG16Extractor,
    "vgg19": VGG19Extractor,
    "efficientnetb0": EfficientNetB0Extractor,
}

DEFAULT_FEATURES = "glcm,shape,color"
DEFAULT_DEEP_FEATURES = "resnet50"


def parse_feature_names(spec: str | Sequence[str]) -> list[str]:
    """Split ``"glcm,shape+color"`` into known extractor names, in order, without repeats."""
    items = spec.replace("+", ",").split(",") if isinstance(spec, str) else list(spec)
    names = list(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        raise UsageError(f"unknown feature extractor(s): {', '.join(unknown)} (available: {', '.join(EXTRACTORS)})")
    if not names:
        raise UsageError("no feature extractors selected")
    return names


def parse_feature_options(options: Sequence[str]) -> dict[str, dict[str, str]]:
    """Parse ``["glcm.levels=16", "color.bins=8"]`` into ``{"glcm": {"levels": "16"}, ...}``."""
    parsed: dict[str, dict[str, str]] = {}
    for option in options:
        name, _, value = option.partition("=")
        extractor, _, param = name.strip().partition(".")
        if not value or not param:
            raise UsageError(f"bad feature option {option!r}: expected EXTRACTOR.PARAM=VALUE")
        parsed.setdefault(extractor.lower(), {})[param] = value
    return parsed


def build_extractors(
    spec: str | Sequence[str], options: Mapping[str, Mapping[str, object]] | Sequence[str] | None = None
) -> list[FeatureExtractor]:
    """Instantiate extractors by name with optional per-extractor parameters."""
    names = parse_feature_names(spec)
    if options is not None and not isinstance(options, Mapping):
        options = parse_feature_options(options)
    options = options or {}
    stray = set(options) - set(names)
    if stray:
        raise UsageError(f"feature option(s) given for unselected extractor(s): {', '.join(sorted(stray))}")
    return [EXTRACTORS[name](**options.get(name, {})) for name in names]


def extractors_from_settings(settings: FeatureSettings) -> list[FeatureExtractor]:
    """Recreate the extractors recorded in ``settings``; refuse versions this code cannot reproduce."""
    extractors = []
    for spec in settings.extractors:
        cls = EXTRACTORS.get(spec["name"])
        if cls is None:
            raise ModelFileError(f"feature extractor '{spec['name']}' is not available in this version of bloodcli")
        if str(spec.get("version")) != str(cls.version):
            raise ModelFileError(
                f"feature extractor '{spec['name']}' version {spec.get('version')} cannot be reproduced "
                f"(this bloodcli computes version {cls.version}); retrain the model"
            )
        extractors.append(cls(**spec.get("params", {})))
    return extractors


__all__ = [
    "CellImage", "DEFAULT_FEATURES", "EXTRACTORS", "FeatureExtractor", "FeatureSettings", "FeatureTable",
    "build_extractors", "extract_features", "extractors_from_settings", "parse_feature_names",
]  # fmt: skip
