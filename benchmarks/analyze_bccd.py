"""``analyze`` on the BCCD smears: per-smear white-cell class against the subtype labels, and counts against VOC boxes.

Two white-cell models, nothing chosen by looking at these scores (default features and classifier, default
``analyze`` settings):

A. trained on the PBC crops of the 4 classes the BCCD labels use (neutrophil, lymphocyte, monocyte, eosinophil),
   then ``analyze`` on all 364 BCCD smears;
B. trained on BCCD white-cell crops themselves, through ``segment --crops --labels`` (labelled_crops.csv), by
   5-fold cross-validation grouped by smear: each labelled smear is analysed by the model of the fold that held
   it out, trained on the manifest rows of the other folds' smears only (00037/00038, near-duplicates, share a group).

The per-smear class is the class with the largest summed probability over the smear's segmented white cells;
a labelled smear without one counts as wrong. Balanced accuracy is over the labelled smears of those 4 classes.

    BLOODCLI_CACHE_DIR=... PYTHONPATH=. python benchmarks/analyze_bccd.py ../shared/data WORK_DIR > benchmarks/results/analyze_bccd.json
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedGroupKFold

from bloodcli import api
from bloodcli.io.datasets import Dataset, load_dataset, read_voc_boxes
from bloodcli.pipeline.options import ExecutionOptions

CLASSES = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
DATA, WORK = Path(sys.argv[1]), Path(sys.argv[2])
BCCD = DATA / "bccd"
OPTIONS = ExecutionOptions(jobs=2)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def labels() -> dict[str, str]:
    with open(BCCD / "wbc_subtypes.csv") as handle:
        return {Path(r["image"]).stem: r["label"] for r in csv.DictReader(handle) if r["label"] in CLASSES}


def smear_classes(out_dir: Path) -> dict[str, str]:
    """Per smear: the class with the largest summed probability over its white cells."""
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(CLASSES)))
    with open(out_dir / "cells.csv") as handle:
        for row in csv.DictReader(handle):
            if row["class"]:
                sums[Path(row["smear"]).stem] += [float(row.get(f"prob_{c}", 0.0)) for c in CLASSES]
    return {stem: CLASSES[int(np.argmax(total))] for stem, total in sums.items()}


def class_scores(truth: dict[str, str], predicted: dict[str, str]) -> dict:
    stems = sorted(truth)
    y_true = [truth[s] for s in stems]
    y_pred = [predicted.get(s, "none") for s in stems]
    return {
        "n_smears": len(stems), "n_without_white_cell": sum(s not in predicted for s in stems),
        "balanced_accuracy": round(balanced_accuracy_score(y_true, y_pred), 4),
        "accuracy": round(float(np.mean([t == p for t, p in zip(y_true, y_pred)])), 4),
        "labels": CLASSES + ["none"], "confusion_matrix": confusion_matrix(y_true, y_pred, labels=CLASSES + ["none"]).tolist(),
        "true_counts": {c: y_true.count(c) for c in CLASSES},
    }  # fmt: skip


def count_agreement(out_dir: Path) -> dict:
    """Segmented counts per smear against the VOC boxes: mean absolute error, bias, share exactly right."""
    pairs = defaultdict(list)
    with open(out_dir / "smears.csv") as handle:
        for row in csv.DictReader(handle):
            stem = Path(row["smear"]).stem
            boxes = [name for name, _ in read_voc_boxes(BCCD / "Annotations" / f"{stem}.xml")[1]]
            for ours, theirs in (("RBC", "RBC"), ("WBC", "WBC"), ("platelet", "Platelets")):
                pairs[ours].append((int(row[ours]), boxes.count(theirs)))
    result = {}
    for name, values in pairs.items():
        ours, truth = np.array(values).T
        result[name] = {"mae": round(float(np.abs(ours - truth).mean()), 3), "bias": round(float((ours - truth).mean()), 3),
                        "exact_share": round(float((ours == truth).mean()), 3), "total": int(ours.sum()), "total_boxes": int(truth.sum())}  # fmt: skip
    return result


def model_a(smears: list[str]) -> dict:
    pbc = [s for s in load_dataset(DATA / "pbc").samples if s.label in CLASSES]
    table = api.featurize(Dataset(pbc, "pbc (4 classes)", "folder"), "glcm,shape,color", OPTIONS)
    model, _ = api.train(table, "svm", options=OPTIONS)
    model.save(WORK / "pbc4.bcm")
    log(f"model A trained on {len(table)} PBC crops; analysing {len(smears)} smears")
    start = time.perf_counter()
    analysis = api.analyze(smears, model, WORK / "a", options=OPTIONS)
    log(f"analysed in {time.perf_counter() - start:.0f} s")
    return {"model": "svm on glcm,shape,color of 1600 PBC crops (4 classes)", "input_warning": analysis.warning,
            "framing": analysis.framing.describe(), "smear_class": class_scores(labels(), smear_classes(WORK / "a")),
            "counts_vs_voc": count_agreement(WORK / "a")}  # fmt: skip


def model_b() -> dict:
    truth = labels()
    run = api.segment([str(BCCD)], WORK / "seg", crops=True, voc_dir=BCCD, labels=BCCD / "wbc_subtypes.csv", options=OPTIONS)
    manifest = load_dataset(WORK / "seg" / "labelled_crops.csv")
    log(f"manifest: {len(manifest)} labelled white-cell crops; {len(run.labelled.unplaced)} labelled smears unplaced")
    stems = sorted(truth)
    group = {s: "BloodImage_00037" if s == "BloodImage_00038" else s for s in stems}
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=0).split(stems, [truth[s] for s in stems], [group[s] for s in stems])
    predicted: dict[str, str] = {}
    for k, (train_index, test_index) in enumerate(folds):
        held_out = {group[stems[i]] for i in test_index}
        rows = [s for s in manifest.samples if s.label in CLASSES and group.get(s.group, s.group) not in held_out]
        assert not {group.get(s.group, s.group) for s in rows} & held_out  # no smear on both sides
        table = api.featurize(Dataset(rows, "bccd crops", "csv"), "glcm,shape,color", OPTIONS)
        model, _ = api.train(table, "svm", options=OPTIONS)
        test_smears = [str(BCCD / "JPEGImages" / f"{stems[i]}.jpg") for i in test_index]
        api.analyze(test_smears, model, WORK / f"b{k}", report=False, options=OPTIONS)
        predicted.update(smear_classes(WORK / f"b{k}"))
        log(f"fold {k}: trained on {len(rows)} crops, analysed {len(test_smears)} smears")
    return {"model": "svm on glcm,shape,color of BCCD white-cell crops (labelled_crops.csv), 5-fold grouped by smear",
            "n_labelled_crops": len(manifest), "n_unplaced_labels": len(run.labelled.unplaced),
            "unplaced_reasons": sorted({r.split(" (")[0] for r in run.labelled.unplaced.values()}),
            "smear_class": class_scores(truth, predicted)}  # fmt: skip


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    smears = [str(p) for p in sorted((BCCD / "JPEGImages").glob("*.jpg"))]
    print(json.dumps({"pbc_model": model_a(smears), "bccd_grouped_cv": model_b()}, indent=1))


if __name__ == "__main__":
    main()
