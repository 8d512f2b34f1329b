"""Which features and which classifier: every (feature set, classifier) pair on the same folds.

Feature sets are column slices of one table (:mod:`bloodcli.pipeline.union`), so adding a set or
a classifier costs no image work. Every configuration is scored by the one cross-validation loop
(:func:`~bloodcli.learn.validation.validate`) on the *same* repeated, stratified, group-aware
folds, which makes the per-fold scores paired: the best classical-only and the best deep-only
configurations are compared with the Nadeau–Bengio corrected resampled t-test
(:mod:`bloodcli.learn.statistics`). When references are fitted on images, each fold's rows are
refitted once and shared by every configuration.

With an external test set, every configuration is instead fitted on the whole training set and
scored once on the test set (:func:`~bloodcli.learn.validation.fit_and_test`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bloodcli.errors import UsageError
from bloodcli.features import feature_set_kind
from bloodcli.learn.splits import TrainingRows, repeated_folds
from bloodcli.learn.statistics import ALPHA, corrected_resampled_ttest, wilcoxon_p_value
from bloodcli.learn.validation import (
    EvaluationResult,
    ExternalTest,
    fit_and_test,
    fold_rows,
    protocol_notes,
    validate,
)
from bloodcli.pipeline.table import AugmentedRows, FeatureTable
from bloodcli.pipeline.union import ExtractorTiming, columns_of
from bloodcli.report.verdict import verdict

#: Metrics reported per configuration as mean ± std over all folds of all repeats.
COMPARE_METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "roc_auc_ovr")


@dataclass
class ConfigResult:
    """Scores of one (feature set, model) configuration over every fold of every repeat."""

    features: str
    kind: str
    model: str
    fold_metrics: list[dict]
    evaluation: EvaluationResult
    extract_ms_per_sample: float | None  # per image computed in this run; None when none was
    extract_computed: int  # images whose features for this set were all computed in this run
    extract_cached: int  # images at least one extractor of the set read from the cache
    training_cost: dict | None = None  # a fine-tuned network's: seconds per epoch and per image and epoch

    def scores(self, metric: str) -> np.ndarray:
        """Per-fold values of ``metric`` (NaN where undefined), in split order."""
        return np.array([np.nan if m.get(metric) is None else m[metric] for m in self.fold_metrics], dtype=float)

    def mean(self, metric: str) -> float | None:
        values = self.scores(metric)
        return None if np.isnan(values).all() else float(np.nanmean(values))

    def std(self, metric: str) -> float | None:
        values = self.scores(metric)[~np.isnan(self.scores(metric))]
        return float(np.std(values, ddof=1)) if len(values) > 1 else None  # one score (a test set): no spread

    @property
    def label(self) -> str:
        return f"{self.features} + {self.model}"

    def to_dict(self, metric: str) -> dict:
        return {
            "features": self.features, "kind": self.kind, "model": self.model,
            "metrics": {m: {"mean": self.mean(m), "std": self.std(m)} for m in COMPARE_METRICS},
            "fold_scores": {metric: self.scores(metric).tolist()},
            "chosen_params": self.evaluation.chosen_params,
            "timing": {
                "extract_ms_per_sample": self.extract_ms_per_sample, "extract_n_computed": self.extract_computed,
                "extract_n_cached": self.extract_cached,
                "train_ms_per_sample": self.evaluation.fit_ms_per_row,
                **({} if self.training_cost is None else {
                    "network_seconds_per_epoch": self.training_cost["seconds_per_epoch"],
                    "network_ms_per_image_epoch": 1000.0 * self.training_cost["seconds_per_image"],
                    "network_epochs": self.training_cost["epochs"]}),
            },
        }  # fmt: skip


def paired_comparison(a: ConfigResult, b: ConfigResult, metric: str, test_train_ratio: float) -> dict:
    """Corrected t-test and Wilcoxon test of ``a`` minus ``b`` on ``metric`` over the shared folds."""
    differences = a.scores(metric) - b.scores(metric)
    differences = differences[~np.isnan(differences)]
    result = corrected_resampled_ttest(differences, test_train_ratio)
    result.update(
        metric=metric, a=_config_ref(a, metric), b=_config_ref(b, metric), n_folds=int(len(differences)),
        test_train_ratio=test_train_ratio, wilcoxon_p_value=wilcoxon_p_value(differences),
        significant=result["p_value"] < ALPHA, alpha=ALPHA,
    )
    return result


def _config_ref(config: ConfigResult, metric: str) -> dict:
    return {"features": config.features, "kind": config.kind, "model": config.model, "mean": config.mean(metric)}


@dataclass
class ComparisonResult:
    """Every configuration's scores, the best one, and the classical-vs-deep paired test.

    ``labels`` are the training samples' labels; with an external ``test`` set, ``folds`` and
    ``repeats`` are None and each configuration has one score, on the test set.
    """

    source: str
    configs: list[ConfigResult]
    metric: str
    folds: int | None
    repeats: int | None
    seed: int
    tuned: bool
    grouped: bool
    classes: list[str]
    labels: np.ndarray
    extraction: list[ExtractorTiming]
    comparison: dict
    failures: list = field(default_factory=list)
    splits: list = field(default_factory=list)  # (train, test) index arrays shared by every configuration
    test: ExternalTest | None = None
    augmented: AugmentedRows | None = None
    notes: str = ""  # protocol notes on augmentation and fitted references

    def best(self, kind: str | None = None) -> ConfigResult | None:
        """Highest mean ``metric`` (ties: first given), overall or among one kind of feature set."""
        pool = [c for c in self.configs if kind is None or c.kind == kind]
        return max(pool, key=lambda c: c.mean(self.metric) or 0.0) if pool else None

    def to_dict(self) -> dict:
        """JSON-ready: run settings, one entry per configuration, the best, the paired test, the sentence."""
        best = self.best()
        data = {
            "source": self.source, "n_samples": int(len(self.labels)),
            "classes": {c: int((self.labels == c).sum()) for c in self.classes},
            "grouped": self.grouped, "folds": self.folds, "repeats": self.repeats, "seed": self.seed,
            "tuned": self.tuned, "selection_metric": self.metric,
            "protocol": self.protocol(),
            "test": None if self.test is None else self.test.to_dict(),
            "augmentation": None if self.augmented is None else self.augmented.to_dict(),
            "results": [dict(c.to_dict(self.metric), best=c is best) for c in self.configs],
            "best": {"features": best.features, "model": best.model, "kind": best.kind},
            "comparison": self.comparison,
            "extraction": {t.name: t.to_dict() for t in self.extraction},
            "skipped": [{"path": p, "reason": r} for p, r in self.failures],
        }  # fmt: skip
        return dict(data, sentence=verdict(data))

    def protocol(self) -> str:
        """How the scores were obtained, in one line."""
        if self.test is None:
            text = protocol_text(self.folds, self.repeats, self.grouped, self.tuned)
        else:
            tuning = "; hyper-parameters tuned by inner CV on the training set" if self.tuned else ""
            excluded = sum(self.test.excluded.values())
            left_out = f", {excluded} more left out: their labels are no training class" if excluded else ""
            text = (f"fitted on all {len(self.labels)} training samples, scored once on the external test set "
                    f"{self.test.source} ({len(self.test.labels)} samples{left_out}; no cross-validation){tuning}")  # fmt: skip
        return text + self.notes

    def scored_labels(self) -> np.ndarray:
        """True labels of the scored samples, indexed by each configuration's ``evaluation.test_indices``."""
        return self.labels if self.test is None else self.test.labels


