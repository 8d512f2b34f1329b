"""The classifier registry: each entry owns everything about one classifier.

An entry brings its factory (an unfitted scikit-learn compatible estimator for a seed and a number
of threads), the small grid ``compare --tune`` searches, the extra types its model file needs
(skops allow-list) and, where it has one, a way to train on a Dask cluster. Adding a classifier
is one :class:`Classifier` entry in :data:`CLASSIFIERS`: the CLI help, validation, tuning and
model files read it from there.

Examples
--------
>>> from bloodcli.learn.classifiers import make_classifier
>>> type(make_classifier("rf", seed=0)).__name__
'RandomForestClassifier'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bloodcli.errors import DatasetError, UsageError

if TYPE_CHECKING:  # NumPy and scikit-learn are imported where used: the registry itself loads in no time (CLI help)
    import numpy as np
    from sklearn.base import BaseEstimator


@dataclass(frozen=True)
class Classifier:
    """One registry entry.

    Parameters
    ----------
    factory : callable
        ``factory(seed, jobs)`` returns an unfitted estimator with ``predict_proba``.
    description : str
        One line for ``--help`` and the README.
    tuning_grid : dict
        Parameter grid searched by inner CV with ``compare --tune`` (keys as in ``get_params``).
    skops_types : tuple of str
        Types beyond skops' defaults that the saved estimator contains (its model-file allow-list).
    fit_on_dask : callable, optional
        ``fit_on_dask(client, values, targets, estimator)`` trains on a Dask cluster and returns a
        locally usable fitted estimator; without it, Dask runs only the joblib-parallel parts.
    min_per_class : int
        Fewest training samples of a class the classifier can fit on.
    sized_for : callable, optional
        ``sized_for(estimator, smallest)`` adapts an unfitted estimator to training data whose
        smallest class has ``smallest`` samples (e.g. fewer internal folds).
    """

    factory: Callable[[int, int], BaseEstimator]
    description: str
    tuning_grid: dict[str, list] = field(default_factory=dict)
    skops_types: tuple[str, ...] = ()
    fit_on_dask: Callable | None = None
    min_per_class: int = 1
    sized_for: Callable[[BaseEstimator, int], BaseEstimator] | None = None

    def estimator_for(self, targets: np.ndarray, seed: int = 0, jobs: int = 1) -> BaseEstimator:
        """An unfitted estimator for integer ``targets``; a one-line error when a class is too small."""
        import numpy as np

        counts = np.bincount(np.asarray(targets, dtype=np.int64))
        smallest = int(counts[counts > 0].min())
        if smallest < self.min_per_class:
            raise DatasetError(f"a class has {smallest} training sample(s); this classifier needs at least "
                               f"{self.min_per_class} per class (add images, or use -m logreg, rf or xgboost)")  # fmt: skip
        estimator = self.factory(seed, jobs)
        return self.sized_for(estimator, smallest) if self.sized_for else estimator


def _standardised(name: str, estimator) -> BaseEstimator:
    """``estimator`` (step ``name``) after a StandardScaler."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), (name, estimator)])


