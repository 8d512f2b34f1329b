"""Classical extraction speed and memory, as ratios against baselines measured in the same run.

1. images/s per core: bloodcli (glcm,shape,color, one process, no cache) vs a straightforward
   per-image scikit-image loop (imread, resize, graycomatrix 2 distances x 4 angles, regionprops,
   colour statistics);
2. cached re-run vs cold run (same command, warm cache);
3. peak RSS of extracting a 10x larger dataset (the files listed 10 times in a CSV manifest,
   no cache) vs the 1x dataset, each in a fresh process;
4. Dask LocalCluster with 2 workers vs 1 worker.

Usage: python benchmarks/bench_classical.py [--data DIR] [--limit N] [--skip-dask]
Writes benchmarks/results/classical.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pbc"
RESULTS = Path(__file__).resolve().parent / "results"


def baseline_features(path: str) -> np.ndarray:
    """What a straightforward script does for one image."""
    from skimage import color, io, measure, transform
    from skimage.feature import graycomatrix, graycoprops
    from skimage.filters import threshold_otsu

    image = io.imread(path)[..., :3]
    image = transform.resize(image, (256, 256), anti_aliasing=True)
    grey = (color.rgb2gray(image) * 255).astype(np.uint8)
    matrices = graycomatrix(grey, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=256, symmetric=True, normed=True)
    texture = [graycoprops(matrices, p).ravel() for p in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")]
    hsv = color.rgb2hsv(image)
    mask = hsv[..., 1] > threshold_otsu(hsv[..., 1])
    regions = measure.regionprops(measure.label(mask))
    largest = max(regions, key=lambda r: r.area)
    shape = [largest.area, largest.perimeter, largest.eccentricity, largest.solidity, largest.extent,
             largest.axis_major_length, largest.axis_minor_length]  # fmt: skip
    stats = np.concatenate([image.reshape(-1, 3).mean(0), image.reshape(-1, 3).std(0), hsv.reshape(-1, 3).mean(0), hsv.reshape(-1, 3).std(0)])
    return np.concatenate([*texture, shape, stats])


def time_baseline(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        baseline_features(str(path))
    return len(files) / (time.perf_counter() - start)


def time_bloodcli(dataset, jobs: int, cache_dir: Path | None, scheduler: str | None = None) -> tuple[float, object]:
    from bloodcli import api

    options = api.ExecutionOptions(cache_dir=cache_dir, use_cache=cache_dir is not None, jobs=jobs, scheduler=scheduler)
    start = time.perf_counter()
    table = api.featurize(dataset, "glcm,shape,color", options=options)
    return len(dataset) / (time.perf_counter() - start), table


def peak_rss_mb(manifest: Path) -> float:
    """Peak RSS of a fresh process extracting ``manifest`` with one worker and no cache."""
    code = (
        "import resource, sys; from bloodcli import api; "
        "api.featurize(sys.argv[1], options=api.ExecutionOptions(use_cache=False, jobs=1)); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    output = subprocess.run([sys.executable, "-c", code, str(manifest)], capture_output=True, text=True, check=True)
    return int(output.stdout.strip().splitlines()[-1]) / 1024


def write_manifest(files: list[Path], repeats: int, folder: Path) -> Path:
    path = folder / f"manifest_x{repeats}.csv"
    lines = ["path,label"] + [f"{f.resolve()},{f.parent.name}" for _ in range(repeats) for f in files]  # the CSV is elsewhere
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else SAMPLE)
    parser.add_argument("--limit", type=int, default=400, help="images used for the speed comparison")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "classical.json")
    args = parser.parse_args()
    import cv2

    from bloodcli.io.datasets import load_dataset

    cv2.setNumThreads(1)  # per-core figures: no OpenCV thread pool in this process (workers do the same)

    full = load_dataset(args.data)
    step = max(1, len(full) // args.limit)
    dataset = full.subset(range(0, len(full), step))
    files = [s.path for s in dataset.samples]
    results = {"data": str(args.data), "n_images": len(files)}

    results["baseline_images_per_s"] = round(time_baseline(files), 2)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cold, _ = time_bloodcli(dataset, 1, cache)
        warm, _ = time_bloodcli(dataset, 1, cache)
        results["bloodcli_images_per_s_per_core"] = round(cold, 2)
        results["speedup_vs_baseline"] = round(cold / results["baseline_images_per_s"], 2)
        results["cached_images_per_s"] = round(warm, 2)
        results["cached_speedup"] = round(warm / cold, 2)
        print(json.dumps(results), flush=True)

        small = write_manifest(files, 1, Path(tmp))
        large = write_manifest(files, 10, Path(tmp))
        results["peak_rss_mb_1x"] = round(peak_rss_mb(small), 1)
        results["peak_rss_mb_10x"] = round(peak_rss_mb(large), 1)
        results["peak_rss_ratio_10x"] = round(results["peak_rss_mb_10x"] / results["peak_rss_mb_1x"], 3)
        print(json.dumps(results), flush=True)

        if not args.skip_dask:
            import dask
            from distributed import LocalCluster

            from bloodcli.pipeline.parallel import WORKER_ENVIRONMENT

            rates = {}
            for workers in (1, 2):
                with dask.config.set(WORKER_ENVIRONMENT):  # as `--scheduler local` starts its workers
                    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
                with cluster:
                    time_bloodcli(dataset.subset(range(8)), 1, None, cluster.scheduler_address)  # warm the workers' imports
                    rates[workers], _ = time_bloodcli(dataset, 1, None, cluster.scheduler_address)
            results["dask_images_per_s_1_worker"] = round(rates[1], 2)
            results["dask_images_per_s_2_workers"] = round(rates[2], 2)
            results["dask_speedup_2_vs_1"] = round(rates[2] / rates[1], 2)
    results["peak_rss_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
