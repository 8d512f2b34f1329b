"""Hostile and careless inputs and outputs: pixel bombs, unbounded option values, odd annotations,
special output targets, full or unwritable storage, killed processes, and segment's own outputs.

Each case names the exit code the user gets (README: 2 usage, 3 input data, 4 model file, 6 output
cannot be written, 143 SIGTERM).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import tifffile
from conftest import ROOT, SAMPLE
from PIL import Image
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import ImageReadError
from bloodcli.io.images import decode_image
from bloodcli.pipeline.cache import FeatureCache

IMAGES = SAMPLE / "pbc" / "platelet"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def bloodcli(*args, timeout=120, stdout=subprocess.PIPE):
    """The command line in its own process (for file descriptors and special files)."""
    return subprocess.run([sys.executable, "-m", "bloodcli", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip


def tiled_tiff(side: int, tile: int = 16) -> bytes:
    """A zlib-compressed tiled RGB TIFF of zeros: tiny on disk, ``side**2`` pixels decoded."""
    buffer = io.BytesIO()
    zero_tile = np.zeros((tile, tile, 3), np.uint8)
    count = ((side + tile - 1) // tile) ** 2
    tifffile.imwrite(buffer, (zero_tile for _ in range(count)), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile),
                     photometric="rgb", compression="zlib")  # fmt: skip
    return buffer.getvalue()


def test_tiff_pages_and_tiles_are_size_checked_from_the_header():
    with pytest.raises(ImageReadError, match="pixel limit"):
        decode_image(tiled_tiff(64), "tiled.tif", max_pixels=1000)
    assert decode_image(tiled_tiff(64), "tiled.tif").shape == (64, 64, 3)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` whose pixel data is cut off after a few rows."""
    buffer = io.BytesIO()
    Image.new("L", (width, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_the_documented_100_megapixel_limit_is_100_megapixels():
    """90 MP passes the size check (Pillow's own limit is 89.5 MP); just over 100 MP is refused unread."""
    try:
        decode_image(_png_header_only(9500, 9500), "90mp.png")
    except ImageReadError as exc:  # the missing rows may be noticed; the size is not the problem
        assert "limit" not in str(exc) and "bomb" not in str(exc)
    with pytest.raises(ImageReadError, match="100,000,000-pixel limit"):
        decode_image(_png_header_only(10001, 10000), "100mp.png")


def test_sixteen_bit_and_alpha_images_convert_band_by_band_to_the_same_pixels():
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, (700, 2000, 4), dtype=np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, deep, photometric="rgb", extrasamples=["unassalpha"])
    decoded = decode_image(buffer.getvalue(), "deep.tif")
    eight = (deep.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    alpha = eight[..., 3:4].astype(np.float32) / 255
    expected = np.clip(eight[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected)


@pytest.mark.parametrize("option", [
    ["--seed", "-1"], ["--gaussian", "inf"], ["--gaussian", "nan"], ["--clahe", "nan"], ["--median", "1001"],
    ["--cell-diameter", "nan"], ["--resize", "100000"], ["--augment", "copies=1000000000"], ["--augment", "blur=nan"],
], ids=" ".join)  # fmt: skip
def test_unbounded_or_non_finite_option_values_are_usage_errors(tmp_path, option):
    result = run("train", IMAGES.parent, "-f", "color", "--no-cache", *option)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["inf", "1e400", "-inf", "nan"])
def test_non_finite_box_coordinates_are_one_line_data_errors(tmp_path, value):
    image = sorted(IMAGES.glob("*.jpg"))[0]
    shutil.copy(image, tmp_path / "a.jpg")
    (tmp_path / "boxes.csv").write_text(f"path,label,xmin,ymin,xmax,ymax\na.jpg,x,0,0,{value},10\na.jpg,y,0,0,10,10\n")
    (tmp_path / "voc").mkdir()
    shutil.copy(image, tmp_path / "voc" / "a.jpg")
    (tmp_path / "voc" / "a.xml").write_text(f"<annotation><filename>a.jpg</filename><object><name>x</name><bndbox><xmin>0</xmin>"
                                           f"<ymin>0</ymin><xmax>{value}</xmax><ymax>10</ymax></bndbox></object></annotation>")  # fmt: skip
    for dataset in (tmp_path / "boxes.csv", tmp_path / "voc"):
        result = run("extract", dataset, "-o", tmp_path / "f.csv", "-f", "color", "--no-cache")
        assert result.exit_code == 3, result.output
        assert "finite" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    skipped = run("extract", tmp_path / "boxes.csv", "-o", tmp_path / "f.csv", "-f", "color", "--no-cache", "--skip-errors")
    assert skipped.exit_code == 0 and "finite" in skipped.stderr


def test_a_quoted_newline_in_a_csv_field_is_kept(tmp_path):
    images = sorted(IMAGES.glob("*.jpg"))[:2]
    shutil.copy(images[0], tmp_path / "two\nlines.jpg")
    shutil.copy(images[1], tmp_path / "plain.jpg")
    (tmp_path / "m.csv").write_text('path,label\n"two\nlines.jpg",a\nplain.jpg,b\n')
    result = run("info", tmp_path / "m.csv", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["n_samples"] == 2 and info["classes"] == {"a": 1, "b": 1} and not info["unreadable"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.bcm"
    assert run("train", IMAGES.parent, "-f", "color", "-m", "logreg", "-o", path, "--no-cache").exit_code == 0
    return path


def test_output_to_the_standard_output_file_reaches_stdout(model, tmp_path):
    """``-o /dev/stdout`` is handled by the same rule; /proc/self/fd/1 is used here because the old
    behaviour, run as root, would have renamed a regular file over /dev/stdout itself."""
    result = bloodcli("predict", model, IMAGES, "--no-cache", "-o", "/proc/self/fd/1")
    assert result.returncode == 0 and result.stdout.startswith("path,label,")
    with open(tmp_path / "redirected.csv", "w") as redirected:  # stdout a regular file: written there, not replaced
        assert bloodcli("predict", model, IMAGES, "--no-cache", "-o", "/proc/self/fd/1", stdout=redirected).returncode == 0
    assert (tmp_path / "redirected.csv").read_text().startswith("path,label,")


def _device(path, major: int, minor: int):
    """A private character device node (the same device as /dev/null or /dev/full), or skip."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("creating a device node needs root (CAP_MKNOD); the special-file cases then go untested")
    return path


def test_output_to_a_device_writes_to_the_device(model, tmp_path):
    null = _device(tmp_path / "null", 1, 3)
    assert run("predict", model, IMAGES, "--no-cache", "-o", null).exit_code == 0
    assert stat.S_ISCHR(os.stat(null).st_mode), "the device was replaced by a regular file"


def test_output_to_a_fifo_is_written_into_the_pipe(model, tmp_path):
    fifo = tmp_path / "predictions.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    result = bloodcli("predict", model, IMAGES, "--no-cache", "-o", fifo)
    received = reader.communicate(timeout=60)[0]
    assert result.returncode == 0 and received.startswith("path,label,")
    assert fifo.is_fifo()


def test_a_symlinked_output_is_written_through(model, tmp_path):
    (tmp_path / "real.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to("real.csv")
    assert run("predict", model, IMAGES, "--no-cache", "-o", tmp_path / "link.csv").exit_code == 0
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "real.csv").read_text().startswith("path,label,")


def test_a_full_disk_or_an_unwritable_path_names_the_path(model, tmp_path):
    full_device = _device(tmp_path / "full", 1, 7)  # every write: "No space left on device"
    full = run("predict", model, IMAGES, "--no-cache", "-o", full_device)
    assert full.exit_code == 6 and f"cannot write {full_device}: No space left on device" in full.stderr
    (tmp_path / "file").write_text("")
    blocked = run("predict", model, IMAGES, "--no-cache", "-o", tmp_path / "file" / "out.csv")
    assert blocked.exit_code == 6 and str(tmp_path / "file") in blocked.stderr and "internal error" not in blocked.stderr


def test_an_unwritable_cache_folder_warns_once_and_the_run_goes_on(tmp_path):
    (tmp_path / "file").write_text("")
    result = run("extract", IMAGES.parent, "-o", tmp_path / "f.npz", "-f", "color", "--cache-dir", tmp_path / "file" / "cache", "-j", "2")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("cannot write to the feature cache") == 1 and (tmp_path / "f.npz").is_file()


def test_a_cache_that_fills_up_or_disappears_during_a_run_is_a_warning(tmp_path, monkeypatch, caplog):
    cache = FeatureCache(tmp_path / "cache")
    cache.put("ns", "ab12", np.ones(3))
    shutil.rmtree(tmp_path / "cache")  # removed while extract runs: the next entry recreates it
    cache.put("ns", "cd34", np.ones(3))
    assert cache.get("ns", "cd34") is not None

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # where a cache entry lands: its rename into place
    with caplog.at_level("WARNING", logger="bloodcli"):
        for key in ("ef56", "ab78"):
            cache.put("ns", key, np.ones(3))
    assert [r.getMessage().count("No space left") for r in caplog.records] == [1]


def _extract_in_background(tmp_path):
    data = tmp_path / "data"
    for copy in range(24):  # a few seconds of work at two cores
        shutil.copytree(IMAGES.parent, data / f"lab{copy}")
    command = [sys.executable, "-m", "bloodcli", "extract", data, "-o", tmp_path / "f.npz", "-f", "glcm,shape,color", "-j", "2", "--no-cache"]
    process = subprocess.Popen(list(map(str, command)), stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _descendants(process.pid):  # the worker (forked, or a fresh interpreter)
        time.sleep(0.05)
    time.sleep(0.3)
    return process, _descendants(process.pid)


def _descendants(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found] + [d for p in found for d in _descendants(int(p))]


def _alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] != "Z":
                    alive.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return alive


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_exit_with_the_main_process(tmp_path, sent):
    process, workers = _extract_in_background(tmp_path)
    assert workers, "no worker processes started"
    process.send_signal(sent)
    stderr = process.communicate(timeout=60)[1]
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _alive(workers)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} worker(s) outlived the main process"
    if sent == signal.SIGTERM:
        assert process.returncode == 143 and "terminated" in stderr


def test_segment_never_reads_its_own_or_an_earlier_output_folder(tmp_path):
    smears = tmp_path / "smears"
    smears.mkdir()
    for image in sorted((SAMPLE / "bccd" / "JPEGImages").glob("*.jpg"))[:2]:
        shutil.copy(image, smears / image.name)
    counts = []
    for out in ("seg", "seg", "again"):
        result = run("segment", smears, "-o", smears / out if out == "seg" else tmp_path / out, "--json", "--crops", "-j", "1")
        assert result.exit_code == 0, result.output
        counts.append(json.loads(result.stdout)["n_images"])
    assert counts == [2, 2, 2]


def test_an_image_too_large_for_the_feature_code_is_refused_after_decoding(tmp_path):
    """Below the decode limit, yet 17 megapixels of cell-mask search and texture would cost gigabytes and minutes."""
    folder = tmp_path / "big"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        Image.new("RGB", (4200, 4100), (230, 220, 210)).save(folder / label / "wide.png")
    result = CliRunner().invoke(app, ["extract", str(folder), "-o", str(tmp_path / "f.npz"), "--no-cache", "-j", "1"])
    assert result.exit_code == 3 and "4200x4100 pixels is more than features are computed on (16,777,216)" in result.stderr, result.output