def _svm(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # Probabilities from Platt scaling fitted on internal 3-fold predictions, then one SVC on all data.
    svc = SVC(C=10.0, gamma="scale", random_state=seed)
    return _standardised("svm", CalibratedClassifierCV(svc, cv=3, ensemble=False))


def _svm_sized_for(estimator: BaseEstimator, smallest: int) -> BaseEstimator:
    # Platt scaling's internal stratified folds cannot outnumber the smallest class.
    return estimator.set_params(svm__cv=min(3, smallest))


def _random_forest(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=500, class_weight="balanced_subsample", n_jobs=jobs, random_state=seed)


def _logistic_regression(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression

    return _standardised("logreg", LogisticRegression(C=1.0, max_iter=5000, random_state=seed))


def _knn(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.neighbors import KNeighborsClassifier

    # Brute-force search: the fitted model is plain arrays (no tree structure in the model file).
    knn = KNeighborsClassifier(n_neighbors=7, weights="distance", algorithm="brute", n_jobs=jobs)
    return _standardised("knn", knn)


def _naive_bayes(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _decision_tree(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(min_samples_leaf=2, class_weight="balanced", random_state=seed)


def _mlp(seed: int, jobs: int) -> BaseEstimator:
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=500, early_stopping=True, random_state=seed)
    return _standardised("mlp", mlp)


def _xgboost(seed: int, jobs: int) -> BaseEstimator:
    from xgboost import XGBClassifier

    # No row subsampling: it draws per data partition, so a Dask run could not reproduce a local one.
    return XGBClassifier(
        n_estimators=400, learning_rate=0.1, max_depth=5, subsample=1.0, colsample_bytree=0.6,
        tree_method="hist", n_jobs=jobs, random_state=seed,
    )  # fmt: skip


def _fit_xgboost_on_dask(client, values: np.ndarray, targets: np.ndarray, estimator):
    """Fit ``estimator``'s XGBoost configuration with xgboost.dask and return a plain XGBClassifier.

    The data are split into one partition per worker; the returned classifier holds the booster
    trained on the cluster and predicts locally like any other model.
    """
    import dask.array as da
    from xgboost import XGBClassifier
    from xgboost import dask as dxgb

    workers = max(1, len(client.scheduler_info()["workers"]))
    rows = max(1, -(-len(values) // workers))
    features = da.from_array(values, chunks=(rows, values.shape[1]))
    labels = da.from_array(targets, chunks=(rows,))
    params = estimator.get_params()
    params.pop("n_jobs", None)
    distributed_model = dxgb.DaskXGBClassifier(**params)
    distributed_model.client = client
    distributed_model.fit(features, labels)
    local = XGBClassifier(**estimator.get_params())
    local.load_model(bytearray(distributed_model.get_booster().save_raw("json")))
    return local


_TREE = ("sklearn.tree._tree.Tree",)  # trees index arrays without bounds checks: model files validate them too

CLASSIFIERS: dict[str, Classifier] = {
    "svm": Classifier(
        _svm, "RBF support vector machine on standardised features, Platt-scaled probabilities",
        {"svm__estimator__C": [1.0, 10.0, 100.0]},
        ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"),
        min_per_class=2, sized_for=_svm_sized_for,
    ),
    "rf": Classifier(
        _random_forest, "random forest, 500 trees, class-balanced",
        {"n_estimators": [200, 500], "max_depth": [None, 12]}, _TREE,
    ),
    "logreg": Classifier(
        _logistic_regression, "multinomial logistic regression on standardised features", {"logreg__C": [0.1, 1.0, 10.0]},
    ),
    "xgboost": Classifier(
        _xgboost, "gradient-boosted trees (XGBoost, hist), saved in XGBoost's own JSON format",
        {"max_depth": [3, 5], "learning_rate": [0.05, 0.1]}, fit_on_dask=_fit_xgboost_on_dask,
    ),
    "knn": Classifier(_knn, "k nearest neighbours (7, distance-weighted) on standardised features", {"knn__n_neighbors": [3, 7, 15]}),
    "nb": Classifier(_naive_bayes, "Gaussian naive Bayes", {"var_smoothing": [1e-9, 1e-6, 1e-3]}),
    "dt": Classifier(
        _decision_tree, "one decision tree, class-balanced", {"max_depth": [None, 8, 16], "min_samples_leaf": [1, 2, 5]}, _TREE,
    ),
    "mlp": Classifier(
        _mlp, "multi-layer perceptron (128 hidden units, early stopping) on standardised features",
        {"mlp__alpha": [1e-4, 1e-3, 1e-2]}, ("sklearn.neural_network._stochastic_optimizers.AdamOptimizer",),
    ),
}  # fmt: skip

DEFAULT_CLASSIFIER = "svm"
#: What ``compare`` fits when no ``--model`` is given: the four usual ones (every entry is one ``-m`` away).
DEFAULT_COMPARE_MODELS = "svm,rf,logreg,xgboost"


def classifier_entry(name: str) -> Classifier:
    """The registry entry of ``name`` (any case); a one-line :class:`UsageError` for unknown names."""
    try:
        return CLASSIFIERS[name.strip().lower()]
    except KeyError:
        raise UsageError(f"unknown model '{name}' (available: {', '.join(CLASSIFIERS)})") from None


def parse_models(models: str | Sequence[str]) -> list[str]:
    """``"svm,rf"`` -> ``["svm", "rf"]``, each checked against :data:`CLASSIFIERS`."""
    items = models.split(",") if isinstance(models, str) else list(models)
    names = list(dict.fromkeys(m.strip().lower() for m in items if m.strip()))
    if not names:
        raise UsageError(f"no model given (available: {', '.join(CLASSIFIERS)})")
    for name in names:
        classifier_entry(name)
    return names


def trusted_skops_types() -> list[str]:
    """Every type a model file of a registered classifier may hold beyond skops' defaults."""
    return sorted({t for entry in CLASSIFIERS.values() for t in entry.skops_types})


def make_classifier(name: str, seed: int = 0, jobs: int = 1) -> BaseEstimator:
    """An unfitted classifier from :data:`CLASSIFIERS`."""
    return classifier_entry(name).factory(seed, jobs)


def fit_classifier(name: str, values: np.ndarray, labels, classes: list[str], seed: int = 0, jobs: int = 1, client=None):
    """Fit a fresh classifier on integer-encoded labels (so every backend sees the same targets).

    With a Dask ``client``, an entry with ``fit_on_dask`` trains on the cluster.
    """
    from bloodcli.learn.labels import encode_labels

    entry = classifier_entry(name)
    targets = encode_labels(labels, classes)
    estimator = entry.estimator_for(targets, seed, jobs)
    if client is not None and entry.fit_on_dask is not None:
        return entry.fit_on_dask(client, values, targets, estimator)
    return estimator.fit(values, targets)


__all__ = ["CLASSIFIERS", "Classifier", "classifier_entry", "fit_classifier", "make_classifier", "parse_models"]