def protocol_text(folds: int, repeats: int, grouped: bool, tuned: bool) -> str:
    kind = "stratified group" if grouped else "stratified"
    tuning = "; hyper-parameters tuned by inner CV on each training part" if tuned else ""
    return f"{repeats}× repeated {folds}-fold {kind} cross-validation, the same folds for every configuration{tuning}"


def compare_configs(
    table: FeatureTable, spans: dict[str, slice], timings: list[ExtractorTiming], sets: list[list[str]], models: list[str],
    *, folds: int = 5, repeats: int = 3, seed: int = 0, jobs: int = 1, tune: bool = False,
    metric: str = "balanced_accuracy", test: ExternalTest | None = None, source: str = "",
) -> ComparisonResult:  # fmt: skip
    """Score every (feature set, model) pair of ``table`` on the same folds, or once on ``test``.

    Parameters
    ----------
    table, spans, timings
        The union of every set's extractors, their column spans and timings (:func:`~bloodcli.pipeline.union.extract_union`).
    sets, models
        Feature sets (lists of extractor names) and classifier names, already checked.
    folds, repeats, seed
        K-fold CV repeated ``repeats`` times; repeat ``r`` uses ``seed + r``.
    jobs, tune
        Parallel folds; nested-CV tuning from each classifier's grid.
    metric
        Picks the best configurations and is tested.
    test
        An external test set: fit on all of ``table``, score once there (no CV, no paired test).
    """
    check_metric(metric)
    splits = [] if test else repeated_folds(table.labels, table.groups, folds, repeats, seed)
    rows = TrainingRows.of(table) if test else fold_rows(table, splits)  # refitted once per fold, shared by every config

    def score(names: list[str], model: str) -> EvaluationResult:
        columns = columns_of(spans, names)
        if test is not None:
            return fit_and_test(rows.columns(columns), test.values[:, columns], test.labels, model, seed=seed, tune=tune)[1]
        per_split = [r.columns(columns) for r in rows] if isinstance(rows, list) else rows.columns(columns)
        return validate(per_split, splits, model, seed=seed, jobs=jobs, tune=tune)

    result = ComparisonResult(
        source, _score_configs(sets, models, timings, score), metric, None if test else folds,
        None if test else repeats, seed, tune, table.groups is not None, sorted(set(table.labels)), table.labels,
        timings, {}, list(table.failures) + (test.failures if test else []), splits, test, table.augmented,
        protocol_notes(table),
    )  # fmt: skip
    result.comparison = classical_vs_deep(result, test_train_ratio(splits))
    return result


