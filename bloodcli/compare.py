"""Compare feature sets (classical, deep, fused) across classifiers with repeated, paired CV.

Every extractor a comparison needs is computed once (each timed on its own, through the feature
cache); feature sets are column slices of that table, so adding a set or a model costs no image
work. Every (feature set, model) configuration is scored on the *same* repeated, stratified,
group-aware folds, which makes the per-fold scores paired: the best classical-only and the best
deep-only configurations are compared with the Nadeau–Bengio corrected resampled t-test, whose
variance correction accounts for the overlap of training sets between folds.

With an external test set (``test=``), every configuration is instead fitted on the whole training
set and scored once on the test set, whose features are computed with the training set's fitted
preprocessing. With augmentation, copies of training images join the training rows only.

Examples
--------
>>> from bloodcli.compare import compare
>>> result = compare("sample_data/pbc", ["glcm", "glcm+shape+color"], ["svm", "rf"], folds=3)  # doctest: +SKIP
>>> print(result.sentence())                                                                # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import joblib
import numpy as np
from scipy import stats

from bloodcli.api import RunOptions, align_labels, featurize, is_features_file
from bloodcli.augmentation import Augmentation
from bloodcli.datasets import Dataset, load_dataset
from bloodcli.errors import DatasetError, UsageError
from bloodcli.evaluation import EvaluationResult, Split, assert_groups_disjoint, augmentation_note, expand_split, make_folds, training_rows
from bloodcli.features import EXTRACTORS, parse_feature_names, parse_feature_options
from bloodcli.features.extraction import AugmentedRows, FeatureTable, resolve_jobs
from bloodcli.metrics import classification_metrics
from bloodcli.models import CLASSIFIERS, class_probabilities, encode_labels, make_classifier, most_likely
from bloodcli.preprocessing import Preprocessing

#: Metrics reported per configuration as mean ± std over all folds of all repeats.
COMPARE_METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "roc_auc_ovr")

#: Small grids searched by inner CV on each outer training part when tuning (nested CV).
TUNING_GRIDS: dict[str, dict[str, list]] = {
    "svm": {"svm__estimator__C": [1.0, 10.0, 100.0]},
    "rf": {"n_estimators": [200, 500], "max_depth": [None, 12]},
    "logreg": {"logreg__C": [0.1, 1.0, 10.0]},
    "xgboost": {"max_depth": [3, 5], "learning_rate": [0.05, 0.1]},
}

ALPHA = 0.05


def extractor_kind(name: str) -> str:
    """``"deep"`` or ``"classical"``: the extractor's ``kind`` attribute, else deep when batched."""
    cls = EXTRACTORS[name]
    return getattr(cls, "kind", None) or ("deep" if cls.batched else "classical")


def feature_set_kind(names: Sequence[str]) -> str:
    """``"classical"`` or ``"deep"`` when all extractors agree, else ``"fused"``."""
    kinds = {extractor_kind(n) for n in names}
    return kinds.pop() if len(kinds) == 1 else "fused"


def parse_feature_sets(specs: Sequence[str]) -> list[list[str]]:
    """``["glcm+shape", "resnet50"]`` -> lists of extractor names, without duplicate sets."""
    sets = [parse_feature_names(spec) for spec in specs]
    if not sets:
        raise UsageError("no feature sets given")
    unique = list({"+".join(s): s for s in sets}.values())
    return unique


def parse_models(models: str | Sequence[str]) -> list[str]:
    """``"svm,rf"`` -> ``["svm", "rf"]``, checked against :data:`~bloodcli.models.CLASSIFIERS`."""
    items = models.split(",") if isinstance(models, str) else list(models)
    names = list(dict.fromkeys(m.strip().lower() for m in items if m.strip()))
    unknown = [m for m in names if m not in CLASSIFIERS]
    if unknown or not names:
        raise UsageError(f"unknown model(s): {', '.join(unknown) or 'none given'} (available: {', '.join(CLASSIFIERS)})")
    return names


# --------------------------------------------------------------------------- feature extraction


