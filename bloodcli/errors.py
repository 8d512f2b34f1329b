"""Error types and the exit codes the command line maps them to.

Exit codes (documented in the README and stable for scripts):

0   success
1   unexpected internal error (a bug: please report it with ``--debug`` output)
2   usage error (unknown option, bad option value)
3   bad input data (unreadable image, malformed CSV/VOC, unusable dataset)
4   bad model file (corrupt, unsafe, or incompatible with this version)
5   a required resource is unavailable (e.g. pretrained weights offline)
6   an output cannot be written (disk full, permission denied, read-only folder); the path is named
130 interrupted (Ctrl-C)
143 terminated (SIGTERM)
"""

from __future__ import annotations


class BloodcliError(Exception):
    """Base class for errors reported to the user as one line."""

    exit_code = 1


class UsageError(BloodcliError):
    """An option value or combination that cannot work."""

    exit_code = 2


class InputDataError(BloodcliError):
    """Input images, manifests or annotations that cannot be used."""

    exit_code = 3


class ImageReadError(InputDataError):
    """One image file could not be decoded."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class DatasetError(InputDataError):
    """A dataset as a whole is unusable (empty, one class, malformed manifest)."""


class ModelFileError(BloodcliError):
    """A model file that is corrupt, unsafe or incompatible."""

    exit_code = 4


class ResourceUnavailableError(BloodcliError):
    """Something the command needs cannot be obtained (e.g. weights offline)."""

    exit_code = 5


class OutputWriteError(BloodcliError):
    """An output file or folder that cannot be written (disk full, no permission, read-only)."""

    exit_code = 6

    def __init__(self, path, exc: OSError):
        self.path = str(path)
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")
