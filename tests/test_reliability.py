"""Bad input, interruption, concurrency and unsafe files: the tool never crashes or loses work.

Every bad-input case names its documented exit code (README: 2 usage, 3 input data, 4 model file).
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest
import tifffile
from conftest import SAMPLE
from PIL import Image
from typer.testing import CliRunner

from bloodcli.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png(width=60000, height=60000) -> bytes:
    """A tiny PNG whose header declares a huge image (decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _sample_jpeg() -> bytes:
    return sorted((SAMPLE / "pbc" / "platelet").glob("*.jpg"))[0].read_bytes()


def _corrupt_jpeg() -> bytes:
    data = bytearray(_sample_jpeg())
    data[400:] = np.random.default_rng(0).integers(0, 256, len(data) - 400, dtype=np.uint8).tobytes()
    return bytes(data)


BAD_IMAGES = {
    "truncated.jpg": (lambda: _sample_jpeg()[:1500], "corrupt or truncated"),
    "corrupt.jpg": (_corrupt_jpeg, "corrupt"),
    "truncated.png": (lambda: _png_bytes(np.zeros((64, 64, 3), np.uint8) + 100)[:60], "corrupt or truncated"),
    "zero.png": (lambda: b"", "empty file (0 bytes)"),
    "notes.png": (lambda: b"patient notes, not an image\n", "not a recognised image format"),
    "bomb.png": (_bomb_png, "decompression bomb"),
    "tiny.png": (lambda: _png_bytes(np.zeros((1, 1, 3), np.uint8)), "too small"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_in_predict_exits_3_or_is_skipped(tmp_path, name, trained_model):
    make, cause = BAD_IMAGES[name]
    bad = tmp_path / name
    bad.write_bytes(make())
    good = sorted((SAMPLE / "pbc" / "lymphocyte").glob("*.jpg"))[0]
    result = run("predict", trained_model, good, bad)
    assert result.exit_code == 3, result.output
    assert name in result.stderr and cause in result.stderr and "Traceback" not in result.output
    skipped = run("predict", trained_model, good, bad, "--skip-errors")
    assert skipped.exit_code == 0
    assert skipped.stdout.count("\n") == 2  # header + the good image
    assert name in skipped.stderr


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.bcm"
    assert run("train", SAMPLE / "pbc", "-m", "logreg", "-o", path, "-j", "1").exit_code == 0
    return path


GOOD_VARIANTS = {
    "sixteen bit.tif": lambda rgb: tifffile.imwrite(io.BytesIO(), rgb) or _tiff16(rgb),
    "rgba.png": lambda rgb: _png_bytes(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
    "grey.png": lambda rgb: _png_bytes(rgb.mean(axis=2).astype(np.uint8)),
    "ünïcødé çell.bmp": lambda rgb: _bmp(rgb),
}


def _tiff16(rgb) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb.astype(np.uint16) * 257)
    return buffer.getvalue()


def _bmp(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="BMP")
    return buffer.getvalue()


def test_unusual_but_valid_images_are_predicted_like_the_original(tmp_path, trained_model):
    original = sorted((SAMPLE / "pbc" / "platelet").glob("*.jpg"))[0]
    rgb = np.asarray(Image.open(original).convert("RGB"))
    folder = tmp_path / "odd folder ñ"
    folder.mkdir()
    for name, make in GOOD_VARIANTS.items():
        (folder / name).write_bytes(make(rgb))
    result = run("predict", trained_model, folder)
    assert result.exit_code == 0, result.output
    rows = result.stdout.strip().splitlines()[1:]
    assert len(rows) == 4
    labels = {row.split(",")[0].split("/")[-1]: row.split(",")[1] for row in rows}
    assert labels["sixteen bit.tif"] == labels["rgba.png"] == labels["ünïcødé çell.bmp"] == "platelet"


def _class_tree(tmp_path, counts: dict[str, int]):
    root = tmp_path / "tree"
    for cls, count in counts.items():
        (root / cls).mkdir(parents=True)
        for image in sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))[:count]:
            shutil.copy(image, root / cls)
    return root


@pytest.mark.parametrize(
    "case, expected_code, fragment",
    [
        ("empty_dataset", 3, "no class folders"),
        ("fewer_than_folds", 3, "fewer than the 5 folds"),
        ("csv_missing_columns", 3, "needs a 'path' column"),
        ("csv_not_utf8", 3, "not UTF-8"),
        ("malformed_voc", 3, "malformed VOC XML"),
        ("missing_dataset", 3, "no such file or folder"),
        ("unknown_model", 2, "unknown model"),
        ("unknown_feature", 2, "unknown feature extractor"),
        ("cv_and_test_size", 2, "either --folds or --test-size"),
        ("bad_preprocessing", 2, "--median must be an odd number"),
    ],
)  # fmt: skip
def test_dataset_and_usage_errors(tmp_path, case, expected_code, fragment):
    args = {
        "empty_dataset": lambda: ["train", (tmp_path / "empty").mkdir() or tmp_path / "empty"],
        "fewer_than_folds": lambda: ["train", _class_tree(tmp_path, {"platelet": 3, "lymphocyte": 6}), "--cv", "5"],
        "csv_missing_columns": lambda: ["train", _write(tmp_path / "m.csv", "label,group\na,b\n")],
        "csv_not_utf8": lambda: ["train", _write(tmp_path / "m.csv", "path,label\n\xe9t\xe9.jpg,a\n", "latin-1")],
        "malformed_voc": lambda: ["train", _broken_voc(tmp_path)],
        "missing_dataset": lambda: ["train", tmp_path / "nope"],
        "unknown_model": lambda: ["train", SAMPLE / "pbc", "-m", "deepforest"],
        "unknown_feature": lambda: ["train", SAMPLE / "pbc", "-f", "glcm,wavelets"],
        "cv_and_test_size": lambda: ["train", SAMPLE / "pbc", "--cv", "3", "--test-size", "0.2"],
        "bad_preprocessing": lambda: ["train", SAMPLE / "pbc", "--median", "4"],
    }[case]()
    result = run(*args)
    assert result.exit_code == expected_code, result.output
    assert fragment in result.output and "Traceback" not in result.output


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _broken_voc(tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(SAMPLE / "bccd", root)
    (root / "Annotations" / "BloodImage_99999.xml").write_text("<annotation><object><name>WBC</name>")
    return root


def test_csv_with_extra_columns_and_a_bom_is_fine(tmp_path):
    rows = ["\ufeffpath,label,notes,operator"]
    for cls in ("lymphocyte", "platelet"):
        for image in sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))[:5]:
            rows.append(f"{image},{cls},ok,jd")
    manifest = _write(tmp_path / "m.csv", "\n".join(rows) + "\n")
    result = run("train", manifest, "-m", "logreg", "--cv", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["n_samples"] == 10


def test_model_on_features_it_was_not_trained_on_is_refused(tmp_path, trained_model):
    features = tmp_path / "other.npz"
    assert run("extract", SAMPLE / "pbc", "-o", features, "-f", "glcm", "-F", "glcm.levels=8").exit_code == 0
    result = run("evaluate", trained_model, features)
    assert result.exit_code == 4 and "trained on features glcm+shape+color" in result.stderr


def test_model_with_an_extractor_version_this_code_cannot_reproduce(tmp_path, trained_model):
    altered = tmp_path / "old.bcm"
    with zipfile.ZipFile(trained_model) as source, zipfile.ZipFile(altered, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "manifest.json":
                manifest = json.loads(data)
                manifest["settings"]["extractors"][0]["version"] = "0"
                data = json.dumps(manifest)
            target.writestr(item, data)
    result = run("predict", altered, SAMPLE / "pbc" / "platelet")
    assert result.exit_code == 4 and "cannot be reproduced" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "train", tmp_path / "nope")
    assert result.exit_code == 3 and "Traceback" in result.output


# Interruption and concurrency: real processes, killed for real.


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "bloodcli", *map(str, args)]


