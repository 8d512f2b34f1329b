"""CIE L*a*b* conversions, every one of bloodcli's through here: OpenCV's tables for them can then be built ahead.

OpenCV builds its L*a*b* tables at a process's first L*a*b* conversion, in software floating point: 90 ms, a third
of a one-image ``extract``, spent before the first crop's features and so before ``--jobs`` can judge its pace and
start workers. A command that will convert calls :func:`build_tables_ahead` while it still loads its modules and
inputs. Every conversion here waits for that thread first: OpenCV's table set-up is not thread-safe (one unguarded
flag), so two first conversions at once, or a fork in the middle of one, could see half-built tables.
"""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

_builder: threading.Thread | None = None
_builder_started = threading.Lock()


def build_tables_ahead() -> None:
    """Start building OpenCV's L*a*b* tables on a background thread (once per process; later calls return)."""
    _the_builder()


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB to L*a*b*: 8-bit in OpenCV's scaling (L*·255/100, a* + 128, b* + 128), or float32 RGB in [0, 1] to L*, a*, b*."""
    _wait_for_tables()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_lab`, in the same scaling."""
    _wait_for_tables()
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _convert_one_pixel() -> None:
    cv2.cvtColor(np.zeros((1, 1, 3), np.uint8), cv2.COLOR_RGB2LAB)


def _the_builder() -> threading.Thread:
    global _builder
    with _builder_started:
        if _builder is None:
            _builder = threading.Thread(target=_convert_one_pixel, name="bloodcli-cielab-tables")
            _builder.start()
        return _builder


def _wait_for_tables() -> None:
    # Started here when no command started it: two first conversions at once still build the tables once.
    _the_builder().join()  # once built, a microsecond against a crop's 25 µs conversion


def _before_fork() -> None:
    """The child must not inherit half-built tables (its copy of the builder is gone), nor the lock held by a thread."""
    _builder_started.acquire()
    if _builder is not None:
        _builder.join()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_before_fork, after_in_parent=_builder_started.release, after_in_child=_builder_started.release)
