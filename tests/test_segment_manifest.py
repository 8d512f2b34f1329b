"""``segment --crops`` writes manifests that train reads with smears as groups; ``--labels`` names white cells."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.io.datasets import crop, load_dataset
from bloodcli.io.images import read_image

SMEARS = SAMPLE / "bccd" / "JPEGImages"


def _labels(tmp_path: Path) -> Path:
    """Alternating made-up subtypes for the sample smears, in the wbc_subtypes.csv format (paths relative to the CSV)."""
    path = tmp_path / "labels.csv"
    rows = [f"{image.resolve()},{'neutrophil' if i % 2 else 'lymphocyte'}" for i, image in enumerate(sorted(SMEARS.glob("*.jpg")))]
    path.write_text("image,label\n" + "\n".join(rows) + "\n")
    return path


def _segment(tmp_path, *extra) -> tuple[Path, dict]:
    out = tmp_path / "seg"
    result = CliRunner().invoke(app, ["segment", str(SAMPLE / "bccd"), "--out-dir", str(out), "--crops", "--json", *extra])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_crop_manifest_lists_every_object_with_its_smear_as_group(tmp_path):
    out, summary = _segment(tmp_path)
    with open(out / "crops.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "group", "xmin", "ymin", "xmax", "ymax"]
    assert len(rows) == summary["n_objects"]
    dataset = load_dataset(out / "crops.csv")
    assert dataset.groups is not None and len(set(dataset.groups)) == len(list(SMEARS.glob("*.jpg")))
    sample = dataset.samples[0]  # the manifest's box, padded by the loader, is the crop segment wrote
    written = read_image(out / "crops" / rows[0]["label"] / f"{rows[0]['group']}_1.png")
    np.testing.assert_array_equal(crop(read_image(sample.path), sample.box), written)


def test_labelled_manifest_round_trips_into_train_with_groups(tmp_path):
    out, summary = _segment(tmp_path, "--labels", str(_labels(tmp_path)), "--evaluate", str(SAMPLE / "bccd"))
    with open(out / "labelled_crops.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert summary["n_labelled_crops"] == len(rows) >= 6
    assert {r["label"] for r in rows} == {"neutrophil", "lymphocyte"}
    assert len({r["group"] for r in rows}) == len(rows)  # one named white cell per smear
    result = CliRunner().invoke(app, ["train", str(out / "labelled_crops.csv"), "--folds", "2", "-m", "logreg", "--json"])
    assert result.exit_code == 0, result.output
    assert "group" in json.loads(result.stdout)["metrics"]["protocol"]


def test_labels_without_crops_or_with_a_bad_file_are_refused(tmp_path):
    result = CliRunner().invoke(app, ["segment", str(SMEARS), "--out-dir", str(tmp_path / "o"), "--labels", str(_labels(tmp_path))])
    assert result.exit_code == 2 and "--crops" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("file,kind\na.jpg,x\n")
    result = CliRunner().invoke(app, ["segment", str(SMEARS), "--out-dir", str(tmp_path / "o"), "--crops", "--labels", str(bad)])
    assert result.exit_code == 3 and "'image' and 'label'" in result.stderr
    assert not (tmp_path / "o").exists()  # refused before any work