@dataclass
class ExtractorTiming:
    """Wall-clock extraction time of one extractor over the dataset, and how much came from cache."""

    name: str
    kind: str
    seconds: float | None
    n_samples: int
    n_computed: int
    n_cached: int

    @property
    def ms_per_sample(self) -> float | None:
        return None if self.seconds is None else 1000.0 * self.seconds / max(self.n_samples, 1)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "ms_per_sample": self.ms_per_sample, "n_computed": self.n_computed,
            "n_cached": self.n_cached, "from_features_file": self.seconds is None,
        }  # fmt: skip


def extract_union(
    source, names: Sequence[str], preprocessing: Preprocessing, feature_options, options: RunOptions,
    augmentation: Augmentation | None = None,
) -> tuple[FeatureTable, dict[str, slice], list[ExtractorTiming]]:
    """One table with every extractor in ``names``, the column span of each, and their timings.

    Each extractor is extracted (and timed) on its own, so its cost per sample is measured
    rather than estimated; a features ``.joblib`` file is used as it is, without image work.
    """
    if not isinstance(source, Dataset) and is_features_file(source):
        if augmentation is not None and augmentation.enabled:
            raise UsageError(f"--augment needs images, but {source} is a features file")
        return _from_features_file(source, names)
    parsed = parse_feature_options(feature_options) if feature_options and not isinstance(feature_options, Mapping) else dict(feature_options or {})
    stray = set(parsed) - set(names)
    if stray:
        raise UsageError(f"feature option(s) given for unselected extractor(s): {', '.join(sorted(stray))}")
    dataset = source if isinstance(source, Dataset) else load_dataset(source, skip_errors=options.skip_errors)
    if getattr(options, "weights", None) is not None and all(extractor_kind(n) != "deep" for n in names):
        raise UsageError("--weights applies to deep feature extractors; no feature set uses one")
    _start_workers(min(resolve_jobs(options.jobs), len(dataset)))
    tables, timings = [], []
    for name in names:
        # --weights is for deep extractors; each extractor is featurized alone, so keep it from the others.
        own = options if extractor_kind(name) == "deep" else replace(options, weights=None)
        start = time.perf_counter()
        table = featurize(dataset, [name], preprocessing, {name: parsed[name]} if name in parsed else None, own, augmentation)
        seconds = time.perf_counter() - start
        tables.append(table)
        images = table.n_computed + table.n_cached  # one extractor: one per original and copy
        timings.append(ExtractorTiming(name, extractor_kind(name), seconds, images, table.n_computed, table.n_cached))
    return _join(tables) + (timings,)


def _start_workers(workers: int) -> None:
    """Start (and import bloodcli in) the reusable worker processes, so the first extractor timed doesn't pay for it."""
    if workers > 1:
        joblib.Parallel(n_jobs=workers)(joblib.delayed(extractor_kind)("glcm") for _ in range(workers))


def _join(tables: list[FeatureTable]) -> tuple[FeatureTable, dict[str, slice]]:
    """Concatenate per-extractor tables column-wise over the samples every one of them kept."""
    ids = [[s.id for s in t.samples] for t in tables]
    common = set.intersection(*map(set, ids))
    rows = [[i for i, sample_id in enumerate(t_ids) if sample_id in common] for t_ids in ids]
    first = tables[0]
    spans, start = {}, 0
    for table in tables:
        width = table.values.shape[1]
        spans[table.settings.names[0]] = slice(start, start + width)
        start += width
    settings = type(first.settings)(tuple(e for t in tables for e in t.settings.extractors), first.settings.preprocessing)
    failures = list(dict.fromkeys(f for t in tables for f in t.failures))
    union = FeatureTable(
        np.hstack([t.values[r] for t, r in zip(tables, rows)]), [n for t in tables for n in t.feature_names],
        [first.samples[i] for i in rows[0]], [first.content_keys[i] for i in rows[0]], settings, failures,
        sum(t.n_computed for t in tables), sum(t.n_cached for t in tables), _join_augmented(tables, rows),
    )  # fmt: skip
    return union, spans


def _join_augmented(tables: list[FeatureTable], rows: list[list[int]]) -> AugmentedRows | None:
    """Column-wise join of the augmented copies of the rows every table kept."""
    if tables[0].augmented is None:
        return None
    parts = [t.augmented.select(r) for t, r in zip(tables, rows)]
    if not all(np.array_equal(p.source_index, parts[0].source_index) for p in parts):
        raise AssertionError("extractors returned different augmented copies")
    return AugmentedRows(np.hstack([p.values for p in parts]), parts[0].source_index, parts[0].augmentation)


