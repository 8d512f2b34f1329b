import io

import numpy as np
import pytest
import tifffile
from conftest import SAMPLE
from PIL import Image

from bloodcli.errors import ImageReadError
from bloodcli.io.files import atomic_write
from bloodcli.io.images import decode_image, read_image, to_rgb8


def _png(array, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG") if mode else Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_sample_jpeg_decodes_to_rgb_uint8():
    image = read_image(next((SAMPLE / "pbc" / "platelet").glob("*.jpg")))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_grayscale_becomes_three_equal_channels():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    image = decode_image(_png(grey))
    assert image.shape == (8, 8, 3)
    assert (image[..., 0] == grey).all() and (image[..., 2] == grey).all()


def test_rgba_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 2:, 3] = 255
    image = decode_image(_png(rgba))
    assert (image[:, :2] == 255).all()
    assert (image[:, 2:] == [255, 0, 0]).all()


def test_sixteen_bit_png_and_tiff_scale_by_dtype_range():
    sixteen = np.full((5, 6), 65535, np.uint16)
    sixteen[0, 0] = 0
    assert decode_image(_png(sixteen))[0, 0, 0] == 0
    assert decode_image(_png(sixteen))[1, 1, 0] == 255
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.full((5, 6, 3), 257 * 100, np.uint16))
    assert (decode_image(buffer.getvalue()) == 100).all()


def test_float_and_bool_arrays():
    assert to_rgb8(np.ones((2, 2), np.float32))[0, 0, 0] == 255
    assert to_rgb8(np.ones((2, 2), bool))[0, 0, 0] == 255


@pytest.mark.parametrize(
    "data, cause",
    [
        (b"", "empty file"),
        (b"this is text, not a picture", "not a recognised image format"),
        (None, "corrupt or truncated"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, data, cause):
    path = tmp_path / "bad.png"
    if data is None:  # a real JPEG cut in half
        data = next((SAMPLE / "pbc" / "platelet").glob("*.jpg")).read_bytes()
        data = data[: len(data) // 2]
        path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert cause in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_decompression_bomb(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="limit"):
        decode_image(_png(np.zeros((20, 20), np.uint8)), "big.png", max_pixels=100)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("new, half written")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    import os

    from bloodcli.io.files import _UMASK

    with atomic_write(tmp_path / "result.csv", "w") as handle:
        handle.write("a,b\n")
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b\n")  # what open() would have made under the same umask
    assert os.stat(tmp_path / "result.csv").st_mode & 0o777 == os.stat(plain).st_mode & 0o777 == 0o666 & ~_UMASK


def test_a_private_file_is_replaced_whole_in_new_folders_with_the_usual_permissions(tmp_path):
    import os

    from bloodcli.io.files import replace_private_file

    target = tmp_path / "ns" / "ab" / "entry.feat"  # folders created on the way, as a cache's first entry needs
    replace_private_file(str(target), b"first")
    replace_private_file(str(target), b"second")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.read_bytes() == b"second" and os.listdir(target.parent) == ["entry.feat"]
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_a_private_file_that_fails_to_land_keeps_the_old_one_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno
    import os

    from bloodcli.errors import OutputWriteError
    from bloodcli.io.files import replace_private_file

    target = tmp_path / "entry.feat"
    target.write_bytes(b"old")

    def full_disk(source, destination):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputWriteError, match="entry.feat"):
        replace_private_file(str(target), b"new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["entry.feat"]
