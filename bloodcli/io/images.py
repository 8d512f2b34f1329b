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
        with open(path, "rb") as handle:  # not Path(path): no path parsing per image of a cached re-run
            data = handle.read()
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
        array = _decode_tiff(data, path, max_pixels)
    else:
        array = _decode_with_pillow(data, path, max_pixels)
    return to_rgb8(array, path)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB ``uint8`` (see :func:`decode_image`)."""
    return decode_image(read_bytes(path), path, max_pixels)


def _decode_with_pillow(data: bytes, path, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89.5 MP: the limit is ours, checked below from the header (errors stay on above 179 MP).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_pixels(path, *image.size, max_pixels)
                decoded = _decode_with_opencv(data, image)
                if decoded is not None:
                    return decoded
                image.load()  # raises on truncated data
                return _pillow_to_array(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
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
    colour = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB, no channel swap
    flags = (cv2.IMREAD_GRAYSCALE if grey else colour or cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if decoded is None or decoded.shape[:2] != image.size[::-1]:
        return None
    return decoded if grey or colour else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _check_pixels(path, width: int, height: int, max_pixels: int, what: str = "declared size") -> None:
    """Refuse, from the header and before any decoding, an image larger than ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageReadError(path, f"{what} {width}x{height} exceeds the {max_pixels:,}-pixel limit (refused as a possible decompression bomb)")


def _pillow_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image).astype(np.uint16 if image.mode.startswith("I;16") else np.int32)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image)


def _decode_tiff(data: bytes, path, max_pixels: int) -> np.ndarray:
    """The first page of a TIFF, its size (and its tiles' or strips' size) checked from the header first."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            _check_pixels(path, page.imagewidth, page.imagelength * max(page.imagedepth, 1), max_pixels)
            if page.is_tiled:
                _check_pixels(path, page.tilewidth, page.tilelength * max(page.tiledepth, 1), max_pixels, "tile size")
            if page.samplesperpixel > 4:
                raise ImageReadError(path, f"unsupported TIFF with {page.samplesperpixel} samples per pixel")
            array = page.asarray(maxworkers=1)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for malformed files
        raise ImageReadError(path, f"corrupt TIFF ({exc})") from None
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar configuration
    return array


def to_rgb8(array: np.ndarray, path="<array>") -> np.ndarray:
    """Convert grey, RGBA, 16-bit or float arrays to RGB ``uint8``.

    16-bit and integer data are scaled by the dtype range (``/257`` for ``uint16``) so the same
    sample always maps to the same value; floats are taken to lie in ``[0, 1]``. Alpha is
    composited over white, the usual slide background. Conversion runs over bands of rows, so its
    temporaries stay a few megabytes whatever the image size.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageReadError(path, f"unsupported image shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageReadError(path, "image has no pixels")
    if array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    wide_integers = np.issubdtype(array.dtype, np.integer) and array.dtype not in (np.uint8, np.uint16)
    top = 65535 if wide_integers and array.max(initial=0) > 255 else 255  # one scale for the whole image
    rgb = np.empty((*array.shape[:2], 3), np.uint8)
    rows = max(1, _BAND_PIXELS // array.shape[1])
    for start in range(0, array.shape[0], rows):
        rgb[start:start + rows] = _band_to_rgb8(array[start:start + rows], top)
    return rgb


_BAND_PIXELS = 1 << 20


def _band_to_rgb8(band: np.ndarray, top: int) -> np.ndarray:
    band = _scale_to_uint8(band, top)
    if band.ndim == 2:
        return band[..., None]  # broadcast to three channels on assignment
    if band.shape[-1] == 4:
        alpha = band[..., 3:4].astype(np.float32) / 255.0
        blended = band[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return band


def _scale_to_uint8(array: np.ndarray, top: int = 255) -> np.ndarray:
    """``array`` as ``uint8``; ``top``: the value mapped to 255 for signed or 32-bit integer data."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return (array.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
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
