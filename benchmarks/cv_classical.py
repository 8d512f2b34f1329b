"""Real-data figures for classical features: 5-fold CV of every classifier.

PBC crops: stratified 5-fold CV. BCCD VOC boxes (RBC/WBC/platelets): 5-fold CV grouped by source
image, so no smear contributes cells to both training and test folds.

Usage: python benchmarks/cv_classical.py [--pbc DIR] [--bccd DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bloodcli import api
from bloodcli.learn.classifiers import CLASSIFIERS
from bloodcli.learn.validation import cross_validate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def evaluate_all(source: Path, jobs: int) -> dict:
    start = time.perf_counter()
    table = api.featurize(source, "glcm,shape,color", options=api.ExecutionOptions(jobs=jobs))
    extract_seconds = time.perf_counter() - start
    results = {"dataset": str(source), "n_samples": len(table), "classes": sorted(set(table.labels)),
               "grouped": table.groups is not None, "extract_seconds": round(extract_seconds, 1), "models": {}}  # fmt: skip
    for model in CLASSIFIERS:
        start = time.perf_counter()
        metrics = cross_validate(table, model, folds=5, seed=0, jobs=jobs).summary()
        results["models"][model] = {
            key: round(metrics[key], 4)
            for key in ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "roc_auc_ovr",
                        "accuracy_fold_mean", "accuracy_fold_std")  # fmt: skip
        } | {"seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps({source.name: {model: results["models"][model]}}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pbc", type=Path, default=SHARED / "pbc")
    parser.add_argument("--bccd", type=Path, default=SHARED / "bccd")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cv_classical.json")
    args = parser.parse_args()
    results = [evaluate_all(args.pbc, args.jobs), evaluate_all(args.bccd, args.jobs)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