def _from_features_file(path, names: Sequence[str]) -> tuple[FeatureTable, dict[str, slice], list[ExtractorTiming]]:
    table = FeatureTable.load(path)
    spans, start = {}, 0
    for spec in table.settings.extractors:
        cls = EXTRACTORS.get(spec["name"])
        if cls is None:
            raise DatasetError(f"{path}: feature extractor '{spec['name']}' is not available in this bloodcli")
        extractor = cls.__new__(cls)  # only its column names are needed: skip validation (no weights file lookup)
        extractor.params = {**cls.defaults, **spec.get("params", {})}
        width = len(extractor.feature_names())
        spans[spec["name"]] = slice(start, start + width)
        start += width
    if start != table.values.shape[1]:
        raise DatasetError(f"{path}: {table.values.shape[1]} feature columns, but its extractors describe {start}")
    missing = [n for n in names if n not in spans]
    if missing:
        raise UsageError(f"{path} has features {'+'.join(spans)}, not {', '.join(missing)}")
    timings = [ExtractorTiming(n, extractor_kind(n), None, len(table), 0, len(table)) for n in names]
    return table, spans, timings


# --------------------------------------------------------------------------- cross-validation


def repeated_folds(labels, groups, folds: int, repeats: int, seed: int) -> list[Split]:
    """``repeats`` rounds of stratified (group-aware) K-fold splits, round ``r`` seeded ``seed + r``."""
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}")
    return [split for r in range(repeats) for split in make_folds(labels, groups, folds, seed + r)]


def _inner_splits(labels, groups, origin, seed: int) -> list[Split]:
    """Inner folds over the original rows of a training part; copies join their original's training side."""
    originals = np.flatnonzero(origin == np.arange(len(origin)))
    labels, groups = labels[originals], None if groups is None else groups[originals]
    smallest = min(Counter(labels).values())
    n_groups = len(set(groups)) if groups is not None else smallest
    folds = make_folds(labels, groups, max(2, min(3, smallest, n_groups)), seed)
    return [expand_split((originals[train], originals[test]), origin) for train, test in folds]


