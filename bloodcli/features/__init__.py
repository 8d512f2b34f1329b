"""The feature-extractor registry: one entry per extractor, name -> :class:`FeatureExtractor` subclass.

Adding an extractor is one module with its class and one entry in :data:`EXTRACTORS`; everything
else (the CLI's ``bloodcli features`` list, option validation, cache fingerprints, the contract
test) reads the registry. Running extractors over a dataset is :mod:`bloodcli.pipeline`'s job.

Examples
--------
>>> from bloodcli.features import build_extractors
>>> [e.name for e in build_extractors("glcm,shape,color")]
['glcm', 'shape', 'color']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bloodcli.errors import ModelFileError, UsageError
from bloodcli.features.base import CellImage, FeatureExtractor
from bloodcli.features.color import ColorExtractor
from bloodcli.features.gabor import GaborExtractor
from bloodcli.features.lbp import LBPExtractor
from bloodcli.features.deep import (
    EfficientNetB0Extractor,
    MobileNetExtractor,
    MobileNetV2Extractor,
    ResNet50Extractor,
    VGG16Extractor,
    VGG19Extractor,
)  # fmt: skip
from bloodcli.features.shape import ShapeExtractor
from bloodcli.features.texture import GLCMExtractor
from bloodcli.settings import split_pairs

EXTRACTORS: dict[str, type[FeatureExtractor]] = {
    "glcm": GLCMExtractor,
    "shape": ShapeExtractor,
    "color": ColorExtractor,
    "lbp": LBPExtractor,
    "gabor": GaborExtractor,
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


def parse_feature_options(options: Mapping | Sequence[str] | None) -> dict[str, dict]:
    """Feature options as ``{extractor: {param: value}}``, from ``-F`` strings, a mapping or None.

    ``["glcm.levels=16", "glcm.distances=1,2"]`` gives ``{"glcm": {"levels": "16", "distances": "1,2"}}``;
    values are converted to each parameter's type when the extractor is built.
    """
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {str(name).lower(): dict(params) for name, params in options.items()}
    parsed: dict[str, dict] = {}
    for name, value in split_pairs(list(options), "feature option", "EXTRACTOR.PARAM=VALUE"):
        extractor, _, param = name.partition(".")
        if not param.strip():
            raise UsageError(f"bad feature option {name}={value!r}: expected EXTRACTOR.PARAM=VALUE")
        parsed.setdefault(extractor.strip().lower(), {})[param.strip()] = value
    return parsed


def build_extractors(
    spec: str | Sequence[str], options: Mapping[str, Mapping[str, object]] | Sequence[str] | None = None
) -> list[FeatureExtractor]:
    """Instantiate extractors by name with optional per-extractor parameters."""
    names = parse_feature_names(spec)
    options = parse_feature_options(options)
    stray = set(options) - set(names)
    if stray:
        raise UsageError(f"feature option(s) given for unselected extractor(s): {', '.join(sorted(stray))}")
    return [EXTRACTORS[name](**options.get(name, {})) for name in names]


def extractors_from_specs(specs: Sequence[Mapping], check_resources: bool = True) -> list[FeatureExtractor]:
    """Recreate extractors from their recorded :meth:`FeatureExtractor.spec`; refuse versions this code cannot reproduce.

    ``check_resources=False`` skips finding their weights files (enough to know their columns).
    """
    extractors = []
    for spec in specs:
        cls = EXTRACTORS.get(spec["name"])
        if cls is None:
            raise ModelFileError(f"feature extractor '{spec['name']}' is not available in this version of bloodcli")
        version = str(spec.get("version"))
        if version != str(cls.version) and version not in cls.mask_versions:
            raise ModelFileError(
                f"feature extractor '{spec['name']}' version {version} cannot be reproduced "
                f"(this bloodcli computes version {cls.version}); retrain the model"
            )
        extractors.append(cls(check_resources, version, **spec.get("params", {})))
    return extractors


__all__ = [
    "CellImage", "DEFAULT_FEATURES", "EXTRACTORS", "FeatureExtractor", "build_extractors", "extractor_kind",
    "extractors_from_specs", "feature_set_kind", "parse_feature_names", "parse_feature_sets",
]  # fmt: skip


def extractor_kind(name: str) -> str:
    """``"deep"`` or ``"classical"``: the extractor's ``kind`` attribute, else deep when batched."""
    cls = EXTRACTORS[name]
    return getattr(cls, "kind", None) or ("deep" if cls.batched else "classical")


def feature_set_kind(names: Sequence[str]) -> str:
    """``"classical"`` or ``"deep"`` when all extractors agree, else ``"fused"``."""
    kinds = {extractor_kind(n) for n in names}
    return kinds.pop() if len(kinds) == 1 else "fused"


def parse_feature_sets(specs: Sequence[str]) -> list[list[str]]:
    """``["glcm+shape", "resnet50"]`` -> lists of extractor names, without duplicate sets."""
    sets = [parse_feature_names(spec) for spec in specs]
    if not sets:
        raise UsageError("no feature sets given")
    unique = list({"+".join(s): s for s in sets}.values())
    return unique
