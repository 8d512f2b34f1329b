"""bloodcli's classical extraction against peer libraries on the same PBC crops, in the same run, one core each.

Every contestant reads the same files and computes its usual texture/shape/colour set per image:

- bloodcli: ``glcm,shape,color`` in-process (decode, single-cell masks, 192 features), no cache;
- mahotas: Haralick (13 features x 4 directions, mean) of the grey image at 32 levels (as bloodcli's
  GLCM) + Zernike moments (degree 8) of its Otsu mask;
- pyradiomics: ``glcm`` + ``firstorder`` + ``shape2D`` of the grey image inside the Otsu mask (32 bins);
- a straightforward scikit-image loop (benchmarks/bench_classical.py's baseline: resize to 256,
  graycomatrix 2 distances x 4 angles, regionprops, colour statistics).

A peer that is not installed is skipped with the reason printed. ``pip install -e ".[bench]"`` installs
mahotas; pyradiomics ships only a source archive that needs ``versioneer`` and NumPy at build time
(``pip install versioneer && pip install --no-build-isolation pyradiomics``). Packages installed
elsewhere (``pip install --target DIR``) are found with ``--path DIR``.

Usage: python benchmarks/bench_peers.py [--data DIR] [--limit 320] [--path DIR ...]
Writes benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data" / "pbc"
RESULTS = HERE / "results"


def _grey_and_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """What a peer script starts from: the grey image and an Otsu mask of the stained cell (Pillow + NumPy)."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    grey = (rgb @ [0.299, 0.587, 0.114]).astype(np.uint8)
    saturation = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    histogram = np.bincount(saturation.ravel(), minlength=256).astype(float)
    levels = np.arange(histogram.size)
    weights = np.cumsum(histogram)
    means = np.cumsum(histogram * levels) / np.maximum(weights, 1)
    between = weights[:-1] * (weights[-1] - weights[:-1]) * (means[:-1] - (means[-1] * weights[-1] - means[:-1] * weights[:-1])
                                                             / np.maximum(weights[-1] - weights[:-1], 1)) ** 2  # fmt: skip
    return grey, saturation > int(np.argmax(between))


def mahotas_features(path: Path) -> np.ndarray:
    import mahotas

    grey, mask = _grey_and_mask(path)
    haralick = mahotas.features.haralick(grey >> 3, return_mean=True)  # 32 grey levels
    zernike = mahotas.features.zernike_moments(mask, radius=min(mask.shape) // 2, degree=8)
    return np.concatenate([haralick, zernike])


def pyradiomics_extractor():
    from radiomics import featureextractor, setVerbosity

    setVerbosity(40)  # errors only
    extractor = featureextractor.RadiomicsFeatureExtractor(force2D=True, binCount=32)
    extractor.disableAllFeatures()
    for name in ("glcm", "firstorder", "shape2D"):
        extractor.enableFeatureClassByName(name)
    return extractor


def pyradiomics_features(path: Path, extractor) -> np.ndarray:
    import SimpleITK as sitk

    grey, mask = _grey_and_mask(path)
    image, label = sitk.GetImageFromArray(grey[None].astype(np.float32)), sitk.GetImageFromArray(mask[None].astype(np.uint8))
    values = extractor.execute(image, label)
    return np.array([float(v) for k, v in values.items() if not k.startswith("diagnostics")])


def skimage_loop_features(path: Path) -> np.ndarray:
    spec = importlib.util.spec_from_file_location("bench_classical", HERE / "bench_classical.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    globals()["skimage_loop_features"] = lambda p: module.baseline_features(str(p))  # load the module once
    return module.baseline_features(str(path))


def images_per_s(compute, files: list[Path]) -> float:
    compute(files[0])  # warm-up: imports, first-call set-up
    start = time.perf_counter()
    for path in files:
        compute(path)
    return len(files) / (time.perf_counter() - start)


def bloodcli_rate(files: list[Path], manifest: Path) -> float:
    from bloodcli import api

    manifest.write_text("path,label\n" + "".join(f"{f.resolve()},{f.parent.name}\n" for f in files))
    options = api.ExecutionOptions(use_cache=False, jobs=1)
    api.featurize(str(manifest), "glcm,shape,color", options=options)  # warm-up
    start = time.perf_counter()
    api.featurize(str(manifest), "glcm,shape,color", options=options)
    return len(files) / (time.perf_counter() - start)


def peers() -> dict:
    """name -> (module to import, a function of the file list giving images/s)."""
    def radiomics(files):
        extractor = pyradiomics_extractor()
        return images_per_s(lambda p: pyradiomics_features(p, extractor), files)

    return {
        "mahotas": ("mahotas", lambda files: images_per_s(mahotas_features, files)),
        "pyradiomics": ("radiomics", radiomics),
        "skimage_loop": ("skimage", lambda files: images_per_s(skimage_loop_features, files)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--limit", type=int, default=320, help="images (evenly spaced over the classes)")
    parser.add_argument("--path", type=Path, action="append", default=[], help="also import packages from this folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    args = parser.parse_args()
    sys.path[:0] = [str(HERE.parent)] + [str(p) for p in args.path]
    import cv2

    cv2.setNumThreads(1)  # one core each
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    files = sorted(args.data.glob("*/*.jpg"))
    files = files[:: max(1, len(files) // args.limit)][: args.limit]
    results = {"data": str(args.data), "n_images": len(files), "load_average_at_start": os.getloadavg()}
    rates = {"bloodcli": bloodcli_rate(files, RESULTS / ".peers_manifest.csv")}
    (RESULTS / ".peers_manifest.csv").unlink()
    print(f"bloodcli: {rates['bloodcli']:.1f} images/s", flush=True)
    skipped = {}
    for name, (module, rate) in peers().items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            skipped[name] = f"not installed ({exc}); see this script's docstring"
            print(f"skipped {name}: {skipped[name]}", flush=True)
            continue
        rates[name] = rate(files)
        print(f"{name}: {rates[name]:.1f} images/s; bloodcli is {rates['bloodcli'] / rates[name]:.1f}x", flush=True)
    results["images_per_s"] = {k: round(v, 1) for k, v in rates.items()}
    results["bloodcli_speedup"] = {k: round(rates["bloodcli"] / v, 2) for k, v in rates.items() if k != "bloodcli"}
    results["skipped"] = skipped
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
