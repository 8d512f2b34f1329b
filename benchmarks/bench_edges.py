"""Speed at the edges of the science, as ratios against baselines measured in the same run.

1. start-up: ``bloodcli --help``, ``bloodcli info MODEL`` and ``bloodcli extract`` of one image
   (no deep features, no cache) against ``python -c pass`` (best of --repeats wall times), and the
   heavy libraries each of them imports;
2. classical extraction (glcm,shape,color) of --limit PBC crops: in-process images/s on one core
   (the baseline), the CLI with ``-j 1`` and ``-j 2`` (wall, start-up included), cold extraction
   with the cache against without, and the cached re-run (in-process and CLI wall); and what two
   cores give this work at best on the machine: two independent ``-j 1`` commands on half of the
   crops each, at once (``-j 2`` against them: 1.0 is perfect process parallelism);
3. ``segment`` of --segment-limit smear images: in-process decode + segmentation per image (the
   baseline) against ``segment -j 1`` and ``-j 2`` with the default outputs (CLI wall, start-up
   included) and :func:`bloodcli.api.segment` in-process;
4. decoding the PBC JPEGs: Pillow against OpenCV against ``bloodcli.io.images.decode_image``.

The code measured is the checkout given by --code (default: the one holding this script), so the
same command gives before/after figures for two checkouts. Wall times on a busy machine are noisy:
extraction and segment figures are the best of --rounds runs, each round measuring every figure once
(in-process, cold cache, CLI ``-j 1`` and ``-j 2`` in turn), and only ratios within one run compare; the ratio
within each round is listed beside the best-of ratio to show the spread. CPU seconds (user + system, worker processes included) are reported
beside them: other work on the machine disturbs them much less, and a ``-j 2`` run that spends about
the CPU of ``-j 1`` scales to about 2x where two cores are free.

Usage: python benchmarks/bench_edges.py [--limit 3200] [--segment-limit 364] [--repeats 5] [--rounds 3] [--code DIR] [--out FILE]
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


def environment(code: Path, tmp: Path) -> dict:
    """The measured checkout first on the import path, and an empty cache inside the run's temporary folder."""
    return {**os.environ, "PYTHONPATH": str(code), "BLOODCLI_CACHE_DIR": tempfile.mkdtemp(prefix="bench-cache-", dir=tmp)}


#: CPU seconds (user + system) of the last :func:`wall` command and its worker processes: less sensitive than
#: wall time to other work on a shared machine, so the JSON reports both.
LAST_CPU = [0.0]


def wall(command: list[str], env: dict, *others: list[str]) -> float:
    """Wall seconds of ``command``, run at once with ``others`` when given (until the last one ends)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # Run in the measured checkout: ``python -m`` puts the working folder first on the import path.
    runs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=env["PYTHONPATH"])
            for c in (command, *others)]  # fmt: skip
    for run in runs:
        if run.wait():
            raise subprocess.CalledProcessError(run.returncode, run.args)
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
    env = environment(code, tmp)
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


def compile_bytecode(code: Path) -> None:
    """Byte-compile the measured package, as ``pip install`` does: where PYTHONDONTWRITEBYTECODE is set (as on the
    machines these figures come from), every command would otherwise compile bloodcli's sources again, about 60 ms."""
    import compileall

    compileall.compile_dir(code / "bloodcli", quiet=1)


def write_manifest(files: list[Path], path: Path) -> Path:
    path.write_text("path,label\n" + "".join(f"{f.resolve()},{f.parent.name}\n" for f in files))
    return path


def halve(manifest: Path) -> list[Path]:
    """The manifest's odd and even rows as two manifests beside it."""
    header, *rows = manifest.read_text().splitlines(keepends=True)
    halves = [manifest.with_name(f"{manifest.stem}-half{k}.csv") for k in (1, 2)]
    for k, half in enumerate(halves):
        half.write_text(header + "".join(rows[k::2]))
    return halves


