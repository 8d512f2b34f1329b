"""Commands load only what they use: help, model info and classical extraction import no heavy library.

Checked on real processes with ``python -X importtime`` (which lists every module a process
imports), so the figures of benchmarks/bench_edges.py cannot silently regress. No timings here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLE, checkout_env, run_python

#: Libraries that cost from a tenth of a second to seconds to import; classical extraction needs none of them.
HEAVY = ("sklearn", "scipy", "pandas", "tensorflow", "keras", "dask", "distributed", "matplotlib", "skimage",
         "xgboost", "skops", "pyarrow", "joblib", "pydantic")  # fmt: skip
#: What help and a model's description need neither: the array and image libraries (about 0.1 s together).
PIXEL_LIBRARIES = ("numpy", "cv2", "PIL")


def imported_packages(*args) -> set[str]:
    """Top-level packages a ``bloodcli`` process imports, after checking it succeeded."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "bloodcli", *map(str, args)],
                         capture_output=True, text=True, env=checkout_env(), timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return {name.split(".")[0] for name in re.findall(r"^import time:.*\|\s+(\S+)\s*$", run.stderr, flags=re.M)}


@pytest.mark.parametrize(
    "args",
    [("--help",), ("info", ROOT / "tests" / "data" / "model_0.1_svm.bcm", "--json"), ("segment", "--help")],
    ids=["help", "info-model", "segment-help"],
)
def test_help_and_model_info_import_no_heavy_library(args):
    packages = imported_packages(*args)
    assert "bloodcli" in packages and "typer" in packages  # the listing works
    assert not packages & {*HEAVY, *PIXEL_LIBRARIES}, sorted(packages & {*HEAVY, *PIXEL_LIBRARIES})


def test_classical_extraction_of_one_image_imports_no_heavy_library(tmp_path):
    source = sorted((SAMPLE / "pbc" / "neutrophil").glob("*.jpg"))[0]
    (tmp_path / "one" / "neutrophil").mkdir(parents=True)
    shutil.copy(source, tmp_path / "one" / "neutrophil")
    packages = imported_packages("extract", tmp_path / "one", "-o", tmp_path / "f.npz", "--no-cache", "-j", "1")
    assert (tmp_path / "f.npz").exists() and "cv2" in packages
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))


def test_the_extractor_registry_lists_names_without_importing_any_extractor():
    code = (
        "import sys; from bloodcli.features import EXTRACTORS\n"
        "names = list(EXTRACTORS)\n"
        "loaded = [m for m in ('bloodcli.features.texture', 'bloodcli.features.deep', 'numpy') if m in sys.modules]\n"
        "from bloodcli.features.texture import GLCMExtractor\n"
        "print(names[:3], loaded, EXTRACTORS['glcm'] is GLCMExtractor, 'fake' in EXTRACTORS)\n"
    )
    assert run_python(code).stdout.strip() == "['glcm', 'shape', 'color'] [] True False"


#: Runs ``bloodcli --help`` through the console-script entry point, in the process that then reports.
AFTER_A_COMMAND = (
    "import sys\n"
    "from bloodcli.cli import main\n"
    "sys.argv = ['bloodcli', '--help']\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
)
BLAS_THREADS_AFTER_A_COMMAND = AFTER_A_COMMAND + (
    "loaded_before = 'numpy' in sys.modules\n"
    "import numpy, threadpoolctl\n"
    "pools = threadpoolctl.threadpool_info()\n"
    "print(loaded_before, sorted({p['num_threads'] for p in pools if p['user_api'] == 'blas'}))\n"
)


@pytest.mark.parametrize("chosen, expected", [(None, "False [1]"), ("2", "False [2]")], ids=["default", "user-chosen"])
def test_the_command_line_runs_blas_on_one_thread_unless_its_environment_says_otherwise(chosen, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if chosen is not None:
        env["OPENBLAS_NUM_THREADS"] = chosen
    assert run_python(BLAS_THREADS_AFTER_A_COMMAND, env).stdout.strip().splitlines()[-1] == expected


def test_a_finished_command_leaves_its_objects_to_the_exit_not_to_a_last_cycle_search():
    code = AFTER_A_COMMAND + "import gc\nprint('frozen objects:', gc.get_freeze_count() > 0)\n"
    assert run_python(code).stdout.strip().splitlines()[-1] == "frozen objects: True"
