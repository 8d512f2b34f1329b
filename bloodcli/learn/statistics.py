"""Paired tests."""

from __future__ import annotations

import numpy as np
from scipy import stats

from bloodcli.errors import UsageError

ALPHA = 0.05


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
