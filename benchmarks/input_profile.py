"""How far apart the input profiles of the labs are: the evidence behind the out-of-distribution tolerances.

For each pair (training images, inputs) it prints, per profiled quantity, how far the inputs' median lies
outside the training 5-95 % range with no tolerance at all: a ratio for lengths (1.00 = inside) and grey
levels for channel means (0 = inside). Same-lab pairs (even vs odd images of PBC, of BCCD white-cell crops)
show the spread a tolerance must absorb; other-lab, whole-smear and rescaled pairs show what it must flag.

    PYTHONPATH=. python benchmarks/input_profile.py [../shared/data] > benchmarks/results/input_profile.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

from bloodcli.io.datasets import load_dataset, load_inputs
from bloodcli.pipeline import data_profile
from bloodcli.pipeline.data_profile import QUANTITIES, profile_images, profile_samples

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
PBC_CLASSES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil")


def excess(training: dict, inputs: dict) -> dict:
    """Per quantity: how far the input median is outside the training range, with zero tolerance."""
    data_profile.SIZE_TOLERANCE, data_profile.COLOUR_TOLERANCE = 1.0, 1e-9  # report every excess, however small
    found = {d.quantity: d for d in data_profile.deviations(training, inputs)}
    out = {}
    for name, (_, kind) in QUANTITIES.items():
        if name not in found:
            out[name] = 1.0 if kind == "size" else 0.0
            continue
        d = found[name]
        out[name] = round(max(d.low / d.value, d.value / d.high), 3) if kind == "size" else round(max(d.low - d.value, d.value - d.high), 1)
    return out


def rescaled(samples, factor: float):
    for image in (data_profile._read(s) for s in samples):
        yield cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def main() -> None:
    pbc = [s for s in load_dataset(DATA / "pbc").samples if s.label in PBC_CLASSES]
    bccd_wbc = load_dataset(DATA / "bccd", voc_classes=["WBC"]).samples
    smears = load_inputs([DATA / "bccd" / "JPEGImages"]).samples
    profiles = {
        "pbc even": profile_samples(pbc[0::2]), "pbc odd": profile_samples(pbc[1::2]),
        "bccd wbc crops even": profile_samples(bccd_wbc[0::2]), "bccd wbc crops odd": profile_samples(bccd_wbc[1::2]),
        "bccd smears": profile_samples(smears),
        "pbc odd x1.5": profile_images(rescaled(pbc[1::2][::2], 1.5)),
        "pbc odd x0.67": profile_images(rescaled(pbc[1::2][::2], 1 / 1.5)),
    }
    pairs = [("pbc even", "pbc odd"), ("bccd wbc crops even", "bccd wbc crops odd"), ("pbc even", "bccd smears"),
             ("pbc even", "bccd wbc crops odd"), ("pbc even", "pbc odd x1.5"), ("pbc even", "pbc odd x0.67"),
             ("bccd wbc crops even", "bccd smears"), ("bccd wbc crops even", "pbc odd")]  # fmt: skip
    result = {
        "profiles": profiles,
        "excess_without_tolerance": {f"{a} -> {b}": excess(profiles[a], profiles[b]) for a, b in pairs},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
