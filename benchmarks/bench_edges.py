"""Speed at the edges of the science, as ratios against baselines measured in the same run.

1. start-up: ``bloodcli --help``, ``bloodcli info MODEL`` and ``bloodcli extract`` of one image
   (no deep features, no cache) against ``python -c pass`` (best of --repeats wall times), and the
   heavy libraries each of them imports;
2. classical extraction (glcm,shape,color) of --limit PBC crops: in-process images/s on one core
   (the baseline), the CLI with ``-j 1`` and ``-j 2`` (wall, start-up included), cold extraction
   with the cache against without, and the cached re-run (in-process and CLI wall);
3. ``segment`` of --segment-limit smear images: in-process decode + segmentation per image (the
   baseline) against ``segment -j 1`` and ``-j 2`` with the default outputs (CLI wall, start-up
   included) and :func:`bloodcli.api.segment` in-process;
4. decoding the PBC JPEGs: Pillow against OpenCV against ``bloodcli.io.images.decode_image``.

The code measured is the checkout given by --code (default: the one holding this script), so the
same command gives before/after figures for two checkouts. Wall times on a busy machine are noisy:
extraction and segment figures are the best of --rounds runs (the CLI's ``-j 1`` and ``-j 2``
alternating), and only ratios within one run compare. CPU seconds (user + system, worker processes included) are reported
beside them: other work on the machine disturbs them much less, and a ``-j 2`` run that spends about
the CPU of ``-j 1`` scales to about 2x where two cores are free.

Usage: python benchmarks/bench_edges.py [--limit 3200] [--segment-limit 364] [--repeats 5] [--rounds 2] [--code DIR] [--out FILE]
Writes benchmarks/results/edges.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
RESULTS = HERE / "results"
MODEL = HERE.parent / "tests" / "data" / "model_0.1_svm.bcm"
HEAVY = ("sklearn", "scipy", "pandas", "tensorflow", "dask", "distributed", "matplotlib", "skimage", "xgboost", "skops", "joblib")


def cli(code: Path, *args) -> list[str]:
    return [sys.executable, "-m", "bloodcli", *map(str, args)]


def environment(code: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "BLOODCLI_CACHE_DIR": tempfile.mkdtemp(prefix="bench-cache-")}


#: CPU seconds (user + system) of the last :func:`wall` command and its worker processes: less sensitive than
#: wall time to other work on a shared machine, so the JSON reports both.
LAST_CPU = [0.0]


def wall(command: list[str], env: dict) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # Run in the measured checkout: ``python -m`` puts the working folder first on the import path.
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=env["PYTHONPATH"])
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds


def best_wall(command: list[str], env: dict, repeats: int) -> float:
    return min(wall(command, env) for _ in range(repeats))


def best_cpu(command: list[str], env: dict, repeats: int) -> float:
    cpu = []
    for _ in range(repeats):
        wall(command, env)
        cpu.append(LAST_CPU[0])
    return min(cpu)


def heavy_imports(command: list[str], env: dict) -> list[str]:
    """Heavy top-level packages the command imports (from ``python -X importtime``)."""
    run = subprocess.run([command[0], "-X", "importtime", *command[1:]], env=env, capture_output=True, text=True, check=True,
                         cwd=env["PYTHONPATH"])  # fmt: skip
    modules = {m.split(".")[0] for m in re.findall(r"\|\s+(\S+)\s*$", run.stderr, flags=re.M)}
    return sorted(modules & set(HEAVY))


def startup(code: Path, one_image_dir: Path, tmp: Path, repeats: int) -> dict:
    env = environment(code)
    commands = {
        "help": cli(code, "--help"),
        "info_model": cli(code, "info", MODEL, "--json"),
        "extract_one_image": cli(code, "extract", one_image_dir, "-o", tmp / "one.npz", "--no-cache", "-j", "1"),
    }
    baseline = best_wall([sys.executable, "-c", "pass"], env, repeats)
    out = {"python_pass_s": round(baseline, 3), "python_pass_cpu_s": round(best_cpu([sys.executable, "-c", "pass"], env, repeats), 3)}
    for name, command in commands.items():
        seconds = best_wall(command, env, repeats)
        out[f"{name}_s"] = round(seconds, 3)
        out[f"{name}_vs_python"] = round(seconds / baseline, 1)
        out[f"{name}_cpu_s"] = round(best_cpu(command, env, repeats), 3)
        out[f"{name}_heavy_imports"] = heavy_imports(command, env)
    return out


def write_manifest(files: list[Path], path: Path) -> Path:
    path.write_text("path,label\n" + "".join(f"{f.resolve()},{f.parent.name}\n" for f in files))
    return path


def extraction(code: Path, manifest: Path, n: int, tmp: Path, rounds: int) -> dict:
    import cv2

    from bloodcli import api

    cv2.setNumThreads(1)  # per-core figures
    features = "glcm,shape,color"

    cpu = {}

    def in_process(cache: Path | None, name: str) -> float:
        options = api.ExecutionOptions(cache_dir=cache, use_cache=cache is not None, jobs=1)
        start, start_cpu = time.perf_counter(), time.process_time()
        api.featurize(str(manifest), features, options=options)
        cpu[name] = min(cpu.get(name, float("inf")), time.process_time() - start_cpu)
        return time.perf_counter() - start

    in_process(None, "warm-up")  # imports, OpenCV's colour tables, the file cache
    no_cache = min(in_process(None, "no_cache") for _ in range(rounds))
    cold = min(in_process(tmp / f"cache-{round_}", "cold") for round_ in range(rounds))  # an empty cache each time
    cache = tmp / "cache-0"
    warm = in_process(cache, "warm")
    env = environment(code)

    def run_cli(name: str, *extra) -> float:
        seconds = wall(cli(code, "extract", manifest, "-o", tmp / "f.npz", "-f", features, *extra), env)
        cpu[name] = min(cpu.get(name, float("inf")), LAST_CPU[0])
        return seconds

    cli_j1 = cli_j2 = float("inf")
    for _ in range(rounds):  # alternating, so a busy spell on the machine hits both alike
        cli_j1 = min(cli_j1, run_cli("cli_j1", "--no-cache", "-j", "1"))
        cli_j2 = min(cli_j2, run_cli("cli_j2", "--no-cache", "-j", "2"))
    cli_warm = min(run_cli("cli_warm", "--cache-dir", cache, "-j", "1") for _ in range(rounds))
    cli_warm_all_cores = min(run_cli("cli_warm_all_cores", "--cache-dir", cache) for _ in range(rounds))  # the default --jobs
    rate = n / no_cache
    return {
        "n_images": n,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items() if k != "warm-up"},
        "in_process_cpu_images_per_s": round(n / cpu["no_cache"], 1),
        "cli_j1_cpu_vs_in_process": round(cpu["cli_j1"] / cpu["no_cache"], 2),
        "cli_j2_cpu_vs_j1": round(cpu["cli_j2"] / cpu["cli_j1"], 2),
        "cold_cache_cpu_vs_no_cache": round(cpu["cold"] / cpu["no_cache"], 2),
        "in_process_images_per_s": round(rate, 1),
        "cli_j1_images_per_s": round(n / cli_j1, 1),
        "cli_j1_vs_in_process": round(no_cache / cli_j1, 2),
        "cli_j2_images_per_s": round(n / cli_j2, 1),
        "cli_j2_vs_j1": round(cli_j1 / cli_j2, 2),
        "in_process_cold_cache_s": round(cold, 2),
        "in_process_no_cache_s": round(no_cache, 2),
        "cold_cache_vs_no_cache": round(cold / no_cache, 2),
        "cached_rerun_in_process_s": round(warm, 3),
        "cached_rerun_cli_s": round(cli_warm, 3),
        "cached_rerun_cli_all_cores_s": round(cli_warm_all_cores, 3),
    }


def segmentation(code: Path, smears: list[Path], tmp: Path, rounds: int) -> dict:
    import cv2

    from bloodcli import api
    from bloodcli.io.images import decode_image, read_bytes
    from bloodcli.segmentation.smear import segment_image

    cv2.setNumThreads(1)
    segment_image(decode_image(read_bytes(smears[0])), "watershed")  # warm-up
    start, start_cpu = time.perf_counter(), time.process_time()
    for path in smears:
        segment_image(decode_image(read_bytes(path)), "watershed")
    per_image = (time.perf_counter() - start) / len(smears)
    cpu_per_image = (time.process_time() - start_cpu) / len(smears)
    start = time.perf_counter()
    api.segment([str(p) for p in smears], tmp / "seg-api", options=api.ExecutionOptions(jobs=1))
    api_per_image = (time.perf_counter() - start) / len(smears)
    folder = tmp / "smears"
    folder.mkdir()
    for path in smears:
        shutil.copy(path, folder / path.name)
    env = environment(code)
    (j1, j1_cpu), (j2, j2_cpu) = (float("inf"),) * 2, (float("inf"),) * 2
    for round_ in range(rounds):  # alternating, each into a fresh folder
        j1 = min(j1, wall(cli(code, "segment", folder, "--out-dir", tmp / f"seg-j1-{round_}", "-j", "1"), env) / len(smears))
        j1_cpu = min(j1_cpu, LAST_CPU[0] / len(smears))
        j2 = min(j2, wall(cli(code, "segment", folder, "--out-dir", tmp / f"seg-j2-{round_}", "-j", "2"), env) / len(smears))
        j2_cpu = min(j2_cpu, LAST_CPU[0] / len(smears))
    return {
        "n_images": len(smears),
        "in_process_cpu_ms_per_image": round(cpu_per_image * 1e3, 1),
        "cli_j1_cpu_vs_in_process": round(j1_cpu / cpu_per_image, 2),
        "cli_j2_cpu_vs_j1": round(j2_cpu / j1_cpu, 2),
        "in_process_ms_per_image": round(per_image * 1e3, 1),
        "api_segment_ms_per_image": round(api_per_image * 1e3, 1),
        "api_segment_vs_in_process": round(api_per_image / per_image, 2),
        "cli_j1_ms_per_image": round(j1 * 1e3, 1),
        "cli_j1_vs_in_process": round(j1 / per_image, 2),
        "cli_j2_ms_per_image": round(j2 * 1e3, 1),
        "cli_j2_speedup_vs_j1": round(j1 / j2, 2),
    }


def decoding(files: list[Path]) -> dict:
    import io

    import cv2
    import numpy as np
    from PIL import Image

    from bloodcli.io.images import decode_image

    data = [f.read_bytes() for f in files]

    def rate(decode) -> float:
        start = time.perf_counter()
        for item in data:
            decode(item)
        return len(data) / (time.perf_counter() - start)

    pillow = rate(lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")))
    opencv = rate(lambda d: cv2.cvtColor(cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    bloodcli = rate(decode_image)
    return {"n_images": len(data), "pillow_images_per_s": round(pillow), "opencv_images_per_s": round(opencv),
            "bloodcli_images_per_s": round(bloodcli), "bloodcli_vs_pillow": round(bloodcli / pillow, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "pbc", help="class-folder tree of single-cell crops")
    parser.add_argument("--smears", type=Path, default=SHARED / "bccd" / "JPEGImages", help="folder of smear images")
    parser.add_argument("--limit", type=int, default=3200, help="crops for the extraction figures")
    parser.add_argument("--segment-limit", type=int, default=364, help="smear images for the segment figures (364: all of "
                        "BCCD, so the workers' and the CLI's fixed start-up is spread as in a real batch)")
    parser.add_argument("--repeats", type=int, default=5, help="start-up: best of this many runs")
    parser.add_argument("--rounds", type=int, default=2, help="extraction and segment: best of this many runs (CLI -j 1 and -j 2 alternating)")
    parser.add_argument("--code", type=Path, default=HERE.parent, help="the bloodcli checkout to measure")
    parser.add_argument("--skip", nargs="*", default=[], choices=["startup", "extraction", "segment", "decode"])
    parser.add_argument("--out", type=Path, default=RESULTS / "edges.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    crops = sorted(args.data.glob("*/*.jpg"))
    if not crops:
        sys.exit(f"no crops under {args.data}")
    crops = crops[:: max(1, len(crops) // args.limit)][: args.limit]
    smears = sorted(args.smears.glob("*.jpg"))[: args.segment_limit]
    results = {"code": str(args.code.resolve()), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        one = tmp / "one" / crops[0].parent.name
        one.mkdir(parents=True)
        shutil.copy(crops[0], one)
        sections = {
            "startup": lambda: startup(args.code, one.parent, tmp, args.repeats),
            "extraction": lambda: extraction(args.code, write_manifest(crops, tmp / "crops.csv"), len(crops), tmp, args.rounds),
            "segment": lambda: segmentation(args.code, smears, tmp, args.rounds),
            "decode": lambda: decoding(crops[:800]),
        }
        for name, measure in sections.items():
            if name not in args.skip:
                results[name] = measure()
                print(json.dumps({name: results[name]}), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
