"""What a Keras weights file says about the network it fits, read from its tensor shapes alone.

Only array shapes are read (h5py); nothing in the file is deserialised or run. A no-top MobileNet
file is only loadable into a network of its own width multiplier (alpha), and the file name may
not say which: the widest convolution kernel does.

Examples
--------
>>> make_divisible(320 * 0.35, 8)
112
"""

from __future__ import annotations

from pathlib import Path

#: Width multipliers Keras publishes ImageNet weights for.
PUBLISHED_ALPHAS = {"mobilenetv2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), "mobilenet": (0.25, 0.5, 0.75, 1.0)}


def make_divisible(value: float, divisor: int) -> int:
    """Keras' channel rounding for MobileNetV2 widths."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _widest_kernel_channels(alpha: float, backbone: str) -> int:
    """The channel count of the widest kernel that alpha fixes (see :func:`weights_alpha`)."""
    if backbone == "mobilenet":  # conv_pw_13: 1024 * alpha outputs
        return int(1024 * alpha)
    return make_divisible(320 * alpha, 8)  # MobileNetV2's last 1x1 conv reads the 320*alpha channels of block 16


def weights_alpha(path: str | Path, backbone: str) -> float | None:
    """The width multiplier a no-top ``backbone`` weights file was trained with (None when unrecognised).

    Parameters
    ----------
    path : path
        A Keras ``.h5`` weights file.
    backbone : {"mobilenetv2", "mobilenet"}
    """
    import h5py

    kernels: list[tuple[int, ...]] = []
    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda _, node: kernels.append(node.shape) if isinstance(node, h5py.Dataset) and len(node.shape) == 4 else None)
    except OSError:
        return None
    if not kernels:
        return None
    widest = max(kernels, key=lambda shape: shape[3])
    channels = widest[3] if backbone == "mobilenet" else widest[2]
    matches = [a for a in PUBLISHED_ALPHAS[backbone] if _widest_kernel_channels(a, backbone) == channels]
    return matches[0] if matches else None
