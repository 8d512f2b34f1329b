"""Real-data figures for `bloodcli compare`: classical vs deep (MobileNetV2 0.35) vs fused features.

PBC crops (8 classes, 400 each): stratified CV. BCCD white-cell subtypes: one sample per smear, the
white-cell box from the VOC annotation, grouped by image (00037 and 00038 are near-duplicates and
share a group); basophil (2 samples) is dropped because it cannot appear in every fold.

Extraction times in the comparison come from the feature cache when it is warm; ``--cold N`` also
times every extractor without the cache on N images per class (recorded as ``cold_extraction``).
``--cnn`` also fine-tunes MobileNetV2 0.35 (the shipped weights, default recipe: 128 px, framing auto) on the
same folds, alone and fused with each feature set (written to ``compare_<name>_cnn.json``).

``--cnn-image-size`` and ``--cnn-framing`` change those two settings (the file name then says so).

Usage: python benchmarks/compare_real.py [pbc|bccd_wbc ...] [--models svm,logreg,rf,xgboost] [--folds 5] [--repeats 1] [--jobs 2]
       [--cnn [--cnn-image-size 128] [--cnn-framing auto]]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

from bloodcli import api
from bloodcli.features import extractor_kind, parse_feature_names
from bloodcli.io.datasets import Dataset, load_dataset, read_voc_boxes
from bloodcli.report.outputs import write_comparison_outputs

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WEIGHTS = ROOT / "sample_data" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
FEATURE_SETS = ["glcm+shape+color", "mobilenetv2", "glcm+shape+color+mobilenetv2"]
MODELS = "svm,logreg,rf,xgboost"
FEATURE_OPTIONS = {"mobilenetv2": {"weights": str(WEIGHTS), "alpha": "0.35"}}
DUPLICATE_GROUPS = {"BloodImage_00038": "BloodImage_00037"}  # near-duplicate smears: never split them


def wbc_manifest(bccd: Path, out: Path, drop: tuple[str, ...] = ("basophil",)) -> dict:
    """Write ``path,label,group,xmin,ymin,xmax,ymax`` for the white cell of each labelled smear."""
    rows, skipped = [], []
    with open(bccd / "wbc_subtypes.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            image = (bccd / row["image"]).resolve()
            if row["label"] in drop:
                skipped.append((image.name, f"class {row['label']} dropped"))
                continue
            _, boxes = read_voc_boxes(bccd / "Annotations" / f"{image.stem}.xml")
            white = [box for name, box in boxes if name == "WBC"]
            if len(white) != 1:
                skipped.append((image.name, f"{len(white)} WBC boxes"))
                continue
            rows.append([str(image), row["label"], DUPLICATE_GROUPS.get(image.stem, image.stem), *white[0]])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)
    return {"manifest": str(out), "n_rows": len(rows), "dropped": [list(s) for s in skipped]}


def cold_extraction(source, per_class: int, jobs: int) -> dict:
    """Milliseconds per sample of each extractor without the cache, on ``per_class`` samples per class."""
    dataset = load_dataset(source)
    chosen, seen = [], {}
    for sample in dataset.samples:
        if seen.get(sample.label, 0) < per_class:
            chosen.append(sample)
            seen[sample.label] = seen.get(sample.label, 0) + 1
    subset = Dataset(chosen, dataset.source, dataset.kind)
    options = api.ExecutionOptions(use_cache=False, jobs=jobs)
    timings = {}
    for name in parse_feature_names("+".join(FEATURE_SETS)):
        opts = {name: FEATURE_OPTIONS[name]} if name in FEATURE_OPTIONS else None
        plan = api.Plan.build([name], opts)
        api.featurize(Dataset(chosen[:2], "", ""), plan, options)  # load the model, start workers
        start = time.perf_counter()
        api.featurize(subset, plan, options)
        timings[name] = {"kind": extractor_kind(name), "ms_per_sample": 1000 * (time.perf_counter() - start) / len(chosen),
                         "n_samples": len(chosen), "jobs": jobs}  # fmt: skip
    return timings


def networks(args) -> list:
    """The fine-tuned network of ``--cnn`` (none without it), with the default recipe."""
    if not args.cnn:
        return []
    from bloodcli.learn.cnn.settings import CNNSettings

    framing = args.cnn_framing if args.cnn_framing in ("auto", "none") else float(args.cnn_framing)
    return [CNNSettings(backbone="mobilenetv2", weights=str(WEIGHTS), seed=args.seed, image_size=args.cnn_image_size, framing=framing)]


def cnn_suffix(args) -> str:
    """``_cnn`` for the default recipe; the image size and framing follow when they differ from it."""
    if not args.cnn:
        return ""
    changed = (f"{args.cnn_image_size}px" if args.cnn_image_size != 128 else "") + (f"_framing_{args.cnn_framing}" if args.cnn_framing != "auto" else "")
    return "_cnn" + (f"_{changed.strip('_')}" if changed else "")


def run(name: str, source: Path, args, extra: dict) -> None:
    start = time.perf_counter()
    options = api.ExecutionOptions(cache_dir=args.cache_dir, jobs=args.jobs)
    result = api.compare(source, FEATURE_SETS, args.models, folds=args.folds, repeats=args.repeats, seed=args.seed,
                         tune=args.tune, feature_options=FEATURE_OPTIONS, options=options, networks=networks(args))  # fmt: skip
    elapsed = time.perf_counter() - start
    paths = write_comparison_outputs(args.report_dir / f"{name}{cnn_suffix(args)}", result)
    data = result.to_dict() | extra | {
        "elapsed_seconds": round(elapsed, 1), "jobs": args.jobs, "machine": f"{platform.machine()}, shared CPU cores",
        "command": f"python benchmarks/compare_real.py {name} --models {args.models} --folds {args.folds} --repeats {args.repeats}"
                   + (" --tune" if args.tune else "") + (" --cnn" if args.cnn else "")
                   + (f" --cnn-image-size {args.cnn_image_size} --cnn-framing {args.cnn_framing}" if cnn_suffix(args) not in ("", "_cnn") else ""),
    }  # fmt: skip
    if args.cold:
        data["cold_extraction"] = cold_extraction(source, args.cold, args.jobs)
    out = ROOT / "benchmarks" / "results" / f"compare_{name}{cnn_suffix(args)}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(data["sentence"], flush=True)
    print(f"wrote {out} and {paths[2]} ({elapsed:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=["pbc", "bccd_wbc"], choices=["pbc", "bccd_wbc"])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cold", type=int, default=10, help="images per class for cache-less timing (0 = skip)")
    parser.add_argument("--cnn", action="store_true", help="also fine-tune MobileNetV2 0.35 on the same folds")
    parser.add_argument("--cnn-image-size", type=int, default=128, help="network input side (the recipe's default: 128)")
    parser.add_argument("--cnn-framing", default="auto", help="auto, none or a number of red-cell diameters")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/bc-cache"))
    parser.add_argument("--report-dir", type=Path, default=Path("/tmp/compare_real"))
    args = parser.parse_args()
    for name in args.datasets:
        if name == "pbc":
            run(name, SHARED / "pbc", args, {})
        else:
            manifest = wbc_manifest(SHARED / "bccd", Path("/tmp/bccd_wbc/manifest.csv"))
            run(name, Path(manifest["manifest"]), args, {"manifest": manifest})


if __name__ == "__main__":
    main()
