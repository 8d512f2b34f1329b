"""Shared fixtures: sample data paths, an isolated feature cache, small datasets built on the fly, a fake CNN."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bloodcli.features import EXTRACTORS
from bloodcli.features.base import FeatureExtractor

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "data"


def checkout_env(environ=None) -> dict:
    """``environ`` (default: this process's) with this checkout first on a fresh interpreter's import path."""
    environ = dict(os.environ if environ is None else environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return environ


def run_python(code: str, environ=None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter that imports this checkout; its output captured as text."""
    return subprocess.run([sys.executable, "-c", code], env=checkout_env(environ), capture_output=True, text=True,
                          timeout=timeout, check=check)  # fmt: skip


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (the shared benchmark data is only on development machines)")
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own feature cache so results never leak between tests."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BLOODCLI_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """A copy of 6 images per class of two sample classes (writable, so tests may damage it)."""
    root = tmp_path / "small"
    for cls in ("lymphocyte", "neutrophil"):
        (root / cls).mkdir(parents=True)
        for image in sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))[:6]:
            shutil.copy(image, root / cls / image.name)
    return root


@pytest.fixture
def other_lab(tmp_path) -> Path:
    """A second small dataset: other images of the small_dataset classes, labels cased differently, and
    a class ('blast', 2 platelet images) the small dataset does not have."""
    root = tmp_path / "other_lab"
    for cls, label, count in (("lymphocyte", "LYMPHOCYTE", 4), ("neutrophil", "Neutrophil", 4), ("platelet", "blast", 2)):
        (root / label).mkdir(parents=True)
        for image in sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))[-count:]:
            shutil.copy(image, root / label / image.name)
    return root


def synthetic_cell(size: int = 96, cell_radius: int = 30, nucleus_radius: int = 14) -> np.ndarray:
    """A fixed, analysable image: pale background, pink cell disc, purple nucleus disc, centred."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (235, 225, 215)
    image[distance < cell_radius] = (200, 150, 170)
    image[distance < nucleus_radius] = (90, 40, 140)
    return image


class FakeDeepExtractor(FeatureExtractor):
    """A cheap batched extractor standing in for a CNN, so the deep side is tested without TensorFlow."""

    name = "fakedeep"
    batched = True
    description = "test double"

    def feature_names(self):
        return ["fake_mean_r", "fake_mean_g", "fake_mean_b", "fake_std"]

    def compute_batch(self, images):
        return np.stack([np.r_[image.reshape(-1, 3).mean(axis=0), image.std()] for image in images])


@pytest.fixture(scope="module")
def fake_deep():
    """Register :class:`FakeDeepExtractor` as ``fakedeep`` for the tests of one module."""
    EXTRACTORS["fakedeep"] = FakeDeepExtractor
    yield "fakedeep"
    del EXTRACTORS["fakedeep"]
