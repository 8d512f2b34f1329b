"""Shared fixtures: sample data paths, an isolated feature cache, and small datasets built on the fly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "data"


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


def synthetic_cell(size: int = 96, cell_radius: int = 30, nucleus_radius: int = 14) -> np.ndarray:
    """A fixed, analysable image: pale background, pink cell disc, purple nucleus disc, centred."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (235, 225, 215)
    image[distance < cell_radius] = (200, 150, 170)
    image[distance < nucleus_radius] = (90, 40, 140)
    return image
