"""NAME=VALUE settings from the command line: one parser, values converted to the types of their defaults.

Every ``NAME=VALUE`` vocabulary of the tool goes through :func:`split_pairs`: ``--augment``,
segmentation's ``-P``, feature options ``-F EXTRACTOR.PARAM=VALUE`` and ``--label-map``.

Examples
--------
>>> parse_pairs("NEUTROPHIL=neutrophil, seg=neutrophil", "--label-map", "LABEL=CLASS")
{'NEUTROPHIL': 'neutrophil', 'seg': 'neutrophil'}
>>> parse_like(0.5, "0.25"), parse_like([1], "1,2"), parse_like(True, "off")
(0.25, [1, 2], False)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from bloodcli.errors import UsageError


def split_pairs(items: str | Iterable[str] | None, what: str, expected: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` items (a comma-separated string or a list) as stripped ``(name, value)`` pairs.

    A one-line :class:`UsageError` names ``what`` and the ``expected`` form for any item without a
    name or a value.
    """
    if items is None:
        return []
    if isinstance(items, str):
        items = items.split(",")
    pairs = []
    for item in items:
        if not item.strip():
            continue
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not name or not value:
            raise UsageError(f"bad {what} {item.strip()!r}: expected {expected}")
        pairs.append((name, value))
    return pairs


def parse_pairs(items: str | Iterable[str] | None, what: str, expected: str) -> dict[str, str]:
    """:func:`split_pairs` as a dictionary (a later item wins)."""
    return dict(split_pairs(items, what, expected))


def settings_from_pairs(cls, items: str | Iterable[str] | None, what: str):
    """An instance of dataclass ``cls`` from ``NAME=VALUE`` items; names left out keep their defaults.

    Names are case-insensitive and may use ``-`` for ``_``; values take the type of the default
    (:func:`parse_like`). ``what`` names the settings in the one-line error.
    """
    defaults = cls()
    names = [f.name for f in dataclasses.fields(cls)]
    expected = f"NAME=VALUE with NAME one of {', '.join(names)}"
    changes = {}
    for name, value in split_pairs(items, what, expected):
        key = name.lower().replace("-", "_")
        if key not in names:
            raise UsageError(f"bad {what} {name}={value!r}: expected {expected}")
        changes[key] = parse_like(getattr(defaults, key), value, f"{what} {key}")
    return cls(**changes)


def parse_like(default, value, name: str = "value"):
    """Convert a command-line string to the type of ``default`` (lists: comma- or semicolon-separated)."""
    if not isinstance(value, str):
        return list(value) if isinstance(default, (list, tuple)) else value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            item_type = type(default[0]) if default else float
            return [item_type(v) for v in value.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"bad value {value!r} for {name} (expected {type(default).__name__})") from None
    return value