def test_train_ratio(splits) -> float:
    """Mean n_test / n_train of the splits (the corrected t-test's correction); 0 without splits."""
    return float(np.mean([len(part[1]) / len(part[0]) for part in splits])) if splits else 0.0


def check_metric(metric: str) -> None:
    """Refuse a selection metric ``compare`` does not report."""
    if metric not in COMPARE_METRICS:
        raise UsageError(f"unknown metric '{metric}' (available: {', '.join(COMPARE_METRICS)})")


def _score_configs(sets: list[list[str]], models: list[str], timings: list[ExtractorTiming], score) -> list[ConfigResult]:
    """One :class:`ConfigResult` per (feature set, model), scored by ``score(names, model)``."""
    timing = {t.name: t for t in timings}
    configs = []
    for names in sets:
        extract_ms = None if any(timing[n].ms_per_sample is None for n in names) else sum(timing[n].ms_per_sample for n in names)
        computed = min(timing[n].n_computed for n in names)
        cached = max(timing[n].n_cached for n in names)
        for model in models:
            evaluation = score(names, model)
            configs.append(ConfigResult("+".join(names), feature_set_kind(names), model, evaluation.fold_metrics, evaluation,
                                        extract_ms, computed, cached))  # fmt: skip
    return configs


def classical_vs_deep(result: ComparisonResult, test_train_ratio: float) -> dict:
    """Paired test of the best deep-only minus the best classical-only configuration, or a note why not."""
    if result.test is not None:
        return {"skipped": True, "note": "Scores come from one external test set (one score per configuration), "
                "so the paired test across folds was not run."}  # fmt: skip
    # With fine-tuned networks compared, the question is whether learning from the images beats hand-crafted features.
    classical, deep = result.best("classical"), result.best("fine-tuned") or result.best("deep")
    if classical is None or deep is None:
        absent = "classical-only" if classical is None else "deep-only or fine-tuned"
        return {"skipped": True, "note": f"No {absent} feature set was compared, so classical vs deep was not tested."}
    return dict(paired_comparison(deep, classical, result.metric, test_train_ratio), skipped=False)


__all__ = ["COMPARE_METRICS", "ComparisonResult", "ConfigResult", "ExternalTest", "compare_configs", "paired_comparison"]
