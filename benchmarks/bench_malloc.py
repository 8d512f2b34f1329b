"""Does keeping freed buffers (``pipeline.parallel.keep_freed_memory``) pay? Fresh processes, with and without, in turns.

Each pair runs one fresh process with glibc's defaults and one with bloodcli's allocator options, on the same work:
classical extraction (glcm,shape,color) of --crops PBC crops, and watershed segmentation of --smears BCCD smears.
Reports each process's CPU seconds of the work (imports excluded) and minor page faults, and the ratio of the means.

Usage: python benchmarks/bench_malloc.py [--pairs 4] [--crops 1600] [--smears 150] [--out FILE]
Writes benchmarks/results/malloc.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"

WORK = """
import json, os, resource, sys, time
from pathlib import Path
from bloodcli.pipeline.parallel import keep_freed_memory
if sys.argv[1] == "kept":
    keep_freed_memory()
import cv2
cv2.setNumThreads(1)
if sys.argv[2] == "extraction":  # a manifest of crops, through the pipeline
    from bloodcli import api
    options = api.ExecutionOptions(use_cache=False, jobs=1)
    work = lambda: api.featurize(sys.argv[3], "glcm,shape,color", options=options)
else:  # smear images
    from bloodcli.io.images import read_image
    from bloodcli.segmentation.smear import segment_image
    work = lambda: [segment_image(read_image(path), "watershed") for path in sys.argv[3:]]
faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
work()
print(json.dumps({"cpu_s": time.process_time() - start, "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}))
"""


def run(allocator: str, task: str, paths: list[Path]) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    out = subprocess.run([sys.executable, "-c", WORK, allocator, task, *map(str, paths)], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--crops", type=int, default=1600)
    parser.add_argument("--smears", type=int, default=150)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "malloc.json")
    args = parser.parse_args()
    crops = sorted((SHARED / "pbc").glob("*/*.jpg"))
    crops = crops[:: max(1, len(crops) // args.crops)][: args.crops]
    smears = sorted((SHARED / "bccd" / "JPEGImages").glob("*.jpg"))[: args.smears]
    if not crops or not smears:
        sys.exit(f"no PBC crops or BCCD smears under {SHARED}")
    manifest = Path(tempfile.mkdtemp()) / "crops.csv"
    manifest.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in crops))
    tasks = {"extraction": [manifest], "segment": smears}
    results = {}
    for task, paths in tasks.items():
        runs: dict[str, list[dict]] = {"glibc_defaults": [], "kept": []}
        for _ in range(args.pairs):  # in turns, so a slow spell of the machine hits both alike
            for allocator in runs:
                runs[allocator].append(run(allocator, task, paths))
        cpu = {a: mean(r["cpu_s"] for r in rs) for a, rs in runs.items()}
        results[task] = {
            "n_images": len(crops) if task == "extraction" else len(smears),
            "cpu_s": {a: [round(r["cpu_s"], 2) for r in rs] for a, rs in runs.items()},
            "minor_faults_mean": {a: round(mean(r["minor_faults"] for r in rs)) for a, rs in runs.items()},
            "kept_vs_defaults_cpu": round(cpu["kept"] / cpu["glibc_defaults"], 3),
        }
        print(json.dumps({task: results[task]}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"pairs": args.pairs, **results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
