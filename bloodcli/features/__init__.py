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

import importlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING

from bloodcli.errors import ModelFileError, UsageError
from bloodcli.settings import split_pairs

if TYPE_CHECKING:
    from bloodcli.features.base import CellImage, FeatureExtractor


class ExtractorRegistry(MutableMapping):
    """Extractor name -> class, each class imported on first use from its ``"module:Class"`` entry.

    Listing names costs nothing (the CLI's help loads neither NumPy nor OpenCV); looking one up
    imports its module once. Classes can also be added directly (tests register fakes).
    """

    def __init__(self, entries: Mapping[str, str | type]):
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> type[FeatureExtractor]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, cls = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(f"bloodcli.features.{module}"), cls)
        return entry

    def __setitem__(self, name: str, cls: type[FeatureExtractor]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


EXTRACTORS = ExtractorRegistry({
    "glcm": "texture:GLCMExtractor",
    "shape": "shape:ShapeExtractor",
    "color": "color:ColorExtractor",
    "lbp": "lbp:LBPExtractor",
    "gabor": "gabor:GaborExtractor",
    "resnet50": "deep:ResNet50Extractor",  # the default deep backbone
    "mobilenetv2": "deep:MobileNetV2Extractor",
    "mobilenet": "deep:MobileNetExtractor",
    "vgg16": "deep:VGG16Extractor",
    "vgg19": "deep:VGG19Extractor",
    "efficientnetb0": "deep:EfficientNetB0Extractor",
})  # fmt: skip

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


def __getattr__(name: str):
    """``CellImage`` and ``FeatureExtractor`` load with :mod:`.base` when first asked for."""
    if name in ("CellImage", "FeatureExtractor"):
        from bloodcli.features import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
