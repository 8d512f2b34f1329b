"""L*a*b* conversions: OpenCV's values, one door for all of them, and tables built ahead without racing or crashing."""

from __future__ import annotations

import os
import re
import shutil
import textwrap

import cv2
import numpy as np
import pytest
from conftest import ROOT, SAMPLE, run_python
from typer.testing import CliRunner

from bloodcli.cli import app
from bloodcli.imaging import cielab

#: Where there is no fork (Windows) there is no fork handler to test: nothing there can inherit half-built tables.
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform: nothing to inherit tables")


def in_a_forked_child(setup: str, child: str) -> str:
    """What ``child`` prints in a child forked after ``setup`` ran, in a fresh interpreter (a hung child ends in 10 s)."""
    code = (f"import os, signal\n{textwrap.dedent(setup)}\npid = os.fork()\nif pid == 0:\n    signal.alarm(10)\n"
            f"{textwrap.indent(textwrap.dedent(child), '    ')}\n    os._exit(0)\nos.waitpid(pid, 0)\n")  # fmt: skip
    return run_python(code, timeout=60).stdout.strip()


def test_conversions_are_opencvs_in_both_directions_for_8_bit_and_float_images():
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    lab = cielab.rgb_to_lab(rgb)
    assert np.array_equal(lab, cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB))
    assert np.array_equal(cielab.lab_to_rgb(lab), cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
    unit = rgb.astype(np.float32) / 255
    unit_lab = cielab.rgb_to_lab(unit)
    assert np.array_equal(unit_lab, cv2.cvtColor(unit, cv2.COLOR_RGB2LAB))
    assert np.array_equal(cielab.lab_to_rgb(unit_lab), cv2.cvtColor(unit_lab, cv2.COLOR_LAB2RGB))
    assert np.abs(cielab.lab_to_rgb(unit_lab) - unit).max() < 1 / 255  # a round trip, within an 8-bit step


def test_every_lab_conversion_of_the_package_goes_through_cielab():
    # A conversion elsewhere would not wait for the tables being built: two first conversions at once race in OpenCV.
    direct = re.compile(r"COLOR_\w*LAB|COLOR_\w*Lab")
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in sorted((ROOT / "bloodcli").rglob("*.py")) if path.name != "cielab.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if direct.search(line)]  # fmt: skip
    assert offenders == []


def test_a_process_that_ends_while_the_tables_are_being_built_ends_cleanly():
    # With a daemon builder the interpreter tore the thread down inside OpenCV: "terminate called", exit 134,
    # in most runs of this script (and in 6 of 40 runs of `bloodcli extract --help` with the tables started earlier).
    code = "from bloodcli.imaging.cielab import build_tables_ahead; build_tables_ahead()"
    assert [run_python(code, check=False).returncode for _ in range(5)] == [0] * 5


@needs_fork
def test_a_fork_waits_for_the_tables_so_the_child_never_copies_half_built_ones():
    setup = """
        import time
        from bloodcli.imaging import cielab
        built = []
        cielab._convert_one_pixel = lambda: (time.sleep(0.3), built.append(True))
        cielab.build_tables_ahead()
    """
    assert in_a_forked_child(setup, "print('built in the child:', built == [True], flush=True)") == "built in the child: True"


@needs_fork
def test_a_fork_while_another_thread_starts_the_builder_leaves_the_child_able_to_convert():
    # The child inherits every lock as it was at the fork: one held by another thread then stays held in the child.
    setup = """
        import threading, time, numpy
        from bloodcli.imaging import cielab
        def starting():
            with cielab._builder_started:
                time.sleep(0.3)
        threading.Thread(target=starting).start()
        time.sleep(0.1)
    """
    child = """
        cielab.rgb_to_lab(numpy.zeros((1, 1, 3), numpy.uint8))
        print('converted in the child', flush=True)
    """
    assert in_a_forked_child(setup, child) == "converted in the child"


@pytest.fixture
def started(monkeypatch) -> list[bool]:
    """Records each start of the builder by a command (the tables themselves are built as usual)."""
    calls: list[bool] = []
    monkeypatch.setattr(cielab, "build_tables_ahead", lambda: calls.append(True))
    return calls


def test_extract_and_segment_start_the_tables_once_their_options_are_valid(tmp_path, small_dataset, started):
    runner = CliRunner()
    refused = runner.invoke(app, ["extract", str(small_dataset), "-o", str(tmp_path / "features.txt")])
    assert refused.exit_code == 2 and started == []
    assert runner.invoke(app, ["extract", str(small_dataset), "-o", str(tmp_path / "f.npz"), "-j", "1"]).exit_code == 0
    assert started == [True]
    smear = sorted((SAMPLE / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    shutil.copy(smear, tmp_path / smear.name)
    result = runner.invoke(app, ["segment", str(tmp_path / smear.name), "--out-dir", str(tmp_path / "out"), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert started == [True, True]
