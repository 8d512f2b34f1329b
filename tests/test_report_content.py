"""What the compare and evaluate reports say: extraction cost from the same numbers as results.json, the
verdict's cost per image, a bar chart whose axis starts at 0, the evaluate report's ROC curves and provenance."""

import html
import json
import re
import shutil

import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

from bloodcli.cli import app

runner = CliRunner()


def _compare(dataset, out, *sets: str) -> dict:
    args = ["compare", str(dataset), *sets, "-m", "logreg", "--folds", "2", "--repeats", "1", "-j", "1", "--out-dir", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def _report_rows(report) -> dict[str, list[str]]:
    """Cells of the report's results table, by feature set (first model)."""
    text = report.read_text()
    table = text[text.index("<h2>Results") : text.index("</table>", text.index("<h2>Results"))]
    rows = {}
    for row in re.findall(r"<tr class=\"[a-z]*\">(.*?)</tr>", table):
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows.setdefault(cells[0], cells)
    return rows


def test_compare_report_cost_and_cache_labels_match_results_json(small_dataset, tmp_path):
    """Half the images cached by an earlier run: the report must say computed / cached as results.json does,
    and the cost per image must come from the computed images (not 'from the cache')."""
    part = tmp_path / "part"
    for folder in small_dataset.iterdir():
        (part / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[:3]:
            shutil.copy(image, part / folder.name / image.name)
    assert runner.invoke(app, ["extract", str(part), "-f", "glcm,color", "-o", str(tmp_path / "part.npz"), "-q"]).exit_code == 0
    data = _compare(small_dataset, tmp_path / "out", "-f", "glcm", "-f", "color", "-f", "glcm+color+shape")
    assert data["extraction"]["glcm"]["n_computed"] == 6 and data["extraction"]["glcm"]["n_cached"] == 6
    assert data["extraction"]["shape"]["n_computed"] == 12 and data["extraction"]["shape"]["n_cached"] == 0
    rows = _report_rows(tmp_path / "out" / "report.html")
    for result in data["results"]:
        timing = result["timing"]
        names = result["features"].split("+")
        assert timing["extract_n_computed"] == min(data["extraction"][n]["n_computed"] for n in names)
        assert timing["extract_n_cached"] == max(data["extraction"][n]["n_cached"] for n in names)
        assert timing["extract_ms_per_sample"] == pytest.approx(sum(data["extraction"][n]["ms_per_sample"] for n in names))
        cells = rows[result["features"]]
        assert f"{timing['extract_ms_per_sample']:.2f}" in cells and f"{timing['extract_n_computed']} / {timing['extract_n_cached']}" in cells
        assert not any("cache)" in c for c in cells)
    assert rows["glcm+color+shape"][-2] == "6 / 6"
    csv_header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert "extract_n_computed,extract_n_cached" in csv_header


def test_compare_report_says_cost_unknown_when_everything_came_from_the_cache(small_dataset, tmp_path):
    _compare(small_dataset, tmp_path / "first", "-f", "color")
    data = _compare(small_dataset, tmp_path / "again", "-f", "color")
    timing = data["results"][0]["timing"]
    assert (timing["extract_n_computed"], timing["extract_n_cached"], timing["extract_ms_per_sample"]) == (0, 12, None)
    cells = _report_rows(tmp_path / "again" / "report.html")["color"]
    assert "unknown" in cells and "0 / 12" in cells
    assert "unknown cost: features read from the cache" in data["sentence"]
