"""Fingerprinted feature cache: one file per (image content, extractor settings).

Layout::

    CACHE_DIR/<extractor name>-<settings fingerprint>/<key[:2]>/<key>.feat

The settings fingerprint covers the extractor's name, code version and parameters and the
preprocessing, so changing one option recomputes only that extractor. The key covers the image
bytes and the crop box, so moving or renaming files keeps their features. Entries are written
atomically and carry a checksum; a damaged entry is treated as missing and recomputed.

An entry is an 8-byte checksum followed by the vector in NumPy's ``.npy`` format, read with
``allow_pickle=False``: a cache shared with others (or tampered with) can hold wrong numbers,
which the checksum catches, but never code that runs.
"""

from __future__ import annotations

import contextlib
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
from bloodcli.io.files import atomic_write

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
        return self.root / namespace / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def get(self, namespace: str, key: str) -> np.ndarray | None:
        """Cached feature vector, or None when absent or damaged."""
        if self.root is None:
            return None
        path = self.entry_path(namespace, key)
        try:
            data = path.read_bytes()
            values = np.lib.format.read_array(io.BytesIO(data[_CHECKSUM_BYTES:]), allow_pickle=False)
            if values.ndim == 1 and data[:_CHECKSUM_BYTES] == _checksum(values):
                return values
        except FileNotFoundError:
            return None
        except Exception:  # truncated, foreign or unreadable file: recompute  # noqa: BLE001
            pass
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
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
        buffer = io.BytesIO()
        buffer.write(_checksum(values))
        np.lib.format.write_array(buffer, values, allow_pickle=False)
        with atomic_write(self.entry_path(namespace, key), durable=False) as handle:
            handle.write(buffer.getvalue())

    def stats(self) -> dict:
        """Number of entries and bytes per namespace."""
        result: dict[str, dict[str, int]] = {}
        if self.root is None or not self.root.is_dir():
            return result
        for namespace in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = list(namespace.rglob(f"*{ENTRY_SUFFIX}"))
            result[namespace.name] = {"entries": len(files), "bytes": sum(f.stat().st_size for f in files)}
        return result

    def clean(self, extractor: str | None = None) -> int:
        """Delete cached entries (all, or one extractor's); return the number of files removed."""
        if self.root is None or not self.root.is_dir():
            return 0
        removed = 0
        for namespace in [p for p in self.root.iterdir() if p.is_dir()]:
            if extractor is None or namespace.name.split("-")[0] == extractor:
                removed += sum(1 for _ in namespace.rglob(f"*{ENTRY_SUFFIX}"))
                shutil.rmtree(namespace)
        return removed
