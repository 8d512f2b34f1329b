"""How often the feature envelope flags cells: held-out known classes vs classes the model never saw vs another lab.

Trains on four PBC white-cell classes (neutrophil, lymphocyte, monocyte, eosinophil) inside 5-fold CV; the envelope
is fitted on each training part. Reports the share flagged among the held-out known cells (about 1 % by
construction), among the PBC classes left out of training (basophil, ig, erythroblast, platelet), and among BCCD
white-cell crops when ../shared/data/bccd is present. Nothing here chose the envelope's quantile (0.99, fixed by
definition) or the warning rule (a binomial tail test against that rate).

    python benchmarks/novelty_pbc.py [--features glcm,shape,color] [--per-class 400]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bloodcli import api
from bloodcli.io.datasets import Dataset, load_dataset
from bloodcli.learn.novelty import FeatureEnvelope
from bloodcli.learn.splits import make_folds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KNOWN = ("neutrophil", "lymphocyte", "monocyte", "eosinophil")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="glcm,shape,color")
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    options = api.ExecutionOptions(jobs=args.jobs)
    pbc = load_dataset(SHARED / "pbc")
    samples = [s for c in sorted(set(pbc.labels)) for s in [x for x in pbc.samples if x.label == c][: args.per_class]]
    table = api.featurize(Dataset(samples, str(SHARED / "pbc"), pbc.kind), args.features, options)
    known = np.isin(table.labels, KNOWN)
    values, labels = table.values[known], table.labels[known]
    unseen = table.values[~known]
    held_out_flags, unseen_share = [], []
    for train, test in make_folds(labels, None, 5, seed=0):
        envelope = FeatureEnvelope.fit(values[train], labels[train])
        held_out_flags.append(envelope.outside(values[test]))
        unseen_share.append(float(envelope.outside(unseen).mean()))
    result = {
        "features": args.features,
        "n_known": int(known.sum()),
        "held_out_known_flagged": float(np.concatenate(held_out_flags).mean()),
        "unseen_flagged_mean_over_folds": float(np.mean(unseen_share)),
        "unseen_by_class": _by_class(FeatureEnvelope.fit(values, labels), table.values[~known], table.labels[~known]),
    }
    bccd = SHARED / "bccd"
    if bccd.exists():
        other_lab = api.featurize(bccd, api.Plan.build(args.features), options)
        white = other_lab.values[other_lab.labels == "WBC"]
        result["bccd_wbc_flagged"] = float(FeatureEnvelope.fit(values, labels).outside(white).mean())
    json.dump(result, sys.stdout, indent=2)
    print()


def _by_class(envelope: FeatureEnvelope, values: np.ndarray, labels: np.ndarray) -> dict:
    return {c: round(float(envelope.outside(values[labels == c]).mean()), 3) for c in sorted(set(labels))}


if __name__ == "__main__":
    main()
