"""The README's examples run as printed, offline, on sample_data/ (from a scratch folder, nothing else given)."""

import re
import shlex
import shutil
from pathlib import Path

from conftest import ROOT
from typer.testing import CliRunner

from bloodcli.cli import app


def readme_commands() -> list[str]:
    """Every ``bloodcli ...`` line of the README's bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("bloodcli ") and "tcp://" not in line:  # a Dask cluster is not at hand
                commands.append(line)
    return commands


def test_every_readme_example_runs_as_printed(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    assert len(commands) >= 12
    for command in commands:  # in order: later examples use what earlier ones wrote (model.bcm)
        args = [str(p) for part in shlex.split(command)[1:] for p in (sorted(Path().glob(part)) if "*" in part else [part])]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{command}\n{result.output}"
