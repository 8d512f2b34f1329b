"""Cross-lab helpers: label alignment between datasets, stain-robust texture channel."""

import json

import numpy as np
import pytest
from conftest import SAMPLE, synthetic_cell
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.errors import UsageError
from bloodcli.features.texture import hematoxylin_channel
from bloodcli.learn.labels import align_labels, parse_label_map


def test_labels_align_by_case_and_explicit_map():
    classes = ["lymphocyte", "neutrophil"]
    aligned = align_labels(["LYMPHOCYTE", " Neutrophil", "seg", "blast"], classes, {"seg": "neutrophil"})
    assert list(aligned) == ["lymphocyte", "neutrophil", "neutrophil", "blast"]
    assert parse_label_map("seg=neutrophil, LY=lymphocyte") == {"seg": "neutrophil", "LY": "lymphocyte"}
    with pytest.raises(UsageError):
        parse_label_map("seg")


def test_hematoxylin_channel_is_high_on_the_nucleus_and_low_on_background():
    image = synthetic_cell(size=96, cell_radius=30, nucleus_radius=14)
    density = hematoxylin_channel(image)
    assert density.dtype == np.uint8
    assert density[48, 48] > density[48, 70] > density[2, 2]


def test_evaluate_on_another_dataset_with_renamed_labels(tmp_path):
    runner = CliRunner()
    model = tmp_path / "m.bcm"
    assert runner.invoke(app, ["train", str(SAMPLE / "pbc"), "-m", "logreg", "-o", str(model), "-j", "1"]).exit_code == 0
    rows = ["path,label"]
    for cls, name in (("lymphocyte", "LYMPH"), ("platelet", "Platelet")):
        rows += [f"{p},{name}" for p in sorted((SAMPLE / "pbc" / cls).glob("*.jpg"))[:4]]
    manifest = tmp_path / "other_lab.csv"
    manifest.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["evaluate", str(model), str(manifest), "--label-map", "LYMPH=lymphocyte", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["classes_unknown_to_model"] == [] and metrics["n_samples"] == 8
    assert metrics["per_class"]["platelet"]["support"] == 4 and metrics["per_class"]["lymphocyte"]["support"] == 4
