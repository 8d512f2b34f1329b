"""The one sentence a comparison ends with: which kind of features wins, at what cost, and is it significant."""

from __future__ import annotations


def verdict(data: dict) -> str:
    """The verdict of a comparison, from its JSON form (``ComparisonResult.to_dict`` without the sentence)."""
    key = data["selection_metric"]
    metric = _metric_name(key)
    best = next(row for row in data["results"] if row["best"])
    score = best["metrics"][key]
    spread = "" if score["std"] is None else f" ± {score['std']:.3f}"
    overall = f"Best overall: {best['features']} + {best['model']} ({metric} {score['mean']:.3f}{spread}, {cost_text(best, data)})."
    c = data["comparison"]
    if c.get("skipped"):
        return f"{overall} {c['note']}"
    a, b, diff = c["a"], c["b"], c["mean_difference"]
    winner, loser = (a, b) if diff >= 0 else (b, a)
    low, high = (c["ci_low"], c["ci_high"]) if diff >= 0 else (-c["ci_high"], -c["ci_low"])  # CI of winner − loser
    test = f"corrected t-test p = {c['p_value']:.3g}"
    significance = (f"the difference is significant ({test} < {c['alpha']})" if c["significant"]
                    else f"the difference is not significant ({test} ≥ {c['alpha']})")  # fmt: skip
    scores = "; ".join(f"best {ref['kind']}: {ref['features']} + {ref['model']}, {ref['mean']:.3f} at {cost_text(_row(data, ref), data)}"
                       for ref in (b, a))  # fmt: skip
    return (
        f"{metric.capitalize()} — {scores}. {winner['kind'].capitalize()} features win by {abs(diff):.3f} "
        f"(95% CI of the difference {low:+.3f} to {high:+.3f}); {significance}. {overall}"
    )


def cost_text(row: dict, data: dict) -> str:
    """Feature extraction cost of a result row per image computed in the run: '15 ms/image', or why it is unknown.

    A fine-tuned network's cost is its training: per image and epoch, and per epoch.
    """
    timing = row["timing"]
    if timing.get("network_seconds_per_epoch") is not None:
        return (f"training {format_ms(timing['network_ms_per_image_epoch'])} ms/image/epoch, "
                f"{timing['network_seconds_per_epoch']:.0f} s/epoch")  # fmt: skip
    ms = timing["extract_ms_per_sample"]
    if ms is not None:
        return f"{format_ms(ms)} ms/image"
    extraction = [data["extraction"][name] for name in row["features"].split("+")]
    if any(e["from_features_file"] for e in extraction):
        return "unknown cost: features read from a features file"
    return "unknown cost: features read from the cache, --no-cache measures it"


def format_ms(ms: float) -> str:
    """Milliseconds with the digits that matter: '213', '15', '4.6'."""
    return f"{ms:.0f}" if ms >= 10 else f"{ms:.1f}" if ms >= 0.1 else f"{ms:.2g}"


def _row(data: dict, ref: dict) -> dict:
    return next(r for r in data["results"] if r["features"] == ref["features"] and r["model"] == ref["model"])


def _metric_name(metric: str) -> str:
    return metric.replace("_", " ")
