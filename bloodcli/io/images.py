"""Image decoding.

Every image, whatever its file format, bit depth or channel count, enters the toolkit as an
RGB ``uint8`` array of shape ``(H, W, 3)``. Decoding errors become :class:`ImageReadError`
naming the file and the cause.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcli.errors import ImageReadError
from bloodcli.io.files import atomic_write

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: Images above this many pixels are refused before decoding (decompression-bomb guard).
MAX_PIXELS = 100_000_000


def is_image_path(path: str | os.PathLike) -> bool:
    """Return True when the file name has a supported image extension."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def content_hash(data: bytes) -> str:
    """Return a short, stable hash of file content (used as the cache key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file, turning OS errors into :class:`ImageReadError`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image") from None
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    return data


def decode_image(data: bytes, path: str | os.PathLike = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to an RGB ``uint8`` array.

    Parameters
    ----------
    data : bytes
        Encoded image (JPEG, PNG, BMP or TIFF).
    path : str or path-like
        Name used in error messages.
    max_pixels : int
        Refuse images whose header declares more pixels than this.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        array = _decode_tiff(data, path)
    else:
        array = _decode_with_pillow(data, path, max_pixels)
    return to_rgb8(array, path)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB ``uint8`` (see :func:`decode_image`)."""
    return decode_image(read_bytes(path), path, max_pixels)


def _decode_with_pillow(data: bytes, path, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        path, f"declared size {width}x{height} exceeds the {max_pixels:,}-pixel limit"
                    )
                decoded = _decode_with_opencv(data, image)
                if decoded is not None:
                    return decoded
                image.load()  # raises on truncated data
                return _pillow_to_array(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(path, f"refused as a decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"corrupt or truncated image ({exc})") from None


#: How complete 8-bit JPEG and PNG files end: only those are decoded by OpenCV (a damaged one is left to
#: Pillow, which names the damage instead of filling the missing rows).
_COMPLETE_FILE_ENDINGS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _decode_with_opencv(data: bytes, image: Image.Image) -> np.ndarray | None:
    """Decode an 8-bit grey or RGB JPEG or PNG whose header Pillow read, with OpenCV (about 1.3x faster).

    Pixels are Pillow's (same libjpeg-turbo/libpng decoders, RGB order, EXIF orientation ignored as
    Pillow does); None for any other file, which Pillow then decodes.
    """
    ending = _COMPLETE_FILE_ENDINGS.get(image.format or "")
    if image.mode not in ("RGB", "L") or ending is None or not data.rstrip(b"\x00").endswith(ending):
        return None
    import cv2

    grey = image.mode == "L"
    flags = (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if decoded is None or decoded.shape[:2] != image.size[::-1]:
        return None
    return decoded if grey else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _pillow_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image).astype(np.uint16 if image.mode.startswith("I;16") else np.int32)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image)


def _decode_tiff(data: bytes, path) -> np.ndarray:
    import tifffile

    try:
        array = tifffile.imread(io.BytesIO(data), key=0)
    except Exception as exc:  # tifffile raises many types for malformed files
        raise ImageReadError(path, f"corrupt TIFF ({exc})") from None
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar configuration
    return array


def to_rgb8(array: np.ndarray, path="<array>") -> np.ndarray:
    """Convert grey, RGBA, 16-bit or float arrays to RGB ``uint8``.

    16-bit and integer data are scaled by the dtype range (``/257`` for ``uint16``) so the same
    sample always maps to the same value; floats are taken to lie in ``[0, 1]``. Alpha is
    composited over white, the usual slide background.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageReadError(path, f"unsupported image shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageReadError(path, "image has no pixels")
    rgb = _scale_to_uint8(array)
    if rgb.ndim == 2:
        return np.repeat(rgb[..., None], 3, axis=2)
    if rgb.shape[-1] == 4:
        alpha = rgb[..., 3:4].astype(np.float32) / 255.0
        blended = rgb[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _scale_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return (array.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        top = 65535 if array.max(initial=0) > 255 else 255
        return (np.clip(array, 0, top).astype(np.int64) * 255 // top).astype(np.uint8)
    raise ImageReadError("<array>", f"unsupported pixel type {array.dtype}")


def write_image(path: str | os.PathLike, array: np.ndarray, durable: bool = True) -> None:
    """Write an image atomically; the format follows the extension (16-bit PNG supported).

    ``durable=False`` skips the fsync (see :func:`~bloodcli.io.files.atomic_write`), for many small
    outputs of a run whose own records say what was finished.
    """
    import cv2

    suffix = Path(path).suffix or ".png"
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(suffix, array)
    if not ok:
        raise OSError(f"could not encode {path}")
    with atomic_write(path, durable=durable) as handle:
        handle.write(encoded.tobytes())