class Timings:
    """Wall and CPU seconds of named figures over rounds: the best of each, and the ratio of two within each round."""

    def __init__(self) -> None:
        self.walls: dict[str, list[float]] = {}
        self.cpus: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float, cpu_seconds: float) -> float:
        self.walls.setdefault(name, []).append(seconds)
        self.cpus.setdefault(name, []).append(cpu_seconds)
        return seconds

    def best(self, name: str) -> float:
        return min(self.walls[name])

    def cpu(self, name: str) -> float:
        return min(self.cpus[name])

    def per_round(self, numerator: str, denominator: str) -> list[float]:
        """``numerator / denominator`` of each round (measured minutes apart at most): the spread of the best-of ratio."""
        return [round(a / b, 2) for a, b in zip(self.walls[numerator], self.walls[denominator])]


def extraction(code: Path, manifest: Path, n: int, tmp: Path, rounds: int) -> dict:
    import cv2

    from bloodcli import api

    cv2.setNumThreads(1)  # per-core figures
    features = "glcm,shape,color"
    env = environment(code, tmp)
    timings = Timings()

    def in_process(cache: Path | None, name: str) -> float:
        options = api.ExecutionOptions(cache_dir=cache, use_cache=cache is not None, jobs=1)
        start, start_cpu = time.perf_counter(), time.process_time()
        api.featurize(str(manifest), features, options=options)
        return timings.add(name, time.perf_counter() - start, time.process_time() - start_cpu)

    def run_cli(name: str, *extra) -> float:
        seconds = wall(cli(code, "extract", manifest, "-o", tmp / "f.npz", "-f", features, *extra), env)
        return timings.add(name, seconds, LAST_CPU[0])

    # What two cores give this work at best: two independent `-j 1` commands, each on half of the crops, at once.
    halves = [cli(code, "extract", half, "-o", tmp / f"{half.stem}.npz", "-f", features, "--no-cache", "-j", "1")
              for half in halve(manifest)]  # fmt: skip

    in_process(None, "warm-up")  # imports, OpenCV's colour tables, the file cache
    for round_ in range(rounds):  # every figure once per round, so a slow spell of the machine hits them all alike
        in_process(None, "no_cache")
        in_process(tmp / f"cache-{round_}", "cold")  # an empty cache each round
        run_cli("cli_j1", "--no-cache", "-j", "1")
        run_cli("cli_j2", "--no-cache", "-j", "2")
        timings.add("cli_j1_halves_at_once", wall(halves[0], env, halves[1]), LAST_CPU[0])
    cache = tmp / "cache-0"
    for _ in range(rounds):
        in_process(cache, "warm")
        run_cli("cli_warm", "--cache-dir", cache, "-j", "1")
        run_cli("cli_warm_all_cores", "--cache-dir", cache)  # the default --jobs
    best, cpu = timings.best, timings.cpu
    return {
        "n_images": n,
        "rounds": rounds,
        "cpu_s": {k: round(cpu(k), 2) for k in timings.cpus if k != "warm-up"},
        "in_process_cpu_images_per_s": round(n / cpu("no_cache"), 1),
        "cli_j1_cpu_vs_in_process": round(cpu("cli_j1") / cpu("no_cache"), 2),
        "cli_j2_cpu_vs_j1": round(cpu("cli_j2") / cpu("cli_j1"), 2),
        "cold_cache_cpu_vs_no_cache": round(cpu("cold") / cpu("no_cache"), 2),
        "in_process_images_per_s": round(n / best("no_cache"), 1),
        "cli_j1_images_per_s": round(n / best("cli_j1"), 1),
        "cli_j1_vs_in_process": round(best("no_cache") / best("cli_j1"), 2),
        "cli_j1_vs_in_process_per_round": timings.per_round("no_cache", "cli_j1"),
        "cli_j2_images_per_s": round(n / best("cli_j2"), 1),
        "cli_j2_vs_j1": round(best("cli_j1") / best("cli_j2"), 2),
        "cli_j2_vs_j1_per_round": timings.per_round("cli_j1", "cli_j2"),
        "cli_j1_vs_halves_at_once": round(best("cli_j1") / best("cli_j1_halves_at_once"), 2),
        "cli_j1_vs_halves_at_once_per_round": timings.per_round("cli_j1", "cli_j1_halves_at_once"),
        "cli_j2_vs_halves_at_once": round(best("cli_j1_halves_at_once") / best("cli_j2"), 2),
        "in_process_cold_cache_s": round(best("cold"), 2),
        "in_process_no_cache_s": round(best("no_cache"), 2),
        "cold_cache_vs_no_cache": round(best("cold") / best("no_cache"), 2),
        "cold_cache_vs_no_cache_per_round": timings.per_round("cold", "no_cache"),
        "cached_rerun_in_process_s": round(best("warm"), 3),
        "cached_rerun_cli_s": round(best("cli_warm"), 3),
        "cached_rerun_cli_per_round_s": [round(x, 3) for x in timings.walls["cli_warm"]],
        "cached_rerun_cli_all_cores_s": round(best("cli_warm_all_cores"), 3),
    }


