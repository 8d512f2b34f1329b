"""Model files written before the package was restructured still load and predict exactly as they did.

``tests/data/model_0.1_*.bcm`` were trained on ``sample_data/pbc`` (glcm+shape+color) by the flat
0.1 layout, and ``*_predictions.csv`` are what that version's ``predict`` printed for them.
"""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app

DATA = Path(__file__).parent / "data"


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("model", ["svm", "xgboost"])
def test_model_files_of_the_previous_layout_predict_the_same(model):
    result = CliRunner().invoke(app, ["predict", str(DATA / f"model_0.1_{model}.bcm"), str(SAMPLE / "pbc" / "eosinophil"),
                                      str(SAMPLE / "pbc" / "platelet")])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected, got = _rows((DATA / f"model_0.1_{model}_predictions.csv").read_text()), _rows(result.stdout)
    assert [Path(r["path"]).name for r in got] == [Path(r["path"]).name for r in expected] and len(got) == 30
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    columns = [c for c in expected[0] if c.startswith("prob_")]
    np.testing.assert_allclose([[float(r[c]) for c in columns] for r in got], [[float(r[c]) for c in columns] for r in expected], atol=1e-6)
