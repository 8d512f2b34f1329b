import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, roc_auc_score

from bloodcli.errors import DatasetError
from bloodcli.learn.splits import assert_groups_disjoint, holdout_split, make_folds
from bloodcli.report.metrics import classification_metrics, specificity_per_class


def _grouped(n_groups=30, per_group=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"img{i}" for i in range(n_groups)], per_group)
    labels = rng.choice(["a", "b", "c"], size=len(groups))
    return labels, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_group_straddles_train_and_test(seed):
    labels, groups = _grouped(seed=seed)
    folds = make_folds(labels, groups, n_splits=5, seed=seed)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(len(labels)))  # every sample tested exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    train, test = holdout_split(labels, groups, test_size=0.25, seed=seed)
    assert not set(groups[train]) & set(groups[test]) and len(test) > 0


def test_straddling_split_is_caught():
    with pytest.raises(AssertionError, match="both sides"):
        assert_groups_disjoint(np.array(["a", "a", "b"]), np.array([0]), np.array([1, 2]))


def test_folds_are_stratified_and_seeded():
    labels = np.array(["a"] * 50 + ["b"] * 10)
    folds = make_folds(labels, None, 5, seed=3)
    assert all((labels[test] == "b").sum() == 2 for _, test in folds)
    again = make_folds(labels, None, 5, seed=3)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))


def test_too_few_samples_or_groups_for_folds():
    with pytest.raises(DatasetError, match="class 'b' has 2 sample"):
        make_folds(np.array(["a"] * 10 + ["b"] * 2), None, 5)
    with pytest.raises(DatasetError, match="3 groups"):
        make_folds(np.array(["a", "b"] * 6), np.array(["g1", "g2", "g3"] * 4), 5)


def test_metrics_match_scikit_learn_and_hand_computed_specificity():
    y_true = np.array(["a", "a", "a", "b", "b", "c", "c", "c", "c", "a"])
    y_pred = np.array(["a", "b", "a", "b", "c", "c", "c", "a", "c", "a"])
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], size=10)
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"], proba)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["f1_weighted"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert m["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["precision_weighted"] == pytest.approx(precision_score(y_true, y_pred, average="weighted"))
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))
    # class a: TN = samples not a and not predicted a = 5 of 6 negatives (one c predicted a)
    assert m["per_class"]["a"]["specificity"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert m["n_samples"] == 10


def test_specificity_of_a_perfect_classifier():
    assert (specificity_per_class(np.diag([3, 4, 5])) == 1).all()
