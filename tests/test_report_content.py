"""What the compare and evaluate reports say: extraction cost from the same numbers as results.json, the
verdict's cost per image, a bar chart whose axis starts at 0, the evaluate report's ROC curves and provenance."""

import hashlib
import html
import json
import re
import shutil

import pytest
from conftest import SAMPLE
from typer.testing import CliRunner

import bloodcli
from bloodcli.cli import app
from bloodcli.report.figures import metric_bar_figure
from bloodcli.report.verdict import verdict

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
    # The cache holds one entry per image and extractor set, and compare extracts (and times) one extractor at a time.
    for name in ("glcm", "color"):
        assert runner.invoke(app, ["extract", str(part), "-f", name, "-o", str(tmp_path / "part.npz"), "-q"]).exit_code == 0
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


def _comparison_data() -> dict:
    """A results.json of a classical-vs-deep comparison, as ComparisonResult.to_dict() writes it."""

    def row(features, kind, model, mean, ms, best=False):
        metrics = {m: {"mean": mean, "std": 0.02} for m in ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "roc_auc_ovr")}
        timing = {"extract_ms_per_sample": ms, "extract_n_computed": 60, "extract_n_cached": 0, "train_ms_per_sample": 0.5}
        return {"features": features, "kind": kind, "model": model, "metrics": metrics, "timing": timing, "best": best}

    results = [row("glcm+shape+color", "classical", "svm", 0.96, 15.2, best=True), row("mobilenetv2", "deep", "logreg", 0.90, 33.4),
               row("glcm+shape+color+mobilenetv2", "fused", "logreg", 0.95, 48.6)]  # fmt: skip
    comparison = {"skipped": False, "mean_difference": -0.06, "ci_low": -0.084, "ci_high": -0.040, "p_value": 0.001,
                  "alpha": 0.05, "significant": True, "a": {"features": "mobilenetv2", "kind": "deep", "model": "logreg", "mean": 0.90},
                  "b": {"features": "glcm+shape+color", "kind": "classical", "model": "svm", "mean": 0.96}}  # fmt: skip
    extraction = {n: {"from_features_file": False} for n in ("glcm", "shape", "color", "mobilenetv2")}
    return {"selection_metric": "balanced_accuracy", "results": results, "comparison": comparison, "extraction": extraction}


def test_verdict_states_the_cost_next_to_each_score():
    sentence = verdict(_comparison_data())
    assert "best classical: glcm+shape+color + svm, 0.960 at 15 ms/image" in sentence
    assert "best deep: mobilenetv2 + logreg, 0.900 at 33 ms/image" in sentence
    assert "Classical features win by 0.060" in sentence and "the difference is significant" in sentence
    assert "Best overall: glcm+shape+color + svm (balanced accuracy 0.960 ± 0.020, 15 ms/image)" in sentence


def test_bar_chart_starts_at_zero_with_readable_labels_and_a_legend_clear_of_the_bars():
    data = _comparison_data()
    figure = metric_bar_figure(data["results"], "balanced_accuracy")
    axes = figure.axes[0]
    bars = axes.patches[: len(data["results"])]
    assert [bar.get_width() for bar in bars] == pytest.approx([0.96, 0.90, 0.95])  # horizontal: lengths are the scores
    assert axes.get_xlim()[0] == 0 and all(bar.get_x() == 0 for bar in bars)
    labels = axes.get_yticklabels()
    assert [t.get_text() for t in labels] == ["glcm+shape+color + svm", "mobilenetv2 + logreg", "glcm+shape+color+mobilenetv2 + logreg"]
    assert all(t.get_fontsize() >= 9 and t.get_rotation() == 0 for t in labels)
    figure.canvas.draw()
    legend = figure.legends[0].get_window_extent()
    assert not any(legend.overlaps(bar.get_window_extent()) for bar in bars)
    texts = [t.get_text() for t in axes.texts]
    assert "0.960 · 15 ms/image" in texts and "0.900 · 33 ms/image" in texts


def test_evaluate_report_has_roc_curves_and_model_provenance(small_dataset, tmp_path):
    model = tmp_path / "model.bcm"
    train = runner.invoke(app, ["train", str(small_dataset), "-f", "color", "-m", "logreg", "--folds", "2", "-o", str(model), "-q"])
    assert train.exit_code == 0, train.output
    result = runner.invoke(app, ["evaluate", str(model), str(SAMPLE / "pbc"), "--out-dir", str(tmp_path / "eval"), "-q",
                                 "--label-map", "eosinophil=lymphocyte,platelet=neutrophil"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    curves = metrics["roc_curves"]
    assert set(curves) == {"lymphocyte", "neutrophil"} and curves["lymphocyte"]["fpr"][0] == 0 and curves["lymphocyte"]["tpr"][-1] == 1
    assert 0 <= curves["lymphocyte"]["auc"] <= 1
    text = html.unescape((tmp_path / "eval" / "report.html").read_text())
    assert text.count("data:image/png;base64,") == 2 and "ROC curves, one class against the rest" in text
    provenance = text[text.index("<h2>Model</h2>") :]
    for expected in ("model.bcm", hashlib.sha256(model.read_bytes()).hexdigest(), "logreg (seed 0)", "color v",
                     f"{small_dataset}: 12 samples (lymphocyte 6, neutrophil 6)", "2-fold stratified cross-validation: accuracy",
                     f"bloodcli {bloodcli.__version__}, on 20"):  # fmt: skip
        assert expected in provenance, expected


def test_evaluate_with_test_set_report_names_the_unsaved_model(small_dataset, other_lab, tmp_path):
    result = runner.invoke(app, ["evaluate", str(small_dataset), "--test", str(other_lab), "-f", "color", "-m", "logreg",
                                 "--out-dir", str(tmp_path / "eval"), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = html.unescape((tmp_path / "eval" / "report.html").read_text())
    assert "not saved (trained in this run)" in text and "ROC curves" in text and f"{small_dataset}: 12 samples" in text
