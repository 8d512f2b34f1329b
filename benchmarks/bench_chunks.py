"""Where ``extract -j 2`` or ``segment -j 2`` waits: the timeline of every chunk, in the command and in its worker.

Runs ``bloodcli extract MANIFEST --no-cache -j 2`` (PBC crops) or ``bloodcli segment FOLDER -j 2`` (BCCD smears,
``--command segment``) in fresh processes, the checkout measured and (``--baseline DIR``)
another one in turns, with every chunk's start and end stamped in the process that computed it (the task is wrapped
before the command starts; the worker is forked from it, so it runs the same wrapper: Linux). Per run, in seconds
from the interpreter's start:

- ``command_first_chunk`` and ``worker_first_chunk``: when each began its first chunk, and ``worker_lag`` between them;
- ``command_idle`` and ``worker_idle``: time between a process's own chunks (handing chunks out and results back);
- ``end_idle``: from the end of one process's last chunk to the end of the other's (one core idle at the end);
- ``tail``: from the end of the last chunk to the command's end (writing its outputs);
- ``wall``: the whole command.

Reports the median of each over the runs, and the baseline's median over the measured checkout's.

Usage: python benchmarks/bench_chunks.py [--command extract|segment] [--crops 3200] [--smears 364] [--runs 5] [--baseline DIR] [--out FILE]
Writes benchmarks/results/chunks.json (segment: chunks_segment.json).
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
import importlib
stamps, command, (module, name) = sys.argv[1], sys.argv[2], sys.argv[3].split(":")
owner = importlib.import_module(module)
task = getattr(owner, name)
def stamped(items, *args):
    begin = time.time()
    results = task(items, *args)
    with open(os.path.join(stamps, str(os.getpid())), "a") as handle:
        handle.write(f"{begin} {time.time()}\\n")
    return results
setattr(owner, name, stamped)
from bloodcli.cli import main
sys.argv = ["bloodcli", "-q", command, *sys.argv[4:]]
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({"started": started, "ended": time.time(), "command": os.getpid()}))
"""


COMMANDS = {  # the chunk task each command hands out, and its arguments after the input
    "extract": ("bloodcli.pipeline.runner:_extract_chunk", lambda tmp: ["-o", str(tmp / "f.npz"), "--no-cache"]),
    "segment": ("bloodcli.segmentation.batch:_segment_chunk", lambda tmp: ["--out-dir", tempfile.mkdtemp(dir=tmp)]),
}


def run_once(code: Path, command: str, inputs: Path, tmp: Path) -> dict:
    stamps = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "PYTHONPATH": str(code)}
    task, options = COMMANDS[command]
    arguments = [str(stamps), command, task, str(inputs), *options(tmp), "-j", "2"]
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
        "end_idle": abs(worker[-1][1] - command[-1][1]), "tail": run["ended"] - max(worker[-1][1], command[-1][1]),
        "wall": since(run["ended"]),
    }  # fmt: skip
    return {key: round(value, 4) for key, value in figures.items()}


def write_manifest(crops: int, path: Path) -> Path:
    files = sorted((SHARED / "pbc").glob("*/*.jpg"))
    if not files:
        sys.exit(f"no PBC crops under {SHARED / 'pbc'}")
    chosen = files[:: max(1, len(files) // crops)][:crops]
    path.write_text("path,label\n" + "".join(f"{f.resolve()},{f.parent.name}\n" for f in chosen))
    return path


def write_smear_folder(smears: int, folder: Path) -> Path:
    files = sorted((SHARED / "bccd" / "JPEGImages").glob("*.jpg"))[:smears]
    if not files:
        sys.exit(f"no BCCD smears under {SHARED / 'bccd'}")
    folder.mkdir()
    for file in files:
        (folder / file.name).symlink_to(file)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", choices=sorted(COMMANDS), default="extract")
    parser.add_argument("--crops", type=int, default=3200, help="extract: PBC crops")
    parser.add_argument("--smears", type=int, default=364, help="segment: BCCD smears")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured in turns with this one")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/chunks.json (segment: chunks_segment.json)")
    args = parser.parse_args()
    out = args.out or HERE / "results" / ("chunks.json" if args.command == "extract" else f"chunks_{args.command}.json")
    codes = {"measured": HERE.parent, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    for code in codes.values():  # as an install does: PYTHONDONTWRITEBYTECODE would otherwise cost every run 60 ms
        compileall.compile_dir(code / "bloodcli", quiet=1)
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "extract":
            inputs, size = write_manifest(args.crops, Path(tmp) / "crops.csv"), {"crops": args.crops}
        else:
            inputs, size = write_smear_folder(args.smears, Path(tmp) / "smears"), {"smears": args.smears}
        for _ in range(args.runs):
            for name, code in codes.items():
                runs[name].append(run_once(code, args.command, inputs, Path(tmp)))
    result = {"command": args.command, **size, "runs": args.runs, "codes": {name: str(code) for name, code in codes.items()}}
    for name, measured in runs.items():
        result[name] = {key: round(median(run[key] for run in measured), 3) for key in measured[0]}
        result[f"{name}_per_run"] = measured
    if args.baseline:
        result["baseline_vs_measured"] = {key: round(result["baseline"][key] / max(result["measured"][key], 1e-3), 2)
                                          for key in result["measured"]}  # fmt: skip
    print(json.dumps({name: result[name] for name in codes} | {"ratios": result.get("baseline_vs_measured")}))
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
