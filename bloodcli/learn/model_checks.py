"""Structural checks of a model file's archive, done before anything in it is used.

- a model file must be a regular file (a FIFO would block the open forever);
- archive entries are read with a size bound (a small zip must not inflate to gigabytes);
- JSON is parsed with a depth bound and the manifest must match its schema.

:func:`model_archive` opens a model file of either kind and checks its manifest; :func:`read_manifest`
is all ``bloodcli info`` needs. The estimator inside is checked by :mod:`.estimator_checks`, which
this module does not import, so describing a model loads neither NumPy nor estimator code.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

from bloodcli.errors import ModelFileError

#: The ``format`` every model file's manifest records.
MODEL_FORMAT = "bloodcli-model/1"

#: Upper bounds on the inflated size of each archive entry (the whole file is held in memory).
ENTRY_LIMITS = {"manifest.json": 16 << 20, "training_keys.json": 256 << 20}
ESTIMATOR_LIMIT = 1 << 30
#: Deeper JSON than this is not something bloodcli writes.
MAX_JSON_DEPTH = 32


def check_regular_file(path) -> None:
    """Refuse anything but a regular file before opening it (a FIFO would block the open forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise ModelFileError(f"{path}: not a regular file (a model file from 'bloodcli train' is expected)")


def read_manifest(path: str | Path) -> dict:
    """What a model file says about itself (classes, settings, provenance, metrics), without loading its estimator."""
    with model_archive(path) as (_, manifest):
        return manifest


@contextlib.contextmanager
def model_archive(path: str | Path):
    """``(archive, manifest)`` of a model file of either kind, its manifest checked (:func:`check_manifest`)."""
    with _model_archive(path) as archive:
        yield archive, _manifest(archive, path)


@contextlib.contextmanager
def _model_archive(path: str | Path):
    """The model file's zip archive; anything but a regular file, or a damaged one, is a one-line :class:`ModelFileError`."""
    check_regular_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, KeyError, ValueError, EOFError, OSError,
            NotImplementedError) as exc:  # what a damaged archive raises while it is read
        raise ModelFileError(f"{path}: not a bloodcli model or the file is damaged ({exc})") from None


def _manifest(archive: zipfile.ZipFile, path) -> dict:
    """The manifest, bounded in size and depth and checked against its schema."""
    manifest = parse_json(read_entry(archive, "manifest.json", path), "manifest.json", path)
    check_manifest(manifest, MODEL_FORMAT, path)
    return manifest


def read_entry(archive: zipfile.ZipFile, name: str, path) -> bytes:
    """An archive entry's bytes, refused when its declared or actual size exceeds its bound."""
    limit = ENTRY_LIMITS.get(name, ESTIMATOR_LIMIT)
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise ModelFileError(f"{path}: refused: {name} would inflate to {info.file_size:,} bytes (limit {limit:,})")
    with archive.open(info) as entry:
        data = entry.read(limit + 1)  # the zip module stops at the declared size and checks the CRC
    if len(data) > limit:
        raise ModelFileError(f"{path}: refused: {name} is larger than {limit:,} bytes")
    return data


def parse_json(data: bytes, name: str, path):
    """Parsed JSON, refused (one line) when it is not UTF-8, not JSON or nested deeper than :data:`MAX_JSON_DEPTH`."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelFileError(f"{path}: {name} is not UTF-8 text") from None
    except RecursionError:
        raise ModelFileError(f"{path}: refused: {name} is nested too deeply") from None
    except ValueError as exc:
        raise ModelFileError(f"{path}: {name} is not valid JSON ({exc})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ModelFileError(f"{path}: refused: {name} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


#: Manifest keys, the JSON type each must have, and whether it may be absent: those of every model file,
#: then those of each kind (a feature classifier, or a fine-tuned network whose manifest says ``"model": "cnn"``).
_COMMON_SCHEMA = {
    "format": (str, True), "model": (str, True), "classes": (list, True), "provenance": (dict, False),
    "metrics": ((dict, type(None)), False),
}  # fmt: skip
_FEATURES_SCHEMA = {"settings": (dict, True), "feature_names": (list, True)}
#: The manifest's ``model`` of a fine-tuned network (:mod:`bloodcli.learn.cnn`); a classifier's name otherwise.
CNN_MODEL = "cnn"
_CNN_SCHEMA = {"cnn": (dict, True), "preprocessing": ((dict, type(None)), False)}


def check_manifest(manifest, model_format: str, path) -> None:
    """Refuse a manifest of another format, or without the keys and types bloodcli writes (unknown keys are allowed)."""
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{path}: manifest.json is a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != model_format:
        raise ModelFileError(f"{path}: unsupported model format {manifest.get('format')!r}")
    network = manifest.get("model") == CNN_MODEL
    _check_keys(manifest, {**_COMMON_SCHEMA, **(_CNN_SCHEMA if network else _FEATURES_SCHEMA)}, path)
    _check_names(manifest, "classes", path)
    if len(manifest["classes"]) < 2:
        raise ModelFileError(f"{path}: manifest.json lists {len(manifest['classes'])} class; a classifier has at least 2")
    if network:
        return
    _check_names(manifest, "feature_names", path)
    extractors = manifest["settings"].get("extractors")
    if not isinstance(extractors, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in extractors):
        raise ModelFileError(f"{path}: manifest.json settings have no valid 'extractors' list")
    if not isinstance(manifest["settings"].get("preprocessing", {}), (dict, type(None))):
        raise ModelFileError(f"{path}: manifest.json settings 'preprocessing' must be an object")


def _check_keys(manifest: dict, schema: dict, path) -> None:
    for key, (kind, required) in schema.items():
        if key not in manifest:
            if required:
                raise ModelFileError(f"{path}: manifest.json has no {key!r}")
        elif not isinstance(manifest[key], kind):
            raise ModelFileError(f"{path}: manifest.json {key!r} has the wrong type ({type(manifest[key]).__name__})")


def _check_names(manifest: dict, key: str, path) -> None:
    values = manifest[key]
    if not values or not all(isinstance(v, str) for v in values) or len(set(values)) != len(values):
        raise ModelFileError(f"{path}: manifest.json {key!r} must be distinct strings")


__all__ = ["CNN_MODEL", "MODEL_FORMAT", "check_manifest", "check_regular_file", "model_archive", "parse_json", "read_entry", "read_manifest"]
