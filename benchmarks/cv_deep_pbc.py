"""Real-data figures for deep features: 5-fold stratified CV on PBC crops.

MobileNetV2 (alpha 0.35, the shipped ImageNet no-top weights, 224 px) pooled embeddings alone and
fused with the classical glcm+shape+color features, each with logistic regression and an SVM.

Usage: python benchmarks/cv_deep_pbc.py [--pbc DIR] [--cache-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bloodcli import api
from bloodcli.learn.validation import cross_validate

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "sample_data" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
FEATURE_SETS = {"mobilenetv2": "mobilenetv2", "fused": "glcm,shape,color,mobilenetv2"}
MODELS = ("logreg", "svm")
KEYS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "accuracy_fold_mean", "accuracy_fold_std")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pbc", type=Path, default=ROOT.parent / "shared" / "data" / "pbc")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/bc-cache"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cv_deep_pbc.json")
    args = parser.parse_args()
    options = api.ExecutionOptions(args.cache_dir, jobs=args.jobs)
    deep_options = {"mobilenetv2": {"alpha": 0.35, "input_size": 224}}
    results = {"dataset": str(args.pbc), "weights": WEIGHTS.name, "protocol": "5-fold stratified CV, seed 0", "runs": {}}
    for label, features in FEATURE_SETS.items():
        start = time.perf_counter()
        plan = api.Plan.build(features, deep_options, weights=str(WEIGHTS))
        table = api.featurize(args.pbc, plan, options)
        extract_seconds = round(time.perf_counter() - start, 1)
        for model in MODELS:
            start = time.perf_counter()
            metrics = cross_validate(table, model, folds=5, seed=0, jobs=args.jobs).summary()
            run = {key: round(metrics[key], 4) for key in KEYS} | {
                "n_samples": len(table), "n_features": int(table.values.shape[1]), "extract_seconds": extract_seconds,
                "cv_seconds": round(time.perf_counter() - start, 1),
            }  # fmt: skip
            results["runs"][f"{label}/{model}"] = run
            print(json.dumps({f"{label}/{model}": run}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
