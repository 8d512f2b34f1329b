"""HTML."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from bloodcli import __version__
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.files import atomic_write
from bloodcli.report.figures import (
    confusion_matrix_figure,
    figure_base64,
    metric_bar_figure,
    roc_figure,
)
from bloodcli.report.metrics import roc_curves
from bloodcli.report.tables import SUMMARY_ROWS, extraction_cost, mean_std

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; font-size: .9rem; }
.verdict { font-size: 1.1rem; background: #f6f8fa; border-left: 4px solid #0969da; padding: .8rem 1rem; }
table { border-collapse: collapse; font-size: .88rem; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: right; }
th { background: #f6f8fa; } td.text, th.text { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures figure { margin: 0; max-width: 49%; } .wide figure { max-width: 100%; } figcaption { font-size: .85rem; color: #57606a; }
img { max-width: 100%; height: auto; }
"""


COMPARE_COLUMNS = (
    ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."), ("f1_weighted", "F1 weighted"),
    ("f1_macro", "F1 macro"), ("roc_auc_ovr", "ROC-AUC OvR"),
)  # fmt: skip


def _img(figure, caption: str) -> str:
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{figure_base64(figure)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _cell(value, text: bool = False) -> str:
    return f'<td class="text">{html.escape(str(value))}</td>' if text else f"<td>{html.escape(str(value))}</td>"


def _ms(value, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.2f}"


def _results_table(data: dict) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in COMPARE_COLUMNS)
    rows = []
    for r in data["results"]:
        timing = r["timing"]
        cells = [_cell(r["features"], True), _cell(r["kind"], True), _cell(r["model"], True)]
        cells += [_cell(mean_std(r["metrics"][key], " ± ")) for key, _ in COMPARE_COLUMNS]
        cells += [_cell(extraction_cost(r, "unknown")),
                  _cell(f"{timing['extract_n_computed']} / {timing['extract_n_cached']}"), _cell(_ms(timing["train_ms_per_sample"]))]  # fmt: skip
        rows.append(f'<tr class="{"best" if r["best"] else ""}">{"".join(cells)}</tr>')
    return (
        '<table><tr><th class="text">features</th><th class="text">kind</th><th class="text">model</th>'
        f"{head}<th>extract ms/image</th><th>images computed / from cache</th><th>train ms/row</th></tr>{''.join(rows)}</table>"
        '<p class="meta">Extraction cost per image computed in this run, summed over the set\'s extractors; unknown when '
        "every image came from the cache (--no-cache measures it); a fine-tuned network reads the images itself, so its "
        "cost is in training. Training cost per training row, per fold.</p>"
    )


def _comparison_table(comparison: dict) -> str:
    if comparison.get("skipped"):
        return f"<p>{html.escape(comparison['note'])}</p>"
    c = comparison
    rows = [
        (f"A ({c['a']['kind']})", f"{c['a']['features']} + {c['a']['model']}: {c['a']['mean']:.4f}"),
        ("B (classical)", f"{c['b']['features']} + {c['b']['model']}: {c['b']['mean']:.4f}"),
        ("mean difference A − B", f"{c['mean_difference']:+.4f}"),
        ("95% CI (corrected)", f"{c['ci_low']:+.4f} to {c['ci_high']:+.4f}"),
        ("Nadeau–Bengio corrected t", f"{c['t']:.3f} (df {c['df']}), p = {c['p_value']:.4g}"),
        ("Wilcoxon signed-rank", f"p = {c['wilcoxon_p_value']:.4g}"),
        ("paired folds", f"{c['n_folds']} (test/train ratio {c['test_train_ratio']:.3f})"),
    ]
    body = "".join(f'<tr><th class="text">{html.escape(k)}</th>{_cell(v, True)}</tr>' for k, v in rows)
    return f"<table>{body}</table><p class=\"meta\">Metric: {html.escape(c['metric'].replace('_', ' '))}. " \
        "Fold scores overlap in training data, so the t-test variance is corrected (Nadeau &amp; Bengio, 2003); " \
        "the Wilcoxon test ignores that correlation and is shown for reference only.</p>"  # fmt: skip


