"""File output: atomic for regular files, written in place for devices, pipes and /dev/stdout.

Readers never see a half-written regular file and a failed write keeps the old one. A target that
is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written where it is, since renaming
a file over it would replace the device or pipe; a symlink is written through to its target.
Storage errors (disk full, no permission, read-only) become :class:`OutputWriteError` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import stat
import tempfile
from pathlib import Path

from bloodcli.errors import OutputWriteError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it

#: Errors that mean the storage refused the write, as opposed to a bug in the code writing.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                  errno.EISDIR, errno.ENOTDIR, errno.EEXIST}  # fmt: skip


def writes_in_place(path: str | os.PathLike) -> bool:
    """True for targets a rename must not replace: devices, FIFOs, sockets, /dev and /proc paths."""
    if str(path).startswith(("/dev/", "/proc/")) or os.path.realpath(path).startswith("/proc/"):
        return True  # /dev/stdout and /dev/fd/N: the shell's own file or pipe, even when it is a regular file
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = True):
    """Write to a temporary file beside ``path`` and rename it into place on success.

    Readers never see a half-written file, and an interrupted write leaves any previous
    file untouched. ``durable=False`` skips the fsync (enough for caches: a process kill
    cannot tear a rename, only a power loss could). Devices and pipes are written in place,
    symlinks through to their target (:func:`writes_in_place`).
    """
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with _storage_errors(path):
        if writes_in_place(path):
            with open(path, mode, **text) as handle:
                yield handle
            return
        with _replaced(Path(os.path.realpath(path)), mode, text, durable) as handle:
            yield handle


@contextlib.contextmanager
def _storage_errors(path):
    """OS errors that mean the storage refused the write become :class:`OutputWriteError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in STORAGE_ERRORS:
            raise OutputWriteError(path, exc) from None
        raise


@contextlib.contextmanager
def _removed_on_error(temporary: str):
    """Delete the temporary file ``temporary`` if anything fails before it is renamed into place."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _replaced(target: Path, mode: str, text: dict, durable: bool):
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with _removed_on_error(tmp_name):
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; results get the usual permissions
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, target)


#: Numbers the temporary files of :func:`replace_private_file` within a process (with the process id: unique).
_TEMPORARY_NAMES = itertools.count()


def replace_private_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` in a folder bloodcli owns (the feature cache), atomically and fast.

    Like :func:`atomic_write` with ``durable=False`` (a temporary file beside ``path``, renamed into
    place, so a killed process never leaves a torn file), in four system calls: it skips the checks
    for devices, pipes and symlinks, which a folder bloodcli created does not hold. Missing folders
    are created. Storage errors raise :class:`OutputWriteError`.
    """
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}-{next(_TEMPORARY_NAMES)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    with _storage_errors(path):
        try:
            fd = os.open(temporary, flags, 0o666)  # the umask applies, as for any new file
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(temporary, flags, 0o666)
        with _removed_on_error(temporary):
            with os.fdopen(fd, "wb", buffering=0) as handle:
                handle.write(data)
            os.replace(temporary, path)


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (a model or weights file is never held in memory whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