def _local_origin(origin: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``origin`` of ``rows`` as positions within ``rows`` (a training part holds the originals of its copies)."""
    position = np.full(len(origin), -1)
    position[rows] = np.arange(len(rows))
    return position[origin[rows]]


def _fit(model: str, values, targets, labels, groups, origin, seed: int, tune: bool):
    """A fitted classifier and the hyper-parameters chosen by inner CV (empty without tuning)."""
    estimator = make_classifier(model, seed, jobs=1)
    if not tune:
        return estimator.fit(values, targets), {}
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        estimator, TUNING_GRIDS[model], scoring="balanced_accuracy", cv=_inner_splits(labels, groups, origin, seed),
        n_jobs=1, refit=True, error_score="raise",
    )  # fmt: skip
    search.fit(values, targets)
    return search.best_estimator_, {k.split("__")[-1]: v for k, v in search.best_params_.items()}


def _run_fold(model, values, labels, groups, origin, classes, train, test, seed, tune):
    """Fit on ``train`` (tuning inside it only), predict ``test``; returns probabilities and fit seconds."""
    targets = encode_labels(labels[train], classes)
    start = time.perf_counter()
    part_groups = None if groups is None else groups[train]
    estimator, chosen = _fit(model, values[train], targets, labels[train], part_groups, _local_origin(origin, train), seed, tune)
    seconds = time.perf_counter() - start
    probabilities = class_probabilities(estimator, values[test], len(classes))
    return probabilities, seconds, chosen


@dataclass
class ConfigResult:
    """Scores of one (feature set, model) configuration over every fold of every repeat."""

    features: str
    kind: str
    model: str
    fold_metrics: list[dict]
    evaluation: EvaluationResult
    extract_ms_per_sample: float | None
    extract_cached: bool
    train_ms_per_sample: float
    chosen_params: dict = field(default_factory=dict)

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
            "chosen_params": self.chosen_params,
            "timing": {
                "extract_ms_per_sample": self.extract_ms_per_sample, "extract_cached": self.extract_cached,
                "train_ms_per_sample": self.train_ms_per_sample,
            },
        }  # fmt: skip


def evaluate_config(
    values, labels, groups, origin, splits: list[Split], model: str, seed: int = 0, jobs: int = 1, tune: bool = False
) -> tuple[list[dict], EvaluationResult, float, dict]:
    """Fold metrics, pooled out-of-fold result, training ms per training row and chosen parameters.

    ``values``, ``labels``, ``groups`` and ``origin`` are :func:`~bloodcli.evaluation.training_rows`
    (originals, then augmented copies); ``splits`` are over the originals.
    """
    classes = sorted(set(labels))
    fits = [expand_split(split, origin) for split in splits]
    outputs = joblib.Parallel(n_jobs=min(jobs, len(fits)))(
        joblib.delayed(_run_fold)(model, values, labels, groups, origin, classes, train, test, seed, tune) for train, test in fits
    )
    fold_metrics, fit_ms, chosen = [], [], Counter()
    for (train, test), (probabilities, seconds, params) in zip(fits, outputs):
        assert_groups_disjoint(groups, train, test)
        predicted = most_likely(probabilities, classes)
        fold_metrics.append(classification_metrics(labels[test], predicted, classes, probabilities))
        fit_ms.append(1000.0 * seconds / len(train))
        if params:
            chosen[_params_text(params)] += 1
    test_indices = np.concatenate([test for _, test in splits])
    probabilities = np.concatenate([p for p, _, _ in outputs])
    predictions = most_likely(probabilities, classes)
    pooled = classification_metrics(labels[test_indices], predictions, classes, probabilities)
    evaluation = EvaluationResult(pooled, fold_metrics, predictions, probabilities, test_indices, "")
    # Tuning picks per fold; report how often each setting won rather than one misleading value.
    return fold_metrics, evaluation, float(np.mean(fit_ms)), dict(chosen.most_common())


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


# --------------------------------------------------------------------------- external test set


@dataclass
class ExternalTest:
    """A test set featurized like the training set, its labels aligned to the training classes."""

    source: str
    values: np.ndarray  # rows whose label is a training class only
    spans: dict[str, slice]
    labels: np.ndarray
    excluded: dict[str, int]  # label that is no training class -> samples left out of the metrics
    n_seen_in_training: int  # test images identical (by content) to a training image
    failures: list

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The test values of the extractors ``names``, in that order."""
        return self.values[:, _columns(self.spans, names)]

    def to_dict(self) -> dict:
        return {
            "source": self.source, "n_samples": len(self.labels),
            "classes": {str(c): int(n) for c, n in sorted(Counter(self.labels).items())},
            "n_excluded_unknown_class": sum(self.excluded.values()), "excluded_labels": self.excluded,
            "n_seen_in_training": self.n_seen_in_training,
        }  # fmt: skip


def _columns(spans: dict[str, slice], names: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.arange(spans[n].start, spans[n].stop) for n in names])


def external_test(source, table: FeatureTable, names: Sequence[str], options: RunOptions, label_map=None) -> ExternalTest:
    """Features of ``source`` computed exactly as ``table``'s, labels aligned to its classes.

    The training set's fitted preprocessing (stain and scale references) and extractor parameters
    are reused: nothing is fitted on the test set. Samples whose aligned label is no training
    class are left out and counted in ``excluded``.
    """
    recorded = {spec["name"]: spec for spec in table.settings.extractors if spec["name"] in names}
    params = {name: spec["params"] for name, spec in recorded.items()}
    test, spans, _ = extract_union(source, names, table.settings.preprocessing, params, options)
    own = {spec["name"]: spec for spec in test.settings.extractors if spec["name"] in names}
    if own != recorded or test.settings.preprocessing != table.settings.preprocessing:
        raise UsageError(f"{source}: features computed with {test.settings.describe()}, unlike the training set's "
                         f"({table.settings.describe()})")  # fmt: skip
    classes = sorted(set(table.labels))
    labels = align_labels(test.labels, classes, label_map)
    known = np.isin(labels, classes)
    if not known.any():
        raise DatasetError(f"{source}: no test sample has a training class ({', '.join(classes)}); see --label-map")
    seen = set(table.content_keys)
    return ExternalTest(
        str(source), test.values[known], spans, labels[known], dict(sorted(Counter(labels[~known]).items())),
        sum(key in seen for key in test.content_keys), list(test.failures),
    )  # fmt: skip


