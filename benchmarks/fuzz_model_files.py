"""Fuzz model files: random byte flips and JSON/array edits of valid .bcm files must never crash, hang
or give probabilities of the wrong shape; each is loaded and predicted in a worker process with a timeout.

Valid models of every registered classifier are trained on the colour features of sample_data/pbc,
then each iteration picks one, mutates it one of four ways and hands it to a worker process that
loads it and predicts the training rows:

- ``file bytes``: 1-8 random bytes of the .bcm flipped (mostly caught by the zip CRC);
- ``entry bytes``: bytes flipped inside one archive entry, re-zipped so the CRC is valid;
- ``json edit``: one value of manifest.json, the XGBoost JSON or skops' schema.json replaced by a
  hostile value (negative, huge, wrong type), deleted, or a list shortened;
- ``array edit``: one element of an array in the skops file (tree nodes, coefficients, support
  vectors) set to a hostile number.

A worker that dies is a crash, one that does not answer within ``--timeout`` a hang; both are
restarted for the next file. With ``--cli N`` the first N mutants also go through
``python -m bloodcli predict`` (exit code and CSV shape checked).

    python benchmarks/fuzz_model_files.py --iterations 300 --cli 20
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import selectors
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OK, REFUSED = "predicted, right shape", "refused (exit 4)"
HOSTILE = [-1, -5, 0, 1, 2, 10**8, 2**31, -(2**63), 1e308, -1e308, "x", None, [], {}, True]


def build_models(work: Path, names: list[str]) -> tuple[list[Path], np.ndarray]:
    """Valid model files of ``names`` and the feature rows they were trained on."""
    sys.path.insert(0, str(ROOT))
    from bloodcli import api
    from bloodcli.learn.model_file import train_model

    table = api.featurize(ROOT / "sample_data" / "pbc", "color", options=api.ExecutionOptions(use_cache=False, jobs=1))
    paths = []
    for name in names:
        paths.append(work / f"{name}.bcm")
        train_model(table, name, seed=0).save(paths[-1])
    np.save(work / "rows.npy", table.values)
    return paths, table.values


def _zip_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _flip(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(rng.integers(1, 9)):
        out[rng.integers(len(out))] ^= 1 << rng.integers(8)
    return bytes(out)


def _edit_json(document, rng):
    """``document`` with one randomly chosen value replaced, deleted or shortened."""
    containers = []
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)) and item:
            containers.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    target = containers[rng.integers(len(containers))]
    key = list(target)[rng.integers(len(target))] if isinstance(target, dict) else int(rng.integers(len(target)))
    action = rng.integers(4)
    if action == 0 and isinstance(target, dict):
        del target[key]
    elif action == 1 and isinstance(target, list):
        target.pop()
    else:
        target[key] = HOSTILE[rng.integers(len(HOSTILE))]
    return document


def _edit_array(data: bytes, rng) -> bytes:
    """One element of one .npy array inside a skops file set to a hostile number."""
    entries = _zip_entries(data)
    arrays = [name for name in entries if name.endswith(".npy")]
    if not arrays:
        return data
    name = arrays[rng.integers(len(arrays))]
    array = np.load(io.BytesIO(entries[name]), allow_pickle=False)
    if array.size == 0:
        return data
    flat = array.reshape(-1)
    index = rng.integers(flat.size)
    value = [-1, -5, 10**8, 2**31 - 1, 0][rng.integers(5)]
    if flat.dtype.names:  # tree nodes: a structured array
        field = flat.dtype.names[rng.integers(len(flat.dtype.names))]
        flat[field][index] = value if np.issubdtype(flat.dtype[field], np.integer) else float(value)
    elif np.issubdtype(flat.dtype, np.number):
        flat[index] = value if np.issubdtype(flat.dtype, np.integer) else [np.nan, np.inf, -1e308, float(value)][rng.integers(4)]
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    entries[name] = buffer.getvalue()
    return _zipped(entries)


def mutate(data: bytes, rng) -> tuple[str, bytes]:
    """A mutant of a model file and the kind of mutation."""
    kind = ["file bytes", "entry bytes", "json edit", "array edit"][rng.integers(4)]
    if kind == "file bytes":
        return kind, _flip(data, rng)
    entries = _zip_entries(data)
    if kind == "entry bytes":
        name = list(entries)[rng.integers(len(entries))]
        entries[name] = _flip(entries[name], rng)
    elif kind == "json edit":
        names = [n for n in entries if n.endswith(".json")]
        name = names[rng.integers(len(names))]
        if "estimator.skops" in entries and rng.integers(2):
            inner = _zip_entries(entries["estimator.skops"])
            inner["schema.json"] = json.dumps(_edit_json(json.loads(inner["schema.json"]), rng)).encode()
            entries["estimator.skops"] = _zipped(inner)
        else:
            entries[name] = json.dumps(_edit_json(json.loads(entries[name]), rng)).encode()
    elif "estimator.skops" in entries:
        entries["estimator.skops"] = _edit_array(entries["estimator.skops"], rng)
    else:
        return mutate(data, rng)  # XGBoost files hold no arrays: another kind
    return kind, _zipped(entries)


def serve(rows_path: str) -> None:
    """Worker: for each model path on stdin, load, predict and print the outcome as one JSON line."""
    sys.path.insert(0, str(ROOT))
    from bloodcli.errors import BloodcliError
    from bloodcli.learn.model_file import TrainedModel

    warnings.simplefilter("ignore")  # tampered numbers overflow; only the outcome matters
    rows = np.load(rows_path)
    for line in sys.stdin:
        try:
            model = TrainedModel.load(line.strip())
            probabilities = model.predict_proba(rows)
            right = probabilities.shape == (len(rows), len(model.classes)) and np.allclose(probabilities.sum(axis=1), 1)
            outcome = OK if right and len(model.predict(rows)) == len(rows) else "WRONG SHAPE (exit 0)"
        except BloodcliError as exc:
            outcome = REFUSED if exc.exit_code == 4 else f"other error (exit {exc.exit_code})"
        except Exception as exc:  # noqa: BLE001 - what the CLI would report as an internal error
            outcome = f"internal error (exit 1): {type(exc).__name__}"
        print(json.dumps(outcome), flush=True)


class Worker:
    """A serving worker process, restarted after a crash or a hang."""

    def __init__(self, rows_path: Path):
        self.rows_path, self.process = rows_path, None

    def check(self, path: Path, timeout: float) -> str:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(self.rows_path)], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, bufsize=1)  # fmt: skip
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            self.stop()
            return f"HANG (no answer in {timeout:g} s)"
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.process = None
            return f"CRASH (signal {-code})" if code < 0 else f"CRASH (exit {code})"
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def check_cli(path: Path, images: list[Path], timeout: float) -> str:
    """``bloodcli predict`` on a mutant: its exit code, and for exit 0 whether the CSV is consistent."""
    try:
        result = subprocess.run([sys.executable, "-m", "bloodcli", "predict", str(path), *map(str, images), "--no-cache"],
                                capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    except subprocess.TimeoutExpired:
        return "HANG"
    if result.returncode != 0:
        return f"exit {result.returncode}" + ("" if len(result.stderr.strip().splitlines()) == 1 else " (not one line)")
    lines = [line.split(",") for line in result.stdout.strip().splitlines()]
    consistent = len(lines) == len(images) + 1 and len({len(line) for line in lines}) == 1
    return "exit 0, consistent CSV" if consistent else "WRONG SHAPE (exit 0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a worker may take per file")
    parser.add_argument("--models", default="dt,rf,xgboost,svm,logreg,knn,nb,mlp")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bloodcli-fuzz"))
    parser.add_argument("--cli", type=int, default=0, help="also run the first N mutants through 'bloodcli predict'")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    args.work.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore", RuntimeWarning)  # hostile values overflow their dtype: that is the point
    start = time.perf_counter()
    bases, _ = build_models(args.work, args.models.split(","))
    rng = np.random.default_rng(args.seed)
    worker = Worker(args.work / "rows.npy")
    outcomes, by_kind, cli = collections.Counter(), collections.Counter(), collections.Counter()
    images = sorted((ROOT / "sample_data" / "pbc" / "platelet").glob("*.jpg"))[:2]
    for i in range(args.iterations):
        base = bases[rng.integers(len(bases))]
        kind, data = mutate(base.read_bytes(), rng)
        path = args.work / f"mutant-{i % 4}.bcm"
        path.write_bytes(data)
        outcome = worker.check(path, args.timeout)
        outcomes[outcome] += 1
        by_kind[f"{base.stem}, {kind}: {outcome}"] += 1
        if i < args.cli:
            cli[check_cli(path, images, args.timeout * 2)] += 1
    worker.stop()
    report = {"iterations": args.iterations, "seconds": round(time.perf_counter() - start, 1), "outcomes": dict(outcomes),
              "by_model_and_kind": dict(sorted(by_kind.items())), "cli": dict(cli)}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.iterations} mutants of {len(bases)} model files in {report['seconds']} s")
        for outcome, count in outcomes.most_common():
            print(f"{count:6d}  {outcome}")
        for outcome, count in cli.most_common():
            print(f"{count:6d}  CLI: {outcome}")
    bad = [o for o in outcomes if o not in (OK, REFUSED)] + [o for o in cli if "HANG" in o or "WRONG" in o or "not one line" in o]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
