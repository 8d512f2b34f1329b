"""Content hashes of image files, remembered by their file status, so a cached re-run reads no unchanged image.

Cache keys are content hashes, which survive moves and renames; without this a re-run read and
hashed every image only to find its features in the cache. As in git's index, a file whose
inode, size, modification and status-change times (in nanoseconds) are those seen when it was
hashed still holds the content then hashed: any write moves the status-change time, which no
program can set back. A hash is remembered only for a file last changed :data:`RACY_SECONDS`
or more before it was read, so a write within the same tick of a coarse file-system clock
cannot go unseen.

The hashes live in the feature cache folder, in ``.file-hashes/``: one JSON file per image
folder, replaced whole (atomic rename). A damaged or foreign file there is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path

from bloodcli.errors import OutputWriteError
from bloodcli.io.files import replace_private_file
from bloodcli.io.images import content_hash, read_bytes

#: (inode, size, modification time ns, status-change time ns) of a file.
Status = tuple[int, int, int, int]
#: Coarsest file-system clock in use (FAT: 2 s; ext4, XFS, APFS, NTFS tick in nanoseconds to 100 ns).
RACY_SECONDS = 2
#: Largest hash file read: 100,000 images of one folder take about 12 MB.
MAX_FILE_BYTES = 64 * 1024 * 1024
FOLDER = ".file-hashes"
FORMAT = "bloodcli-file-hashes-1"


def file_status(path: str) -> Status | None:
    """The file's :data:`Status`, or None when it cannot be read."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def read_hashed(path) -> tuple[bytes, str, Status | None]:
    """The file's bytes, their content hash, and its status when a later run may trust the hash.

    The status is None when the file changed while it was read, or so recently that a write in
    the same clock tick would leave it unchanged (:data:`RACY_SECONDS`).
    """
    before = file_status(path)
    data = read_bytes(path)
    after = file_status(path)
    settled = after is not None and time.time_ns() - after[3] >= RACY_SECONDS * 1_000_000_000
    return data, content_hash(data), after if settled and before == after else None


class FileHashes:
    """The remembered content hashes of a feature cache rooted at ``root`` (None: remember nothing)."""

    def __init__(self, root: Path | None):
        self.folder = None if root is None else os.path.join(root, FOLDER)
        self._loaded: dict[str, dict[str, tuple[Status, str]]] = {}  # image folder -> its hashes, read once

    def recall(self, paths) -> dict[str, tuple[Status, str]]:
        """``{path: (status, hash)}`` remembered for those of ``paths`` (as given) seen before."""
        if self.folder is None:
            return {}
        known = {}
        for folder, members in _by_folder(paths).items():
            remembered = self._remembered(folder)
            known.update({path: remembered[name] for name, path in members.items() if name in remembered})
        return known

    def remember(self, seen: dict[str, tuple[Status, str]]) -> None:
        """Add ``{path: (status, hash)}`` to the remembered hashes (a cache that cannot be written is skipped)."""
        if self.folder is None or not seen:
            return
        for folder, members in _by_folder(seen).items():
            merged = self._loaded[folder] = self._remembered(folder) | {name: seen[path] for name, path in members.items()}
            text = json.dumps({"format": FORMAT, "folder": folder, "files": {n: [*s, h] for n, (s, h) in merged.items()}})
            with contextlib.suppress(OSError, OutputWriteError):  # the feature cache already warns about its folder
                replace_private_file(self._file(folder), text.encode())

    def _file(self, folder: str) -> str:
        return os.path.join(self.folder, hashlib.blake2b(folder.encode(errors="surrogateescape"), digest_size=16).hexdigest() + ".json")

    def _remembered(self, folder: str) -> dict[str, tuple[Status, str]]:
        if folder not in self._loaded:
            self._loaded[folder] = self._read(folder)
        return self._loaded[folder]

    def _read(self, folder: str) -> dict[str, tuple[Status, str]]:
        try:
            with open(self._file(folder), "rb") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
            data = json.loads(text) if len(text) <= MAX_FILE_BYTES else {}
            if data.get("format") != FORMAT or data.get("folder") != folder:
                return {}
            return {name: _entry(value) for name, value in data["files"].items() if _valid(name, value)}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}


def _by_folder(paths) -> dict[str, dict[str, str]]:
    """``{absolute folder: {file name: path as given}}`` of ``paths``."""
    grouped = defaultdict(dict)
    for path in map(str, paths):
        folder, name = os.path.split(os.path.abspath(path))
        grouped[folder][name] = path
    return grouped


def _valid(name, value) -> bool:
    return (isinstance(name, str) and isinstance(value, list) and len(value) == 5
            and all(type(v) is int for v in value[:4]) and isinstance(value[4], str) and len(value[4]) == 32)  # fmt: skip


def _entry(value: list) -> tuple[Status, str]:
    return tuple(value[:4]), value[4]
