"""Fingerprinted feature cache: one file per (image content, set of extractor settings).

Layout::

    CACHE_DIR/<extractor names joined by +>-<settings fingerprint>/<key[:2]>/<key>.feat
    CACHE_DIR/.file-hashes/<folder hash>.json   (content hashes of unchanged files: bloodcli.pipeline.file_hashes)

The extractors run together over an image (the per-image ones of a run, or one CNN) share one
entry: a cached re-run reads one small file per image, and a cold run writes one. The settings
fingerprint covers the extractors' names, code versions and parameters and the preprocessing, so
changing one option recomputes that set. The key covers the image
bytes and the crop box, so moving or renaming files keeps their features. Entries are written
atomically and carry a checksum; a damaged entry is treated as missing and recomputed.

An entry is an 8-byte checksum followed by the vector in NumPy's ``.npy`` format, read with
``allow_pickle=False``: a cache shared with others (or tampered with) can hold wrong numbers,
which the checksum catches, but never code that runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloodcli.errors import OutputWriteError
from bloodcli.io.files import replace_private_file

CACHE_ENV = "BLOODCLI_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$BLOODCLI_CACHE_DIR``, else ``$XDG_CACHE_HOME/bloodcli``, else ``~/.cache/bloodcli``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bloodcli"


#: Cache folders this process found it cannot write to: each is warned about once, then only read.
_UNWRITABLE: set[Path] = set()


def _warn_unwritable(root: Path, exc: Exception) -> None:
    if root in _UNWRITABLE:
        return
    _UNWRITABLE.add(root)
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    logging.getLogger("bloodcli").warning(f"cannot write to the feature cache {root} ({cause}): going on without storing features there")


ENTRY_SUFFIX = ".feat"
_CHECKSUM_BYTES = 8


def _checksum(values: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(values).tobytes(), digest_size=_CHECKSUM_BYTES).digest()


@functools.lru_cache(maxsize=64)
def _vector_header(size: int) -> bytes:
    """The ``.npy`` header :meth:`FeatureCache.put` writes for a float32 vector of ``size`` values."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (size,)})
    return buffer.getvalue()


def _read_vector(npy: bytes, size: int | None) -> np.ndarray:
    """The vector of a ``.npy`` payload; the usual entry (the header ``put`` writes) without parsing its header."""
    if size is not None:
        header = _vector_header(size)
        if npy.startswith(header) and len(npy) == len(header) + 4 * size:
            return np.frombuffer(npy, "<f4", offset=len(header))
    return np.lib.format.read_array(io.BytesIO(npy), allow_pickle=False)


@dataclass(frozen=True)
class FeatureCache:
    """A feature cache rooted at ``root``; ``root=None`` disables caching."""

    root: Path | None
    writable: bool = True  # False: entries are read but never written (see :meth:`checked`)

    def __post_init__(self):
        if self.root is not None:  # accept str paths from Python callers
            object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def checked(cls, root: Path | None) -> "FeatureCache":
        """The cache at ``root``, read-only (after one warning) when nothing can be written there."""
        cache = cls(root)
        if root is None:
            return cache
        try:
            cache.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=cache.root):
                pass
        except OSError as exc:
            _warn_unwritable(cache.root, exc)
            return cls(root, writable=False)
        return cache

    def entry_path(self, namespace: str, key: str) -> Path:
        return Path(self._entry_file(namespace, key))

    def _entry_file(self, namespace: str, key: str) -> str:
        return os.path.join(self.root, namespace, key[:2], key + ENTRY_SUFFIX)  # a string: no Path parsing per image

    def get(self, namespace: str, key: str, size: int | None = None) -> np.ndarray | None:
        """Cached feature vector (of ``size`` values, when given), or None when absent or damaged."""
        if self.root is None:
            return None
        path = self._entry_file(namespace, key)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            values = _read_vector(data[_CHECKSUM_BYTES:], size)
            if values.ndim == 1 and size in (None, values.size) and data[:_CHECKSUM_BYTES] == _checksum(values):
                return values
        except FileNotFoundError:
            return None
        except Exception:  # truncated, foreign or unreadable file: recompute  # noqa: BLE001
            pass
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None

    def put(self, namespace: str, key: str, values: np.ndarray) -> None:
        """Store an entry; a cache that cannot be written (full, read-only, removed) is a warning, not an error."""
        if self.root is None or not self.writable or self.root in _UNWRITABLE:
            return
        try:
            self._write(namespace, key, values)
        except FileNotFoundError:  # the folder was removed meanwhile: the next write recreates it
            with contextlib.suppress(OSError, OutputWriteError):
                self._write(namespace, key, values)
        except (OSError, OutputWriteError) as exc:
            _warn_unwritable(self.root, exc)

    def _write(self, namespace: str, key: str, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values)
        if values.dtype == np.dtype("<f4") and values.ndim == 1:  # what extraction stores: the header is known
            npy = _vector_header(values.size) + values.tobytes()
        else:
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, values, allow_pickle=False)
            npy = buffer.getvalue()
        replace_private_file(self._entry_file(namespace, key), _checksum(values) + npy)

    def stats(self) -> dict:
        """Number of entries and bytes per namespace."""
        result: dict[str, dict[str, int]] = {}
        if self.root is None or not self.root.is_dir():
            return result
        for namespace in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):  # not .file-hashes
            files = list(namespace.rglob(f"*{ENTRY_SUFFIX}"))
            result[namespace.name] = {"entries": len(files), "bytes": sum(f.stat().st_size for f in files)}
        return result

    def clean(self, extractor: str | None = None) -> int:
        """Delete cached entries (all, or those of the sets holding ``extractor``); return the number of files removed."""
        if self.root is None or not self.root.is_dir():
            return 0
        removed = 0
        for namespace in [p for p in self.root.iterdir() if p.is_dir()]:
            if extractor is None or extractor in namespace.name.split("-")[0].split("+"):
                removed += sum(1 for _ in namespace.rglob(f"*{ENTRY_SUFFIX}"))
                shutil.rmtree(namespace)
        return removed