def _features(path):
    from bloodcli.pipeline.table import FeatureTable

    return FeatureTable.load(path)


def test_kill_9_during_extract_then_rerun_resumes_and_matches(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "features.npz"
    process = subprocess.Popen(_cli("extract", SAMPLE / "pbc", "-o", out, "--cache-dir", cache, "-j", "1"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.rglob("*.feat"))) < 30:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists(), "a killed run must not leave a (partial) output"
    done_before = len(list(cache.rglob("*.feat")))
    assert 0 < done_before < 180
    resumed = subprocess.run(_cli("extract", SAMPLE / "pbc", "-o", out, "--cache-dir", cache, "-j", "1", "--json"),
                             capture_output=True, text=True, check=True)  # fmt: skip
    summary = json.loads(resumed.stdout)
    assert summary["n_cached"] >= done_before - 3 and summary["n_computed"] + summary["n_cached"] == 180
    reference = tmp_path / "reference.npz"
    subprocess.run(_cli("extract", SAMPLE / "pbc", "-o", reference, "--no-cache", "-j", "1"), check=True, capture_output=True)
    np.testing.assert_array_equal(_features(out).values, _features(reference).values)


def test_two_processes_extracting_into_one_cache(tmp_path):
    cache = tmp_path / "cache"
    outputs = [tmp_path / f"f{i}.npz" for i in range(2)]
    processes = [
        subprocess.Popen(_cli("extract", SAMPLE / "pbc", "-o", out, "--cache-dir", cache, "-j", "1"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        for out in outputs
    ]
    assert all(p.wait(timeout=300) == 0 for p in processes)
    first, second = (_features(out) for out in outputs)
    np.testing.assert_array_equal(first.values, second.values)
    third = subprocess.run(_cli("extract", SAMPLE / "pbc", "-o", tmp_path / "f3.npz", "--cache-dir", cache, "--json"),
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(third.stdout)["n_computed"] == 0
    np.testing.assert_array_equal(_features(tmp_path / "f3.npz").values, first.values)


def _records(out) -> int:
    """Finished images recorded by a segment run (batches of records, one per line)."""
    return sum(len(batch.read_text().splitlines()) for batch in (out / ".done").glob("*.jsonl"))


def test_kill_9_during_segment_then_rerun_resumes_and_matches(tmp_path):
    images = tmp_path / "smears"
    images.mkdir()
    for copy in range(4):  # 32 distinct files (same pixels, other names)
        for source in sorted((SAMPLE / "bccd" / "JPEGImages").glob("*.jpg")):
            shutil.copy(source, images / f"{source.stem}_{copy}.jpg")
    out, reference = tmp_path / "out", tmp_path / "reference"
    process = subprocess.Popen(_cli("segment", images, "--out-dir", out, "-j", "1"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and _records(out) < 6:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _records(out)
    assert 0 < finished < 32 and not (out / "counts.csv").exists()
    resumed = subprocess.run(_cli("segment", images, "--out-dir", out, "-j", "1", "--json"),
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(resumed.stdout)["n_resumed"] >= finished - 1
    subprocess.run(_cli("segment", images, "--out-dir", reference, "-j", "1"), check=True, capture_output=True)
    for table in ("counts.csv", "objects.csv"):
        assert (out / table).read_text() == (reference / table).read_text()
    for label in (reference / "labels").iterdir():
        assert (out / "labels" / label.name).read_bytes() == label.read_bytes()