def score_on_test(
    values, labels, groups, origin, test_values, test_labels, model: str, seed: int = 0, tune: bool = False
) -> tuple[list[dict], EvaluationResult, float, dict]:
    """Fit on every training row (copies included), score the test rows once; as :func:`evaluate_config`."""
    classes = sorted(set(labels))
    start = time.perf_counter()
    estimator, params = _fit(model, values, encode_labels(labels, classes), labels, groups, origin, seed, tune)
    seconds = time.perf_counter() - start
    probabilities = class_probabilities(estimator, test_values, len(classes))
    predicted = most_likely(probabilities, classes)
    metrics = classification_metrics(test_labels, predicted, classes, probabilities)
    evaluation = EvaluationResult(metrics, [metrics], predicted, probabilities, np.arange(len(test_labels)), "")
    return [metrics], evaluation, 1000.0 * seconds / len(values), {_params_text(params): 1} if params else {}


# --------------------------------------------------------------------------- paired test


def corrected_resampled_ttest(differences, test_train_ratio: float, alpha: float = ALPHA) -> dict:
    """Nadeau & Bengio (2003) corrected resampled t-test of paired per-fold score differences.

    The variance of the mean difference is inflated from ``s²/k`` to ``(1/k + n_test/n_train) s²``
    because the training sets of different folds overlap, which makes fold scores correlated.

    Parameters
    ----------
    differences : array-like, shape (k,)
        Score of A minus score of B on each of the same k folds (all repeats together).
    test_train_ratio : float
        Test size divided by training size of one fold (``1 / (K - 1)`` for K-fold CV).
    alpha : float
        1 - confidence level of the interval.

    Returns
    -------
    dict
        ``mean_difference``, ``t``, ``df``, ``p_value`` (two-sided), ``ci_low``, ``ci_high``.
    """
    d = np.asarray(differences, dtype=float)
    k = len(d)
    if k < 2:
        raise UsageError("the corrected t-test needs at least two paired folds")
    mean = float(d.mean())
    standard_error = float(np.sqrt((1.0 / k + test_train_ratio) * d.var(ddof=1)))
    df = k - 1
    if standard_error == 0.0:  # identical differences on every fold: no spread to test against
        t_value = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
        p_value = 1.0 if mean == 0 else 0.0
    else:
        t_value = mean / standard_error
        p_value = float(2 * stats.t.sf(abs(t_value), df))
    half_width = float(stats.t.ppf(1 - alpha / 2, df)) * standard_error
    return {"mean_difference": mean, "t": t_value, "df": df, "p_value": p_value,
            "ci_low": mean - half_width, "ci_high": mean + half_width}  # fmt: skip