def _extraction_table(extraction: dict) -> str:
    rows = "".join(
        f"<tr>{_cell(name, True)}{_cell(t['kind'], True)}{_cell(_ms(t['ms_per_sample'], _unknown_cost(t)))}"
        f"{_cell(t['n_computed'])}{_cell(t['n_cached'])}</tr>"
        for name, t in extraction.items()
    )
    return (
        '<table><tr><th class="text">extractor</th><th class="text">kind</th><th>ms per computed image</th><th>computed</th>'
        f"<th>from cache</th></tr>{rows}</table><p class=\"meta\">Each extractor is timed on its own (decoding included), "
        "over the images it computed in this run; a cache read costs next to nothing and says nothing of the cost.</p>"
    )


def _unknown_cost(timing: dict) -> str:
    return "unknown (features file)" if timing["from_features_file"] else "unknown (all from cache)"


def _config_figures(result, config, heading: str) -> str:
    evaluation = config.evaluation
    y_true = result.scored_labels()[evaluation.test_indices]
    pooled = "external test set" if result.test else f"pooled out-of-fold predictions, {result.repeats} repeat(s)"
    confusion = confusion_matrix_figure(evaluation.metrics, f"{config.label}")
    roc = roc_figure(roc_curves(y_true, evaluation.probabilities, result.classes), f"ROC one-vs-rest: {config.label}")
    return (
        f"<h3>{html.escape(heading)}: {html.escape(config.label)}</h3><div class=\"figures\">"
        f"{_img(confusion, f'Confusion matrix ({pooled})')}{_img(roc, f'ROC curves ({pooled})')}</div>"
    )


def comparison_html(result) -> str:
    """The report of a :class:`~bloodcli.compare.ComparisonResult` as one self-contained HTML page."""
    data = result.to_dict()
    counts = ", ".join(f"{k} {v}" for k, v in data["classes"].items())
    external = result.test is not None
    scores = "on the external test set" if external else "mean ± std over all folds of all repeats"
    bars = "Score" if external else "Mean ± std"
    body = [
        "<h1>bloodcli compare</h1>",
        f'<p class="meta">{html.escape(data["source"])} — {data["n_samples"]} samples ({html.escape(counts)}); '
        f'{html.escape(data["protocol"])}; seed {data["seed"]}; best by mean {html.escape(result.metric.replace("_", " "))}.</p>',
        f'<p class="verdict">{html.escape(data["sentence"])}</p>',
        f"<h2>Results ({scores})</h2>", _results_table(data),
        '<div class="figures wide">' + _img(metric_bar_figure(data["results"], result.metric), f"{bars} per configuration") + "</div>",
        f"<h2>Classical vs {html.escape(data['comparison'].get('a', {}).get('kind', 'deep'))}: paired test on the same folds</h2>",
        _comparison_table(data["comparison"]),
        "<h2>Best configurations</h2>",
    ]  # fmt: skip
    shown = []
    for heading, config in (("Best classical", result.best("classical")), ("Best deep", result.best("deep")),
                            ("Best overall", result.best())):  # fmt: skip
        if config is not None and config not in shown:
            shown.append(config)
            body.append(_config_figures(result, config, heading))
    body += ["<h2>Feature extraction time</h2>", _extraction_table(data["extraction"])]
    if data["skipped"]:
        items = "".join(f"<li>{html.escape(s['path'])}: {html.escape(s['reason'])}</li>" for s in data["skipped"])
        body.append(f"<h2>Skipped inputs</h2><ul>{items}</ul>")
    return _page("bloodcli compare report", "\n".join(body))


