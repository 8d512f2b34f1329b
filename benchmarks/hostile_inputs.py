"""Build hostile and careless inputs, run the command line on each, report exit code, message and peak memory.

Every case runs ``python -m bloodcli ...`` from the checkout given by ``--code`` (default: this one)
under ``/usr/bin/time -v`` (peak resident memory), with an address-space limit (``--memory-gb``) and
a timeout, so an old checkout that tries to allocate 20 GB or loops forever is stopped instead of
taking the machine. Run it on two checkouts to get the before/after table:

    python benchmarks/hostile_inputs.py --code /path/to/old/checkout > before.md
    python benchmarks/hostile_inputs.py > after.md

Special output targets are private device nodes and FIFOs in the work folder (never /dev itself:
an old checkout run as root would rename a regular file over them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
IMAGES = SAMPLE / "pbc" / "platelet"
CACHE = Path("/tmp/bloodcli-hostile-cache")


def tiled_tiff(path: Path, side: int, tile: int = 256) -> Path:
    """A zlib tiled TIFF of zeros: a few hundred KB on disk, ``side**2`` pixels decoded."""
    import tifffile

    zero = np.zeros((tile, tile, 3), np.uint8)
    count = ((side + tile - 1) // tile) ** 2
    tifffile.imwrite(path, (zero for _ in range(count)), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile),
                     photometric="rgb", compression="zlib")  # fmt: skip
    return path


def png(path: Path, side: int) -> Path:
    from PIL import Image

    Image.fromarray(np.full((side, side, 3), 200, np.uint8)).save(path)
    return path


def rewritten(model: Path, target: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(model) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for name in old.namelist():
            new.writestr(name, entries.get(name, old.read(name)))
    return target


def inflating_manifest(model: Path, target: Path, gib: float) -> Path:
    """A model whose manifest.json is valid JSON padded with ``gib`` GiB of spaces (streamed, a few MB zipped)."""
    with zipfile.ZipFile(model) as old:
        manifest, others = old.read("manifest.json"), {n: old.read(n) for n in old.namelist() if n != "manifest.json"}
    chunk = b" " * (64 << 20)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        with new.open("manifest.json", "w", force_zip64=True) as entry:
            for _ in range(int(gib * 16)):
                entry.write(chunk)
            entry.write(manifest)
        for name, data in others.items():
            new.writestr(name, data)
    return target


def xgboost_edit(model: Path, target: Path, field: str, value) -> Path:
    with zipfile.ZipFile(model) as archive:
        document = json.loads(archive.read("estimator.xgboost.json"))
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    tree[field][0] = value
    return rewritten(model, target, {"estimator.xgboost.json": json.dumps(document).encode()})


def manifest_edit(model: Path, target: Path, data: bytes) -> Path:
    return rewritten(model, target, {"manifest.json": data})


def tampered_boosting(code: str, work: Path) -> Path:
    """A gradient-boosting model file (a 2-D array of trees) with an out-of-range child, built by ``code``'s bloodcli."""
    script = f"""
import sys, io, zipfile, numpy as np, skops.io as sio
sys.path.insert(0, {code!r})
from bloodcli import api
from bloodcli.learn.model_file import TrainedModel
from sklearn.ensemble import GradientBoostingClassifier
table = api.featurize({str(work / 'two')!r}, "color", options=api.ExecutionOptions(use_cache=False, jobs=1))
labels = np.searchsorted(sorted(set(table.labels)), table.labels)
model = TrainedModel.of(table, GradientBoostingClassifier(n_estimators=3, max_depth=2).fit(table.values, labels), "gb", 0)
model.estimator.estimators_[0, 0].tree_.children_left[0] = 10**8
model.save({str(work / 'gb.bcm')!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    return work / "gb.bcm"


def build(work: Path, code: str) -> list[tuple[str, list, dict]]:
    """The cases: (name, bloodcli arguments, options)."""
    two = work / "two"
    for cls in ("lymphocyte", "platelet"):
        shutil.copytree(SAMPLE / "pbc" / cls, two / cls)
    model, xgb = work / "logreg.bcm", work / "xgb.bcm"
    for path, name in ((model, "logreg"), (xgb, "xgboost")):
        cli(code, ["train", two, "-f", "color", "-m", name, "-o", path, "--no-cache"], 600, 8)
    tiff = tiled_tiff(work / "tiled-144mp.tif", 12000)
    (work / "file").write_text("")
    os.mkfifo(work / "model.fifo")
    null, full = work / "null", work / "full"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(full, 0o666 | 0o020000, os.makedev(1, 7))
    (work / "real.csv").write_text("old")
    (work / "link.csv").symlink_to("real.csv")
    boxes = work / "boxes"
    boxes.mkdir()
    shutil.copy(sorted(IMAGES.glob("*.jpg"))[0], boxes / "a.jpg")
    (boxes / "m.csv").write_text("path,label,xmin,ymin,xmax,ymax\na.jpg,x,0,0,inf,10\na.jpg,y,0,0,10,10\n")
    shutil.copy(sorted(IMAGES.glob("*.jpg"))[1], boxes / "two\nlines.jpg")
    (boxes / "newline.csv").write_text('path,label\n"two\nlines.jpg",a\na.jpg,b\n')
    deep = b'{"format": "bloodcli-model/1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with zipfile.ZipFile(xgb) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    train = ["train", two, "-f", "color", "--no-cache"]
    predict = ["predict", "MODEL", IMAGES, "--no-cache"]

    def with_model(path):
        return [str(path) if a == "MODEL" else a for a in predict]

    cases = [
        ("144 MP tiled TIFF (" + f"{tiff.stat().st_size // 1024} KB)", with_model(model)[:2] + [tiff, "--no-cache"], {}),
        ("model manifest inflating to 1.5 GiB", with_model(inflating_manifest(xgb, work / "inflating.bcm", 1.5)), {}),
        ("--augment copies=1000000000", [*train, "--augment", "copies=1000000000"], {"timeout": 120}),
        ("--resize 100000", [*train, "--resize", "100000"], {}),
        ("XGBoost child index 1e8", with_model(xgboost_edit(xgb, work / "x1.bcm", "left_children", 10**8)), {}),
        ("XGBoost split feature -5", with_model(xgboost_edit(xgb, work / "x2.bcm", "split_indices", -5)), {}),
        ("XGBoost node pointing to itself", with_model(xgboost_edit(xgb, work / "x3.bcm", "right_children", 0)), {"timeout": 60}),
        ("gradient boosting, child out of range", with_model(tampered_boosting(code, work)), {}),
        ("manifest is a list", with_model(manifest_edit(xgb, work / "m1.bcm", b'["bloodcli-model/1"]')), {}),
        ("manifest missing keys", with_model(manifest_edit(xgb, work / "m2.bcm", b'{"format": "bloodcli-model/1"}')), {}),
        ("manifest invalid UTF-8", with_model(manifest_edit(xgb, work / "m3.bcm", b'{"format": "bloodcli-model/1", "m": "\xff"}')), {}),
        ("manifest nested 100000 deep", with_model(manifest_edit(xgb, work / "m4.bcm", deep)), {}),
        ("manifest: one class, two-class estimator",
         with_model(manifest_edit(xgb, work / "m5.bcm", json.dumps(manifest | {"classes": ["lymphocyte"]}).encode())), {}),
        ("FIFO given as the model", with_model(work / "model.fifo"), {"timeout": 30}),
        ("-o FIFO (no reader waiting for a rename)", [*with_model(model), "-o", work / "out.fifo"], {"timeout": 30, "fifo": True}),
        ("-o symlink to a file", [*with_model(model), "-o", work / "link.csv"], {"after": "symlink"}),
        ("-o a null device node", [*with_model(model), "-o", null], {"after": "null"}),
        ("-o a full device node (disk full)", [*with_model(model), "-o", full], {}),
        ("-o below a regular file", [*with_model(model), "-o", work / "file" / "out.csv"], {}),
        ("--cache-dir unwritable", ["extract", two, "-o", work / "f.npz", "-f", "color", "--cache-dir", work / "file" / "c"], {}),
        ("CSV box xmax=inf", ["extract", boxes / "m.csv", "-o", work / "f.csv", "-f", "color", "--no-cache"], {}),
        ("CSV quoted newline in a path", ["extract", boxes / "newline.csv", "-o", work / "f.csv", "-f", "color", "--no-cache"], {}),
        *[(f"{' '.join(option)}", [*train, *option], {}) for option in (
            ["--seed", "-1"], ["--gaussian", "inf"], ["--gaussian", "nan"], ["--clahe", "nan"], ["--median", "1001"],
            ["--cell-diameter", "nan"])],
    ]  # fmt: skip
    return cases


def cli(code: str, args, timeout: float, memory_gb: float, fifo_reader: Path | None = None) -> dict:
    """Run the command line under /usr/bin/time -v with an address-space limit; exit code, first stderr line, peak MB."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (int(memory_gb * 2**30),) * 2)

    if fifo_reader is not None and not fifo_reader.exists():
        os.mkfifo(fifo_reader)
    reader = subprocess.Popen(["cat", str(fifo_reader)], stdout=subprocess.PIPE) if fifo_reader else None
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "bloodcli", *map(str, args)]
    with open(CACHE.parent / "hostile-out.txt", "w+") as out, open(CACHE.parent / "hostile-err.txt", "w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, preexec_fn=limit, start_new_session=True,
                                   env=dict(os.environ, PYTHONPATH=code, BLOODCLI_CACHE_DIR=str(CACHE)))  # fmt: skip
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1)
        orphans = _stop_session(process.pid)  # what the run left behind (or everything, after a timeout)
        process.wait()
        err.seek(0)
        stderr = err.read()
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    status = re.search(r"Exit status: (\d+)", stderr)
    signal_ = re.search(r"Command terminated by signal (\d+)", stderr)
    if peak is None:
        code_, message = "timeout", f"no exit within {timeout:g} s (killed)"
    else:
        code_ = f"signal {signal_.group(1)}" if signal_ else status.group(1) if status else "?"
        lines = [line for line in stderr.splitlines() if line and not line.startswith(("\t", "Command "))]
        telling = [next((line for line in lines if re.search(pattern, line)), None)
                   for pattern in (r"error|Invalid value|terminated", r"warning", r"samples,")]  # fmt: skip
        message = next((line for line in [*telling, *lines] if line), "")[:130]
    if orphans and peak is not None:
        message += f" / {orphans} process(es) left running"
    if reader is not None:
        try:
            received = reader.communicate(timeout=5)[0]
            message += f" | reader got {len(received)} bytes"
        except subprocess.TimeoutExpired:
            reader.kill()
            message += " | reader still waiting"
    return {"exit": code_, "message": message, "peak_mb": int(peak.group(1)) // 1024 if peak else None}


def _stop_session(session: int) -> int:
    """SIGKILL every process left in ``session``; how many there were."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != session:
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                left.append(int(entry.name))
    for pid in [session, *left]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(ROOT), help="checkout whose bloodcli runs (default: this one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bloodcli-hostile"))
    parser.add_argument("--memory-gb", type=float, default=6.0, help="address-space limit of each run")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    cases = build(args.work, args.code)
    print(f"bloodcli from {args.code}; limit {args.memory_gb:g} GB address space per run\n")
    print("| case | exit | what the user sees | peak MB |\n|---|---|---|---|")
    for name, argv, options in cases:
        fifo = Path(argv[-1]) if options.get("fifo") else None
        result = cli(args.code, argv, options.get("timeout", 300), args.memory_gb, fifo)
        after = options.get("after")
        if after == "symlink":
            result["message"] += f" | link.csv is {'still a symlink' if (args.work / 'link.csv').is_symlink() else 'a regular file now'}"
        elif after == "null":
            result["message"] += f" | node is {'still a device' if (args.work / 'null').is_char_device() else 'a regular file now'}"
        print(f"| {name} | {result['exit']} | {result['message'].replace('|', '/')} | {result['peak_mb'] or ''} |", flush=True)


if __name__ == "__main__":
    main()