def wilcoxon_p_value(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    d = np.asarray(differences, dtype=float)
    if not np.any(d):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def paired_comparison(a: ConfigResult, b: ConfigResult, metric: str, test_train_ratio: float) -> dict:
    """Corrected t-test and Wilcoxon test of ``a`` minus ``b`` on ``metric`` over the shared folds."""
    differences = a.scores(metric) - b.scores(metric)
    differences = differences[~np.isnan(differences)]
    result = corrected_resampled_ttest(differences, test_train_ratio)
    result.update(
        metric=metric, a=_config_ref(a, metric), b=_config_ref(b, metric), n_folds=int(len(differences)),
        test_train_ratio=test_train_ratio, wilcoxon_p_value=wilcoxon_p_value(differences),
        significant=result["p_value"] < ALPHA,
    )
    return result


def _config_ref(config: ConfigResult, metric: str) -> dict:
    return {"features": config.features, "kind": config.kind, "model": config.model, "mean": config.mean(metric)}


# --------------------------------------------------------------------------- result


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

    def best(self, kind: str | None = None) -> ConfigResult | None:
        """Highest mean ``metric`` (ties: first given), overall or among one kind of feature set."""
        pool = [c for c in self.configs if kind is None or c.kind == kind]
        return max(pool, key=lambda c: c.mean(self.metric) or 0.0) if pool else None

    def sentence(self) -> str:
        """One plain sentence: which kind of features wins and whether the difference is significant."""
        best = self.best()
        std = best.std(self.metric)
        spread = "" if std is None else f" ± {std:.3f}"
        overall = f"Best overall: {best.label} ({_metric_name(self.metric)} {best.mean(self.metric):.3f}{spread})."
        c = self.comparison
        if c.get("skipped"):
            return f"{overall} {c['note']}"
        a, b, diff = c["a"], c["b"], c["mean_difference"]
        winner, loser = (a, b) if diff >= 0 else (b, a)
        low, high = (c["ci_low"], c["ci_high"]) if diff >= 0 else (-c["ci_high"], -c["ci_low"])  # CI of winner − loser
        verdict = (
            f"the difference is significant (corrected t-test p = {c['p_value']:.3g} < {ALPHA})"
            if c["significant"] else f"the difference is not significant (corrected t-test p = {c['p_value']:.3g} ≥ {ALPHA})"
        )  # fmt: skip
        return (
            f"{winner['kind'].capitalize()} features ({winner['features']} + {winner['model']}) beat "
            f"{loser['kind']} features ({loser['features']} + {loser['model']}) by {abs(diff):.3f} "
            f"{_metric_name(self.metric)} (95% CI of the difference {low:+.3f} to {high:+.3f}); "
            f"{verdict}. {overall}"
        )

    def to_dict(self) -> dict:
        """JSON-ready: run settings, one entry per configuration, the best, the paired test, the sentence."""
        best = self.best()
        return {
            "source": self.source, "n_samples": int(len(self.labels)),
            "classes": {c: int((self.labels == c).sum()) for c in self.classes},
            "grouped": self.grouped, "folds": self.folds, "repeats": self.repeats, "seed": self.seed,
            "tuned": self.tuned, "selection_metric": self.metric,
            "protocol": self.protocol(),
            "test": None if self.test is None else self.test.to_dict(),
            "augmentation": None if self.augmented is None else self.augmented.to_dict(),
            "results": [dict(c.to_dict(self.metric), best=c is best) for c in self.configs],
            "best": {"features": best.features, "model": best.model, "kind": best.kind},
            "comparison": self.comparison, "sentence": self.sentence(),
            "extraction": {t.name: t.to_dict() for t in self.extraction},
            "skipped": [{"path": p, "reason": r} for p, r in self.failures],
        }  # fmt: skip

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
        return text + augmentation_note(self.augmented)

    def scored_labels(self) -> np.ndarray:
        """True labels of the scored samples, indexed by each configuration's ``evaluation.test_indices``."""
        return self.labels if self.test is None else self.test.labels


def protocol_text(folds: int, repeats: int, grouped: bool, tuned: bool) -> str:
    kind = "stratified group" if grouped else "stratified"
    tuning = "; hyper-parameters tuned by inner CV on each training part" if tuned else ""
    return f"{repeats}× repeated {folds}-fold {kind} cross-validation, the same folds for every configuration{tuning}"


def _metric_name(metric: str) -> str:
    return metric.replace("_", " ")


def compare(
    source,
    feature_sets: Sequence[str],
    models: str | Sequence[str] = ("svm", "rf", "logreg", "xgboost"),
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    options: RunOptions | None = None,
    tune: bool = False,
    *,
    metric: str = "balanced_accuracy",
    preprocessing: Preprocessing = Preprocessing(),
    feature_options=None,
    augmentation: Augmentation | None = None,
    test=None,
    label_map: Mapping[str, str] | None = None,
) -> ComparisonResult:
    """Score every (feature set, model) pair on the same repeated, stratified, group-aware folds.

    With ``test``, fit every pair on all of ``source`` instead and score it once on ``test``.

    Parameters
    ----------
    source : path or Dataset
        Dataset (class folders, CSV, VOC) or a features ``.joblib`` file (no image work at all).
    feature_sets : sequence of str
        Each a ``+``-joined list of extractors, e.g. ``"glcm+shape+color"``, ``"resnet50"``.
    models : str or sequence of str
        Classifier names from :data:`~bloodcli.models.CLASSIFIERS` (``"svm,rf"`` accepted).
    folds, repeats : int
        K-fold CV repeated ``repeats`` times; repeat ``r`` uses ``seed + r``.
    seed : int
        Seed of the splits and the classifiers: the same seed gives the same scores.
    options : RunOptions
        Cache, worker processes (extraction and folds), skip-errors.
    tune : bool
        Choose hyper-parameters from :data:`TUNING_GRIDS` by inner CV on each training part.
    metric : str
        Metric that picks the best configurations and is tested: balanced accuracy by default.
    preprocessing, feature_options
        As for :func:`bloodcli.api.featurize` (options as ``{"glcm": {"levels": 16}}`` or ``-F`` strings).
    augmentation : Augmentation, optional
        Augmented copies of the training images; they join the training rows of their originals only.
    test : path or Dataset, optional
        External labelled test set, featurized with the training set's fitted preprocessing (no CV).
    label_map : mapping, optional
        Test label -> training class, applied before case-insensitive matching; test samples whose
        label is no training class are left out of the metrics and counted.

    Returns
    -------
    ComparisonResult
    """
    if metric not in COMPARE_METRICS:
        raise UsageError(f"unknown metric '{metric}' (available: {', '.join(COMPARE_METRICS)})")
    options = options or RunOptions()
    sets = parse_feature_sets(feature_sets)
    model_names = parse_models(models)
    needed = list(dict.fromkeys(n for s in sets for n in s))
    table, spans, timings = extract_union(source, needed, preprocessing, feature_options, options, augmentation)
    Dataset(table.samples, str(source), "").require_classes(2)
    held_out = None if test is None else external_test(test, table, needed, options, label_map)
    splits = [] if held_out else repeated_folds(table.labels, table.groups, folds, repeats, seed)
    values, labels, groups, origin = training_rows(table)
    jobs = resolve_jobs(options.jobs)

    def score(names: list[str], model: str):
        train_values = values[:, _columns(spans, names)]
        if held_out is None:
            return evaluate_config(train_values, labels, groups, origin, splits, model, seed, jobs, tune)
        return score_on_test(train_values, labels, groups, origin, held_out.columns(names), held_out.labels, model, seed, tune)

    result = ComparisonResult(
        str(source), _score_configs(sets, model_names, timings, score), metric, None if held_out else folds,
        None if held_out else repeats, seed, tune, table.groups is not None, sorted(set(table.labels)), table.labels,
        timings, {}, list(table.failures) + (held_out.failures if held_out else []), splits, held_out, table.augmented,
    )  # fmt: skip
    ratio = float(np.mean([len(part[1]) / len(part[0]) for part in splits])) if splits else 0.0  # n_test / n_train
    result.comparison = classical_vs_deep(result, ratio)
    return result


def _score_configs(sets: list[list[str]], model_names: list[str], timings: list[ExtractorTiming], score) -> list[ConfigResult]:
    """One :class:`ConfigResult` per (feature set, model), scored by ``score(names, model)``."""
    timing = {t.name: t for t in timings}
    configs = []
    for names in sets:
        extract_ms = None if any(timing[n].ms_per_sample is None for n in names) else sum(timing[n].ms_per_sample for n in names)
        cached = any(timing[n].n_cached for n in names)
        for model in model_names:
            fold_metrics, evaluation, train_ms, params = score(names, model)
            configs.append(ConfigResult(
                "+".join(names), feature_set_kind(names), model, fold_metrics, evaluation, extract_ms, cached, train_ms, params,
            ))  # fmt: skip
    return configs


def classical_vs_deep(result: ComparisonResult, test_train_ratio: float) -> dict:
    """Paired test of the best deep-only minus the best classical-only configuration, or a note why not."""
    if result.test is not None:
        return {"skipped": True, "note": "Scores come from one external test set (one score per configuration), "
                "so the paired test across folds was not run."}  # fmt: skip
    classical, deep = result.best("classical"), result.best("deep")
    if classical is None or deep is None:
        absent = "classical-only" if classical is None else "deep-only"
        return {"skipped": True, "note": f"No {absent} feature set was compared, so classical vs deep was not tested."}
    return dict(paired_comparison(deep, classical, result.metric, test_train_ratio), skipped=False)


__all__ = [
    "COMPARE_METRICS", "ComparisonResult", "ConfigResult", "ExternalTest", "TUNING_GRIDS", "compare",
    "corrected_resampled_ttest", "extractor_kind", "external_test", "paired_comparison", "repeated_folds",
    "score_on_test", "wilcoxon_p_value",
]  # fmt: skip
