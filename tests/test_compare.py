"""bloodcli compare: paired repeated CV, group safety, determinism, the corrected t-test, CLI and report."""

import html
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLE
from typer.testing import CliRunner

from bloodcli import api
from bloodcli.api import compare
from bloodcli.cli import app
from bloodcli.errors import UsageError
from bloodcli.features import extractor_kind, feature_set_kind
from bloodcli.learn.statistics import corrected_resampled_ttest, wilcoxon_p_value
from bloodcli.report.outputs import write_comparison_outputs

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def pbc_result(tmp_path_factory, fake_deep):
    """One small comparison shared by several tests: classical, deep (fake) and fused sets."""
    options = api.ExecutionOptions(cache_dir=tmp_path_factory.mktemp("cache"), jobs=2)
    return compare(SAMPLE / "pbc", ["glcm", "color", "fakedeep", "color+fakedeep"], ["logreg", "svm"], folds=3, repeats=2,
                   seed=0, options=options)  # fmt: skip


def _without_timings(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data.pop("extraction")
    data["sentence"] = re.sub(r"[\d.]+ ms/image", "… ms/image", data["sentence"])  # measured costs vary
    for row in data["results"]:
        row.pop("timing")
    return data


def test_kinds_follow_the_kind_attribute_or_batched(fake_deep):
    assert extractor_kind("glcm") == "classical" and extractor_kind(fake_deep) == "deep"
    assert feature_set_kind(["glcm", "color"]) == "classical"
    assert feature_set_kind(["color", fake_deep]) == "fused"


def test_every_configuration_is_scored_on_the_same_repeated_folds(pbc_result):
    r = pbc_result
    assert len(r.configs) == 8 and len(r.splits) == 6  # 4 sets x 2 models, 2 repeats x 3 folds
    expected = np.concatenate([test for _, test in r.splits])
    for config in r.configs:
        assert len(config.fold_metrics) == 6
        assert (config.evaluation.test_indices == expected).all()  # paired: same folds, same order
    for repeat in range(2):  # each repeat tests every sample exactly once
        tested = np.concatenate([test for _, test in r.splits[3 * repeat : 3 * repeat + 3]])
        assert sorted(tested) == list(range(60))
    assert not (r.splits[0][1] == r.splits[3][1]).all() if len(r.splits[0][1]) == len(r.splits[3][1]) else True


def test_result_dict_best_and_paired_test(pbc_result):
    data = pbc_result.to_dict()
    assert {r["features"] for r in data["results"]} == {"glcm", "color", "fakedeep", "color+fakedeep"}
    best = [r for r in data["results"] if r["best"]]
    assert len(best) == 1 and data["selection_metric"] == "balanced_accuracy"
    top = max(r["metrics"]["balanced_accuracy"]["mean"] for r in data["results"])
    assert best[0]["metrics"]["balanced_accuracy"]["mean"] == top
    for row in data["results"]:
        assert set(row["metrics"]) == {"accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "roc_auc_ovr"}
        assert row["timing"]["train_ms_per_sample"] > 0 and row["timing"]["extract_ms_per_sample"] > 0
    comparison = data["comparison"]
    assert comparison["skipped"] is False and comparison["a"]["kind"] == "deep" and comparison["b"]["kind"] == "classical"
    assert comparison["n_folds"] == 6 and comparison["ci_low"] <= comparison["mean_difference"] <= comparison["ci_high"]
    assert 0 <= comparison["p_value"] <= 1 and 0 <= comparison["wilcoxon_p_value"] <= 1
    assert ("not significant" in data["sentence"]) == (comparison["p_value"] >= 0.05)
    assert data["extraction"]["fakedeep"]["kind"] == "deep" and data["extraction"]["glcm"]["n_computed"] == 60


def test_same_seed_gives_identical_results_file(pbc_result, tmp_path, fake_deep):
    options = api.ExecutionOptions(cache_dir=tmp_path / "cache", jobs=1)
    again = compare(SAMPLE / "pbc", ["glcm", "color", "fakedeep", "color+fakedeep"], ["logreg", "svm"], folds=3, repeats=2,
                    seed=0, options=options)  # fmt: skip
    write_comparison_outputs(tmp_path / "a", pbc_result)
    write_comparison_outputs(tmp_path / "b", again)
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert json.dumps(_without_timings(a), sort_keys=True) == json.dumps(_without_timings(b), sort_keys=True)
    other = compare(SAMPLE / "pbc", ["glcm"], ["logreg"], folds=3, repeats=2, seed=1, options=options)
    assert other.configs[0].scores("balanced_accuracy").tolist() != pbc_result.configs[0].scores("balanced_accuracy").tolist()


def test_groups_never_straddle_folds_on_voc_boxes(tmp_path):
    result = compare(SAMPLE / "bccd", ["color"], ["logreg"], folds=3, repeats=2, seed=0,
                     options=api.ExecutionOptions(cache_dir=tmp_path / "cache", jobs=1))  # fmt: skip
    assert result.grouped
    groups = np.array([s.path.stem for s in api.featurize(SAMPLE / "bccd", "color").samples])
    assert len(set(groups)) == 8 and len(result.splits) == 6
    for train, test in result.splits:
        assert not set(groups[train]) & set(groups[test])
    assert "stratified group" in result.to_dict()["protocol"]


def test_features_file_source_needs_no_image_work_and_matches(tmp_path, pbc_result):
    path = tmp_path / "feats.npz"
    api.featurize(SAMPLE / "pbc", "glcm,color", options=api.ExecutionOptions(cache_dir=tmp_path / "cache")).save(path)
    result = compare(path, ["color", "glcm"], ["logreg"], folds=3, repeats=2, seed=0)
    assert all(t.n_computed == 0 and t.ms_per_sample is None for t in result.extraction)
    reference = {(c.features, c.model): c for c in pbc_result.configs}
    for config in result.configs:
        assert np.allclose(config.scores("balanced_accuracy"), reference[config.features, "logreg"].scores("balanced_accuracy"))
    with pytest.raises(UsageError, match="shape"):
        compare(path, ["shape"], ["logreg"], folds=3, repeats=1)


def test_tuning_chooses_parameters_inside_training_folds(tmp_path):
    result = compare(SAMPLE / "pbc", ["color"], ["logreg"], folds=2, repeats=1, tune=True,
                     options=api.ExecutionOptions(cache_dir=tmp_path / "cache", jobs=1))  # fmt: skip
    chosen = result.configs[0].evaluation.chosen_params
    assert sum(chosen.values()) == 2 and all(key.startswith("C=") for key in chosen)
    assert "tuned by inner CV" in result.to_dict()["protocol"]


def test_corrected_resampled_ttest_by_hand():
    # d = [.02 .04 0 .06 .03]: mean .03, sample variance 5e-4; 5-fold CV so n_test/n_train = 1/4.
    # corrected variance (1/5 + 1/4) * 5e-4 = 2.25e-4 -> se .015 -> t = 2.0 with 4 df.
    # Two-sided p for t = 2, df 4 is 0.116117; t_.975,4 = 2.776445 -> CI .03 ± .0416467.
    result = corrected_resampled_ttest([0.02, 0.04, 0.0, 0.06, 0.03], 0.25)
    assert result["mean_difference"] == pytest.approx(0.03)
    assert result["t"] == pytest.approx(2.0) and result["df"] == 4
    assert result["p_value"] == pytest.approx(0.116117, abs=1e-6)
    assert result["ci_low"] == pytest.approx(0.03 - 0.0416467, abs=1e-6)
    assert result["ci_high"] == pytest.approx(0.03 + 0.0416467, abs=1e-6)
    naive = corrected_resampled_ttest([0.02, 0.04, 0.0, 0.06, 0.03], 0.0)  # uncorrected: t = .03 / sqrt(5e-4 / 5) = 3
    assert naive["t"] == pytest.approx(3.0) and naive["p_value"] < result["p_value"]
    assert corrected_resampled_ttest([0.0, 0.0, 0.0], 0.5)["p_value"] == 1.0
    assert wilcoxon_p_value([0, 0, 0]) == 1.0


def test_cli_json_and_out_dir(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "compare", str(SAMPLE / "pbc"), "--feature-sets", "glcm", "color", "-s", "glcm+shape+color", "--models", "logreg",
        "--folds", "2", "--repeats", "1", "--json", "--out-dir", str(out), "-j", "1",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"results", "comparison", "best", "sentence", "protocol", "extraction"} <= set(data)
    assert [r["features"] for r in data["results"]] == ["glcm", "glcm+shape+color", "color"]  # option values, then extra words
    for key in ("features", "model", "metrics", "timing", "best"):
        assert key in data["results"][0]
    assert data["comparison"]["skipped"] is True and "classical vs deep was not tested" in data["comparison"]["note"]
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.json", "report.html"}
    assert len((out / "results.csv").read_text().splitlines()) == 4
    assert json.loads((out / "results.json").read_text())["results"] == data["results"]


def test_cli_table_and_usage_errors(tmp_path):
    args = ["compare", str(SAMPLE / "pbc"), "-s", "color glcm", "-m", "logreg", "--folds", "2", "--repeats", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "★" in result.stdout and "Best overall" in result.stdout and "glcm" in result.stdout
    assert runner.invoke(app, [*args[:-2], "--repeats", "1", "-m", "nosuchmodel"]).exit_code == 2
    assert runner.invoke(app, ["compare", str(SAMPLE / "pbc"), "-s", "nosuchfeature"]).exit_code == 2
    assert runner.invoke(app, ["compare", str(SAMPLE / "pbc"), "-s", "color", "--weights", "none"]).exit_code == 2


def _load_screenshot_script():
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "benchmarks" / "report_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_is_self_contained_and_renders_in_a_headless_browser(pbc_result, tmp_path):
    report = write_comparison_outputs(tmp_path / "out", pbc_result)[2]
    text = report.read_text()
    assert text.count("data:image/png;base64,") >= 5  # bar chart + confusion and ROC of best classical and deep
    assert 'src="http' not in text and 'href="http' not in text and "<script" not in text
    assert pbc_result.to_dict()["sentence"] in html.unescape(text)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; scripts/test.sh does it when run as root)")
    shots = _load_screenshot_script()
    png = shots.screenshot(report, tmp_path / "shot.png")
    assert png.stat().st_size > 10_000
    assert shots.pixel_std(png) > 5  # a blank page is a single grey level