def evaluation_html(metrics: dict, title: str = "bloodcli evaluate", model: dict | None = None) -> str:
    """The report of a metrics dictionary (``bloodcli evaluate``) as one self-contained HTML page.

    ``model``: what the model records (:func:`bloodcli.api.model_info`), shown as its provenance.
    """
    summary = "".join(
        f'<tr><th class="text">{html.escape(label)}</th>{_cell("n/a" if metrics.get(key) is None else f"{metrics[key]:.4f}")}</tr>'
        for key, label in SUMMARY_ROWS
    )
    per_class = "".join(
        f"<tr>{_cell(label, True)}" + "".join(_cell(f"{v[k]:.4f}") for k in ("precision", "recall", "specificity", "f1"))
        + f"{_cell(v['support'])}</tr>"
        for label, v in metrics["per_class"].items()
    )  # fmt: skip
    warning = ""
    if metrics.get("n_seen_in_training"):
        warning = (f'<p class="verdict">{metrics["n_seen_in_training"]} of {metrics["n_samples"]} samples were used to '
                   "train this model: these metrics are not held-out estimates.</p>")  # fmt: skip
    body = [
        f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{metrics["n_samples"]} samples.</p>', warning,
        f"<h2>Summary</h2><table>{summary}</table>",
        '<h2>Per class</h2><table><tr><th class="text">class</th><th>precision</th><th>recall</th><th>specificity</th>'
        f"<th>F1</th><th>support</th></tr>{per_class}</table>",
        '<h2>Confusion matrix and ROC curves</h2><div class="figures">' + _img(confusion_matrix_figure(metrics), "Confusion matrix")
        + (_img(roc_figure(metrics["roc_curves"], "ROC one-vs-rest"), "ROC curves, one class against the rest, from the "
                "predicted probabilities") if metrics.get("roc_curves") else "") + "</div>",
    ]  # fmt: skip
    if model is not None:
        body += ["<h2>Model</h2>", _provenance_table(model)]
    return _page(title, "\n".join(body))


def _provenance_table(model: dict) -> str:
    """Which model was scored: file and checksum, classifier, features, training data, its metrics, versions, dates."""
    provenance, metrics = model.get("provenance", {}), model.get("metrics")
    counts = ", ".join(f"{label} {n}" for label, n in provenance.get("class_counts", {}).items())
    augmentation = provenance.get("augmentation")
    protocol = "none recorded (trained without --folds or --test-size)"
    if metrics:
        scores = ", ".join(f"{label.lower()} {metrics[key]:.4f}" for key, label in SUMMARY_ROWS[:2] if metrics.get(key) is not None)
        protocol = f"{metrics.get('protocol', '')}: {scores}"
    rows = [
        ("model file", model["file"] or "not saved (trained in this run)"),
        ("SHA-256", model["sha256"] or "n/a"),
        ("classifier", f"{model['model']} (seed {provenance.get('seed', 'n/a')})"),
        ("classes", ", ".join(model["classes"])),
        ("features", _inputs_text(model)),
        ("preprocessing", Preprocessing.from_dict((model.get("features") or model).get("preprocessing")).describe()),
        ("training data", f"{provenance.get('training_source') or 'source not recorded'}: {provenance.get('n_samples', '?')} "
                          f"samples ({counts})" + (f" + {augmentation['n_rows']} augmented copies" if augmentation else "")),
        ("training protocol metrics", protocol),
        ("trained with", f"bloodcli {provenance.get('versions', {}).get('bloodcli', 'n/a')}, "
                         f"on {provenance.get('trained_at') or 'a date not recorded'}"),
        ("this report", f"bloodcli {__version__}, {datetime.now(timezone.utc).isoformat(timespec='seconds')}"),
    ]  # fmt: skip
    return "<table>" + "".join(f'<tr><th class="text">{html.escape(k)}</th>{_cell(v, True)}</tr>' for k, v in rows) + "</table>"


def _inputs_text(model: dict) -> str:
    """The feature extractors, or for a fine-tuned CNN its network (it learns its own features)."""
    if "network" in model:
        network = model["network"]
        return f"fine-tuned {network['backbone']} (alpha {network['alpha']}, {network['image_size']} px): learnt from the images"
    return "; ".join(_extractor_text(e) for e in model["features"]["extractors"])


def _extractor_text(extractor: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in extractor.get("params", {}).items() if v not in ("", None))
    return f"{extractor['name']} v{extractor.get('version', '?')} ({params})"


def write_html(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)
