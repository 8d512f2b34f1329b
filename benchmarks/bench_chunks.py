"""Where ``extract -j 2``'s two cores wait: the timeline of every chunk, in the command and in its worker.

Runs ``bloodcli extract MANIFEST --no-cache -j 2`` in fresh processes, the checkout measured and (``--baseline DIR``)
another one in turns, with every chunk's start and end stamped in the process that computed it (the task is wrapped
before the command starts; the worker is forked from it, so it runs the same wrapper: Linux). Per run, in seconds
from the interpreter's start:

- ``command_first_chunk`` and ``worker_first_chunk``: when each began its first chunk, and ``worker_lag`` between them;
- ``command_idle`` and ``worker_idle``: time between a process's own chunks (handing chunks out and results back);
- ``end_wait``: from the command's last chunk to the end of the worker's last one;
- ``wall``: the whole command.

Reports the median of each over the runs, and the baseline's median over the measured checkout's.

Usage: python benchmarks/bench_chunks.py [--crops 3200] [--runs 5] [--baseline DIR] [--out FILE]
Writes benchmarks/results/chunks.json.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"

WORK = """
import json, os, sys, time
started = time.time()
import bloodcli.pipeline.runner as runner
stamps, task = sys.argv[1], runner._extract_chunk
def stamped(items, *args):
    begin = time.time()
    results = task(items, *args)
    with open(os.path.join(stamps, str(os.getpid())), "a") as handle:
        handle.write(f"{begin} {time.time()}\\n")
    return results
runner._extract_chunk = stamped
from bloodcli.cli import main
sys.argv = ["bloodcli", "extract", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({"started": started, "ended": time.time(), "command": os.getpid()}))
"""


def run_once(code: Path, manifest: Path, tmp: Path) -> dict:
    stamps = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "PYTHONPATH": str(code)}
    arguments = [str(stamps), str(manifest), "-o", str(tmp / "f.npz"), "--no-cache", "-j", "2", "-q"]
    out = subprocess.run([sys.executable, "-c", WORK, *arguments], env=env, capture_output=True, text=True, check=True, cwd=code)
    run = json.loads(out.stdout.strip().splitlines()[-1])
    chunks = {int(f.name): [tuple(map(float, line.split())) for line in f.read_text().splitlines()] for f in stamps.iterdir()}
    command = chunks.pop(run["command"])
    if len(chunks) != 1:
        raise RuntimeError(f"expected one worker, found {len(chunks)} (is this Linux, where workers are forked?)")
    worker = next(iter(chunks.values()))
    since = lambda moment: moment - run["started"]  # noqa: E731
    idle = lambda spans: spans[-1][1] - spans[0][0] - sum(end - begin for begin, end in spans)  # noqa: E731
    figures = {
        "command_first_chunk": since(command[0][0]), "worker_first_chunk": since(worker[0][0]),
        "worker_lag": worker[0][0] - command[0][0], "command_idle": idle(command), "worker_idle": idle(worker),
        "end_wait": max(0.0, worker[-1][1] - command[-1][1]), "wall": since(run["ended"]),
    }  # fmt: skip
    return {key: round(value, 4) for key, value in figures.items()}


def write_manifest(crops: int, path: Path) -> Path:
    files = sorted((SHARED / "pbc").glob("*/*.jpg"))
    if not files:
        sys.exit(f"no PBC crops under {SHARED / 'pbc'}")
    chosen = files[:: max(1, len(files) // crops)][:crops]
    path.write_text("path,label\n" + "".join(f"{f.resolve()},{f.parent.name}\n" for f in chosen))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=3200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured in turns with this one")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "chunks.json")
    args = parser.parse_args()
    codes = {"measured": HERE.parent, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    for code in codes.values():  # as an install does: PYTHONDONTWRITEBYTECODE would otherwise cost every run 60 ms
        compileall.compile_dir(code / "bloodcli", quiet=1)
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_manifest(args.crops, Path(tmp) / "crops.csv")
        for _ in range(args.runs):
            for name, code in codes.items():
                runs[name].append(run_once(code, manifest, Path(tmp)))
    result = {"crops": args.crops, "runs": args.runs, "codes": {name: str(code) for name, code in codes.items()}}
    for name, measured in runs.items():
        result[name] = {key: round(median(run[key] for run in measured), 3) for key in measured[0]}
        result[f"{name}_per_run"] = measured
    if args.baseline:
        result["baseline_vs_measured"] = {key: round(result["baseline"][key] / max(result["measured"][key], 1e-3), 2)
                                          for key in result["measured"]}  # fmt: skip
    print(json.dumps({name: result[name] for name in codes} | {"ratios": result.get("baseline_vs_measured")}))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
