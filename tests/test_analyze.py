"""``analyze``: counts and white-cell differential per smear and for the batch, resumable, with a review report."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, SAMPLE
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.analysis.framing import Framing
from bloodcli.cli import app
from bloodcli.io.images import write_image
from bloodcli.learn.model_file import TrainedModel
from bloodcli.pipeline.options import ExecutionOptions

SMEARS = SAMPLE / "bccd" / "JPEGImages"
CHROMIUM = Path("/usr/bin/chromium")
OUTPUTS = ("smears.csv", "smears.json", "cells.csv")


def synthetic_smear(white_cells=((180, 240), (470, 240))) -> np.ndarray:
    """A 640x480 slide with 6 pale-centred red cells, the given white cells (nucleus in cytoplasm) and 3 platelets."""
    image = np.full((480, 640, 3), (228, 222, 226), np.uint8)
    for x, y in [(80, 80), (80, 400), (330, 80), (330, 400), (560, 80), (560, 400)]:
        cv2.circle(image, (x, y), 40, (205, 140, 150), -1, lineType=cv2.LINE_AA)
        cv2.circle(image, (x, y), 13, (215, 170, 178), -1, lineType=cv2.LINE_AA)
    for x, y in white_cells:
        cv2.circle(image, (x, y), 55, (200, 175, 215), -1, lineType=cv2.LINE_AA)
        cv2.circle(image, (x, y), 30, (95, 45, 145), -1, lineType=cv2.LINE_AA)
    for x, y in [(330, 200), (330, 290), (600, 240)]:
        cv2.circle(image, (x, y), 7, (110, 60, 160), -1, lineType=cv2.LINE_AA)
    return cv2.GaussianBlur(image, (0, 0), 1.0)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A white-cell model trained on the sample PBC crops (it records its training profile and framing)."""
    path = tmp_path_factory.mktemp("model") / "wbc.bcm"
    result = CliRunner().invoke(app, ["train", str(SAMPLE / "pbc"), "-o", str(path), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    return path


def _analyze(model_path, out, *inputs, extra=()) -> dict:
    result = CliRunner().invoke(app, ["analyze", *map(str, inputs), "--model", str(model_path), "--out-dir", str(out),
                                      "--json", "-j", "1", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_synthetic_smear_with_known_cells_gives_the_known_counts(model_path, tmp_path):
    write_image(tmp_path / "in" / "two_white.png", synthetic_smear())
    write_image(tmp_path / "in" / "no_white.png", synthetic_smear(white_cells=()))
    data = _analyze(model_path, tmp_path / "out", tmp_path / "in")
    by_name = {s["name"]: s for s in data["smears"]}
    assert {k: by_name["two_white"][k] for k in ("RBC", "platelet", "WBC", "n_classified")} == {"RBC": 6, "platelet": 3, "WBC": 2, "n_classified": 2}
    assert {k: by_name["no_white"][k] for k in ("RBC", "platelet", "WBC", "n_classified")} == {"RBC": 6, "platelet": 3, "WBC": 0, "n_classified": 0}
    assert by_name["no_white"]["mean_confidence"] is None and sum(by_name["two_white"]["counts"].values()) == 2
    cells = _rows(tmp_path / "out" / "cells.csv")
    assert [(Path(c["smear"]).stem, c["object_id"]) for c in cells] == [("two_white", "1"), ("two_white", "2")]
    for cell in cells:
        probabilities = [float(cell[f"prob_{c}"]) for c in data["classes"]]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5) and float(cell["confidence"]) == pytest.approx(max(probabilities), abs=1e-4)
        crop = cv2.imread(str(tmp_path / "out" / cell["crop"]))
        assert crop.shape[:2] == tuple(data["framing"]["size"])  # framed and sized as the training crops


def test_per_smear_and_batch_totals_agree(model_path, tmp_path):
    data = _analyze(model_path, tmp_path / "out", SMEARS, extra=["--min-confidence", "0.9"])
    smears, batch = data["smears"], data["batch"]
    assert batch["n_smears"] == len(smears) == 8
    for key in ("RBC", "platelet", "WBC", "n_classified", "n_low_confidence"):
        assert batch[key] == sum(s[key] for s in smears)
    for name in data["classes"]:
        assert batch["counts"][name] == sum(s["counts"][name] for s in smears)
    assert sum(batch["percent"].values()) == pytest.approx(100, abs=0.05)
    rows = _rows(tmp_path / "out" / "smears.csv")
    assert [int(r["WBC"]) for r in rows] == [s["WBC"] for s in smears]
    assert len(_rows(tmp_path / "out" / "cells.csv")) == batch["n_classified"]
    assert batch["n_low_confidence"] == sum(float(c["confidence"]) < 0.9 for c in _rows(tmp_path / "out" / "cells.csv"))


def test_an_interrupted_run_resumes_to_identical_outputs(model_path, tmp_path):
    _analyze(model_path, tmp_path / "whole", SMEARS)
    seen = []

    def interrupt_after_three(step, total):
        seen.append(step)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.analyze([str(SMEARS)], TrainedModel.load(model_path), tmp_path / "resumed",
                    options=ExecutionOptions(jobs=1, progress=interrupt_after_three))  # fmt: skip
    assert not (tmp_path / "resumed" / "smears.csv").exists()  # nothing half-written
    data = _analyze(model_path, tmp_path / "resumed", SMEARS)
    assert data["n_resumed"] == 3
    for name in OUTPUTS:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_terminal_lines_exit_codes_and_bad_inputs(model_path, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", str(SMEARS), "--model", str(model_path), "--out-dir", str(tmp_path / "a"), "-j", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 9 and lines[0].startswith("BloodImage_00117: RBC ") and lines[-1].startswith("batch: RBC ")
    refused = runner.invoke(app, ["analyze", str(SMEARS), "--model", str(model_path), "--out-dir", str(tmp_path / "b"), "--min-confidence", "1.5"])
    assert refused.exit_code == 2 and "--min-confidence" in refused.stderr and not (tmp_path / "b").exists()
    missing = runner.invoke(app, ["analyze", str(SMEARS), "--model", str(tmp_path / "none.bcm"), "--out-dir", str(tmp_path / "c")])
    assert missing.exit_code == 4
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"not an image")
    write_image(tmp_path / "bad" / "good.png", synthetic_smear())
    failed = runner.invoke(app, ["analyze", str(tmp_path / "bad"), "--model", str(model_path), "--out-dir", str(tmp_path / "d")])
    assert failed.exit_code == 3 and "broken.jpg" in failed.stderr and not (tmp_path / "d" / "smears.csv").exists()
    skipped = _analyze(model_path, tmp_path / "e", tmp_path / "bad", extra=["--skip-errors"])
    assert [s["name"] for s in skipped["smears"]] == ["good"] and "broken.jpg" in skipped["skipped"][0]["path"]


def test_white_cells_are_framed_like_the_training_crops_and_never_mirrored():
    frame = Framing.of({"height": [300, 300, 300], "width": [200, 200, 200], "cell_diameter": [90, 100, 110]})
    assert (frame.height_per_diameter, frame.width_per_diameter, frame.size) == (3.0, 2.0, (300, 200))
    smear = synthetic_smear(white_cells=((60, 240),))  # near the left edge: the window shifts inside the smear
    crop = frame.crop(smear, (5, 185, 115, 295), (60.0, 240.0), np.pi * 55**2)
    assert crop.shape[:2] == (300, 200)
    purple = (crop[..., 2].astype(int) - crop[..., 1] > 60).sum(axis=0)  # nuclear columns
    assert purple[:5].sum() == 0 or purple[-5:].sum() == 0  # one nucleus, not a mirrored pair
    assert Framing.of(None).crop(smear, (5, 185, 115, 295), (60.0, 240.0), 1.0).shape[:2] == (132, 126)  # box + 10 %, clipped at the edge


def test_review_report_renders_the_gallery_and_chart_in_a_headless_browser(model_path, tmp_path):
    write_image(tmp_path / "in" / "synthetic.png", synthetic_smear())
    data = _analyze(model_path, tmp_path / "out", SMEARS, tmp_path / "in", extra=["--min-confidence", "0.999"])  # every cell is flagged
    report = tmp_path / "out" / "report.html"
    text = report.read_text()
    n_cells, n_smears = data["batch"]["n_classified"], data["batch"]["n_smears"]
    assert text.count("data:image/jpeg;base64,") == n_cells + n_smears  # every crop and every overlay
    assert text.count("data:image/png;base64,") == 1 and 'class="gallery"' in text
    assert text.count('<figure class="low">') == data["batch"]["n_low_confidence"] > 0
    assert 'src="http' not in text and "<script" not in text
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; scripts/test.sh does it when run as root)")
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "benchmarks" / "report_screenshot.py")
    shots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shots)
    png = shots.screenshot(report, tmp_path / "shot.png", size="1200,3200")
    assert png.stat().st_size > 20_000 and shots.pixel_std(png) > 5
    rgb = cv2.imread(str(png))[..., ::-1]
    gallery_red = ((rgb[..., 0] > 180) & (rgb[..., 1] < 60) & (rgb[..., 2] < 70)).sum()  # low-confidence frames drawn
    assert gallery_red > 200


def test_a_run_on_dask_writes_the_local_tables(model_path, tmp_path):
    from distributed import LocalCluster

    smears = [str(p) for p in sorted(SMEARS.glob("*.jpg"))[:3]]
    model = TrainedModel.load(model_path)
    api.analyze(smears, model, tmp_path / "local", report=False, options=ExecutionOptions(jobs=1, cache_dir=tmp_path / "c1"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        options = ExecutionOptions(scheduler=cluster.scheduler_address, cache_dir=tmp_path / "c2")
        api.analyze(smears, model, tmp_path / "dask", report=False, options=options)
    for name in OUTPUTS:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