def segmentation(code: Path, smears: list[Path], tmp: Path, rounds: int) -> dict:
    import cv2

    from bloodcli import api
    from bloodcli.io.images import decode_image, read_bytes
    from bloodcli.segmentation.smear import segment_image

    cv2.setNumThreads(1)
    folder = tmp / "smears"
    folder.mkdir()
    for path in smears:
        shutil.copy(path, folder / path.name)
    env = environment(code, tmp)
    timings = Timings()

    def in_process() -> None:
        start, start_cpu = time.perf_counter(), time.process_time()
        for path in smears:
            segment_image(decode_image(read_bytes(path)), "watershed")
        timings.add("in_process", time.perf_counter() - start, time.process_time() - start_cpu)

    def run_cli(name: str, *args) -> None:
        timings.add(name, wall(cli(code, "segment", folder, *args), env), LAST_CPU[0])

    segment_image(decode_image(read_bytes(smears[0])), "watershed")  # warm-up
    for round_ in range(rounds):  # every figure once per round, the CLI into a fresh folder each time
        in_process()
        start = time.perf_counter()
        api.segment([str(p) for p in smears], tmp / f"seg-api-{round_}", options=api.ExecutionOptions(jobs=1))
        timings.add("api", time.perf_counter() - start, 0.0)
        run_cli("cli_j1", "--out-dir", tmp / f"seg-j1-{round_}", "-j", "1")
        run_cli("cli_j2", "--out-dir", tmp / f"seg-j2-{round_}", "-j", "2")
    per_image = {name: timings.best(name) / len(smears) for name in timings.walls}
    cpu = {name: timings.cpu(name) / len(smears) for name in ("in_process", "cli_j1", "cli_j2")}
    return {
        "n_images": len(smears),
        "rounds": rounds,
        "in_process_cpu_ms_per_image": round(cpu["in_process"] * 1e3, 1),
        "cli_j1_cpu_vs_in_process": round(cpu["cli_j1"] / cpu["in_process"], 2),
        "cli_j2_cpu_vs_j1": round(cpu["cli_j2"] / cpu["cli_j1"], 2),
        "in_process_ms_per_image": round(per_image["in_process"] * 1e3, 1),
        "api_segment_ms_per_image": round(per_image["api"] * 1e3, 1),
        "api_segment_vs_in_process": round(per_image["api"] / per_image["in_process"], 2),
        "cli_j1_ms_per_image": round(per_image["cli_j1"] * 1e3, 1),
        "cli_j1_vs_in_process": round(per_image["cli_j1"] / per_image["in_process"], 2),
        "cli_j1_vs_in_process_per_round": timings.per_round("cli_j1", "in_process"),
        "cli_j2_ms_per_image": round(per_image["cli_j2"] * 1e3, 1),
        "cli_j2_speedup_vs_j1": round(per_image["cli_j1"] / per_image["cli_j2"], 2),
        "cli_j2_speedup_vs_j1_per_round": timings.per_round("cli_j1", "cli_j2"),
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
    parser.add_argument("--rounds", type=int, default=3, help="extraction and segment: best of this many rounds (each figure once per round)")
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
    compile_bytecode(args.code.resolve())
    results = {"code": str(args.code.resolve()), "cpus": os.cpu_count(), "bytecode": "compiled before measuring",
               "load_average_at_start": os.getloadavg()}  # fmt: skip
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
