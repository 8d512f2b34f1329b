"""The literature's methods side by side on PBC: every classifier, and each texture family with shape+color.

5-fold stratified CV (one round) on ../shared/data/pbc through ``bloodcli.api.compare``:
every registered classifier on glcm+shape+color, then glcm / lbp / gabor / all three texture
families, each with shape+color, under every classifier. Extraction is timed per extractor.

Usage: python benchmarks/cv_methods.py [--pbc DIR] [--jobs J] [--out FILE]   (writes benchmarks/results/cv_methods.json)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bloodcli import api
from bloodcli.io.files import atomic_write
from bloodcli.learn.classifiers import CLASSIFIERS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
FEATURE_SETS = ["glcm+shape+color", "lbp+shape+color", "gabor+shape+color", "glcm+lbp+gabor+shape+color"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pbc", type=Path, default=SHARED / "pbc")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "cv_methods.json")
    args = parser.parse_args()
    options = api.ExecutionOptions(jobs=args.jobs, cache_dir=args.cache_dir)
    result = api.compare(args.pbc, FEATURE_SETS, list(CLASSIFIERS), folds=5, repeats=1, seed=0, options=options)
    data = result.to_dict()
    rows = [{"features": r["features"], "model": r["model"], "accuracy": r["metrics"]["accuracy"]["mean"],
             "balanced_accuracy": r["metrics"]["balanced_accuracy"]["mean"],
             "extract_ms_per_image": r["timing"]["extract_ms_per_sample"], "train_ms_per_image": r["timing"]["train_ms_per_sample"]}
            for r in data["results"]]  # fmt: skip
    report = {"source": str(args.pbc), "protocol": data["protocol"], "rows": rows, "extraction": data["extraction"]}
    with atomic_write(args.out, "w") as handle:
        handle.write(json.dumps(report, indent=2) + "\n")
    print(f"{'features':32} {'model':8} {'acc':>6} {'bal':>6} {'ms/img':>7}")
    for row in rows:
        print(f"{row['features']:32} {row['model']:8} {row['accuracy']:6.3f} {row['balanced_accuracy']:6.3f} {row['extract_ms_per_image']:7.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
