"""The one sentence a comparison ends with: which kind of features wins, by how much, and is it significant."""

from __future__ import annotations


def verdict(data: dict) -> str:
    """The verdict of a comparison, from its JSON form (``ComparisonResult.to_dict`` without the sentence)."""
    metric = _metric_name(data["selection_metric"])
    best = next(row for row in data["results"] if row["best"])
    score = best["metrics"][data["selection_metric"]]
    spread = "" if score["std"] is None else f" ± {score['std']:.3f}"
    overall = f"Best overall: {best['features']} + {best['model']} ({metric} {score['mean']:.3f}{spread})."
    c = data["comparison"]
    if c.get("skipped"):
        return f"{overall} {c['note']}"
    a, b, diff = c["a"], c["b"], c["mean_difference"]
    winner, loser = (a, b) if diff >= 0 else (b, a)
    low, high = (c["ci_low"], c["ci_high"]) if diff >= 0 else (-c["ci_high"], -c["ci_low"])  # CI of winner − loser
    test = f"corrected t-test p = {c['p_value']:.3g}"
    significance = (f"the difference is significant ({test} < {c['alpha']})" if c["significant"]
                    else f"the difference is not significant ({test} ≥ {c['alpha']})")  # fmt: skip
    return (
        f"{winner['kind'].capitalize()} features ({winner['features']} + {winner['model']}) beat "
        f"{loser['kind']} features ({loser['features']} + {loser['model']}) by {abs(diff):.3f} "
        f"{metric} (95% CI of the difference {low:+.3f} to {high:+.3f}); {significance}. {overall}"
    )


def _metric_name(metric: str) -> str:
    return metric.replace("_", " ")
