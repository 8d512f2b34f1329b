"""The README's first command, scripts/demo.sh: its compare command runs offline on sample data and prints the
classical-vs-deep verdict with the cost per image, and where the HTML report is."""

import json
import re
import shlex
import shutil
import subprocess
import sys

from conftest import ROOT, SAMPLE

DEMO = ROOT / "scripts" / "demo.sh"


def _demo_command() -> list[str]:
    """The arguments of the demo's ``bloodcli compare`` (backslash continuations joined)."""
    text = DEMO.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.strip().startswith(".venv/bin/bloodcli compare"))
    return shlex.split(line)[1:]


def test_demo_sets_up_then_compares_classical_deep_and_fused_with_the_shipped_weights():
    text = DEMO.read_text()
    assert text.index("bash scripts/setup.sh") < text.index(".venv/bin/bloodcli compare")
    args = _demo_command()
    assert args[:2] == ["compare", "sample_data/pbc"]
    sets = args[args.index("-f") + 1 : args.index("-m")]
    assert sets == ["glcm+shape+color", "mobilenetv2", "glcm+shape+color+mobilenetv2"]
    weights = ROOT / args[args.index("--weights") + 1]
    assert weights.is_file() and weights.parent == SAMPLE / "weights"  # shipped: works offline
    assert "$OUT/report.html" in text.split(".venv/bin/bloodcli compare")[1]


def test_demo_compare_prints_the_verdict_with_costs_and_the_report_path(tmp_path):
    """The demo's own command line on 5 images per class (the same folds and models), as a process."""
    subset = tmp_path / "pbc"
    for folder in sorted((SAMPLE / "pbc").iterdir()):
        (subset / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[:5]:
            shutil.copy(image, subset / folder.name / image.name)
    args = [str(subset) if a == "sample_data/pbc" else str(tmp_path / "out") if a == "$OUT" else a for a in _demo_command()]
    result = subprocess.run([sys.executable, "-m", "bloodcli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["kind"] for r in data["results"]} == {"classical", "deep", "fused"} and not data["comparison"]["skipped"]
    assert data["sentence"] in result.stdout.replace("\n", " ")
    assert re.search(r"best classical: .* at [\d.]+ ms/image; best deep: mobilenetv2 \+ \w+, [\d.]+ at [\d.]+ ms/image", data["sentence"])
    assert f"wrote {tmp_path / 'out' / 'report.html'}" in result.stderr
