"""Cross-lab ablation: train on PBC white cells, test on BCCD white cells (balanced accuracy).

Train: ../shared/data/pbc {neutrophil, lymphocyte, monocyte, eosinophil}. Test: the BCCD white-cell
subtypes (wbc_subtypes.csv), cropped around the single VOC WBC box of each image.

Usage: python benchmarks/crosslab.py   (writes benchmarks/results/crosslab.json)
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

from bloodcli import api
from bloodcli.datasets import Dataset, load_dataset, read_voc_boxes
from bloodcli.features import extractors_from_settings
from bloodcli.metrics import classification_metrics
from bloodcli.models import train_model
from bloodcli.preprocessing import Preprocessing

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLASSES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil")
CONFIGS = {
    "classical": ("glcm,shape,color", [], Preprocessing()),
    "classical + scale": ("glcm,shape,color", [], Preprocessing(cell_diameter="auto")),
    "classical + reinhard": ("glcm,shape,color", [], Preprocessing(stain="reinhard")),
    "classical + macenko": ("glcm,shape,color", [], Preprocessing(stain="macenko")),
    "classical + macenko + scale": ("glcm,shape,color", [], Preprocessing(stain="macenko", cell_diameter="auto")),
    "H-texture + shape + macenko + scale": ("glcm,shape", ["glcm.channel=hematoxylin"], Preprocessing(stain="macenko", cell_diameter="auto")),
    "shape + scale": ("shape", [], Preprocessing(cell_diameter="auto")),
}


def bccd_white_cells(folder: Path) -> Path:
    """A manifest of BCCD white-cell crops (near-duplicate images 00037/00038 share a group)."""
    manifest = folder / "bccd_wbc.csv"
    with open(SHARED / "bccd" / "wbc_subtypes.csv") as handle, open(manifest, "w") as out:
        out.write("path,label,group,xmin,ymin,xmax,ymax\n")
        for row in csv.DictReader(handle):
            stem = Path(row["image"]).stem
            boxes = [box for name, box in read_voc_boxes(SHARED / "bccd" / "Annotations" / f"{stem}.xml")[1] if name == "WBC"]
            if row["label"] in CLASSES and len(boxes) == 1:
                group = "BloodImage_00037" if stem == "BloodImage_00038" else stem
                out.write(f"{SHARED / 'bccd' / row['image']},{row['label']},{group},{','.join(map(str, boxes[0]))}\n")
    return manifest


def main() -> None:
    train_set = load_dataset(SHARED / "pbc")
    train_set = Dataset([s for s in train_set.samples if s.label in CLASSES], train_set.source, "folder")
    with tempfile.TemporaryDirectory() as tmp:
        test_set = load_dataset(bccd_white_cells(Path(tmp)))
        options = api.RunOptions(jobs=2)
        results = {}
        for name, (features, feature_options, preprocessing) in CONFIGS.items():
            train = api.featurize(train_set, features, preprocessing, feature_options, options)
            test = api._extract(test_set, extractors_from_settings(train.settings), train.settings.preprocessing, options)
            results[name] = {}
            for model_name in ("svm", "logreg", "rf"):
                model = train_model(train, model_name)
                metrics = classification_metrics(test.labels, model.predict(test.values), model.classes)
                results[name][model_name] = round(metrics["balanced_accuracy"], 3)
            print(json.dumps({name: results[name]}), flush=True)
    out = Path(__file__).parent / "results" / "crosslab.json"
    out.write_text(json.dumps({"n_train": len(train_set), "n_test": len(test_set), "balanced_accuracy": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
