"""Seconds per smear of ``analyze`` on one core, with a classical and a MobileNetV2 white-cell model.

Both models are trained on ``sample_data/pbc`` (default glcm,shape,color + svm; MobileNetV2 alpha 0.35 with the
shipped no-top weights + svm). Each analysis runs with the feature cache off, one worker, on N BCCD smears, into a
fresh folder; the baseline in the same run is ``segment`` alone on the same smears (analyze = segment + crops +
features + classes + tables + report). The three runs alternate for ROUNDS rounds and the fastest round of each
counts (the machine is shared: the minimum is the least disturbed). Run pinned to one core:

    taskset -c 0 env OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/analyze_speed.py ../shared/data/bccd/JPEGImages WORK [N]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bloodcli import api
from bloodcli.pipeline.options import ExecutionOptions
from bloodcli.pipeline.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "sample_data" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
SMEARS, WORK = Path(sys.argv[1]), Path(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 20
ROUNDS = 3
OPTIONS = ExecutionOptions(jobs=1, use_cache=False, device="cpu")


def seconds_per_smear(run, smears: list[str]) -> float:
    start = time.perf_counter()
    run(smears)
    return (time.perf_counter() - start) / len(smears)


def main() -> None:
    smears = [str(p) for p in sorted(SMEARS.glob("*.jpg"))[:N]]
    models = {}
    for name, plan in (("classical (glcm,shape,color + svm)", Plan.build("glcm,shape,color")),
                       ("MobileNetV2 alpha 0.35 + svm", Plan.build("mobilenetv2", ["mobilenetv2.alpha=0.35"], weights=str(WEIGHTS)))):  # fmt: skip
        table = api.featurize(ROOT / "sample_data" / "pbc", plan, OPTIONS)
        models[name] = api.train(table, "svm", options=OPTIONS)[0]
    api.segment(smears[:1], WORK / "warm", options=OPTIONS)  # imports and first-call costs out of the timings
    for index, model in enumerate(models.values()):
        api.analyze(smears[:1], model, WORK / f"warm{index}", options=OPTIONS)
    runs = {"segment": lambda s, k: api.segment(s, WORK / f"segment{k}", options=OPTIONS)}
    for index, (name, model) in enumerate(models.items()):
        runs[name] = lambda s, k, model=model, index=index: api.analyze(s, model, WORK / f"analyze{index}_{k}", options=OPTIONS)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(ROUNDS):
        for name, run in runs.items():
            times[name].append(seconds_per_smear(lambda s: run(s, k), smears))
    best = {name: min(values) for name, values in times.items()}
    baseline = best.pop("segment")
    result = {"n_smears": len(smears), "rounds": ROUNDS, "cores": len(os.sched_getaffinity(0)),
              "segment_s_per_smear": round(baseline, 3),
              "analyze": {name: {"s_per_smear": round(s, 3), "ratio_to_segment": round(s / baseline, 2)} for name, s in best.items()}}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
