"""Architecture checks: the layers, no import cycles, a real docstring per module, and short modules.

The layers are the ``layers`` contract of ``[tool.importlinter]`` in ``pyproject.toml``, checked by
import-linter (``lint-imports``). The module graph comes from ``scripts/import_graph.py`` (an
:mod:`ast` walk, nothing is imported), so these tests pass or fail on the source alone, even while
some module cannot be imported.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "bloodcli"
PYPROJECT = ROOT / "pyproject.toml"
SCRIPT = ROOT / "scripts" / "import_graph.py"

#: Highest first; a module may import from its own layer or lower ones. The pyproject contract must say this.
EXPECTED_LAYERS = [
    ("bloodcli.cli",),
    ("bloodcli.api",),
    ("bloodcli.describe",),
    ("bloodcli.analysis",),
    ("bloodcli.learn",),
    ("bloodcli.report",),
    ("bloodcli.segmentation",),
    ("bloodcli.pipeline",),
    ("bloodcli.features",),
    ("bloodcli.imaging",),
    ("bloodcli.io",),
    ("bloodcli.settings", "bloodcli.errors"),
]
#: Modules outside every layer: the version-only package root and ``python -m bloodcli``.
OUTSIDE_LAYERS = {"bloodcli", "bloodcli.__main__"}

MAX_LINES = 450
#: module -> why it may be longer than MAX_LINES for now. Remove an entry once the module is split.
ALLOWED_LONG: dict[str, str] = {}

PLACEHOLDER = re.compile(r"(todo|tbd|fixme|xxx|placeholder|docstring|write me)\b.*|\W*", re.IGNORECASE)


def _load_import_graph():
    spec = importlib.util.spec_from_file_location("bloodcli_import_graph", SCRIPT)
    assert spec is not None and spec.loader is not None, f"cannot load {SCRIPT}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


import_graph = _load_import_graph()


@pytest.fixture(scope="module")
def graph():
    return import_graph.build_graph(PACKAGE_DIR)


@pytest.fixture(scope="module")
def layers():
    return import_graph.load_layers(PYPROJECT)


# --- import-linter ---------------------------------------------------------------------------------


def _lint_imports_command() -> list[str]:
    script = Path(sys.executable).parent / ("lint-imports.exe" if os.name == "nt" else "lint-imports")
    if script.exists():
        return [str(script), "--no-cache"]
    # Same entry point through the interpreter, when the console script is not next to it.
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    return [sys.executable, "-c", code]


def test_import_linter_contracts_are_kept():
    try:
        import importlinter  # noqa: F401
    except ImportError as exc:
        reason = f"import-linter is not installed ({exc}); install the dev extra: pip install -e '.[dev]'"
        print(reason)
        pytest.skip(reason)
    import_linter_config = import_graph.tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    contract_names = [c["name"] for c in import_linter_config["contracts"]]
    assert {c["type"] for c in import_linter_config["contracts"]} >= {"layers", "acyclic_siblings"}

    result = subprocess.run(
        _lint_imports_command(), cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip
    report = result.stdout + result.stderr
    if result.returncode != 0:
        print(report)
    assert result.returncode == 0, f"lint-imports failed (exit {result.returncode}):\n{report}"
    for name in contract_names:
        assert f"{name} KEPT" in report, f"contract {name!r} not reported as kept:\n{report}"


def test_layers_contract_is_the_intended_order(layers):
    assert layers == EXPECTED_LAYERS


# --- the ast graph -----------------------------------------------------------------------------------


def test_graph_sees_the_whole_package(graph, layers):
    """Guards the walk itself: every layer has modules and the graph has edges between layers."""
    for layer in layers:
        for name in layer:
            assert name in graph.modules, f"layer module {name} not found under {PACKAGE_DIR}"
    assert len(graph.imports) > 50
    crossing = [i for i in graph.imports if import_graph.package_of(i.importer) != import_graph.package_of(i.imported)]
    assert crossing, "no imports between packages found: the ast walk is broken"
    assert not graph.shadowed, f"module files shadowed by a package of the same name: {graph.shadowed}"


def test_every_module_is_in_a_layer(graph, layers):
    outside = sorted(m for m in graph.modules if import_graph.layer_of(m, layers) is None and m not in OUTSIDE_LAYERS)
    assert not outside, f"modules in no layer of the pyproject contract: {outside}"


def test_no_import_goes_up_a_layer(graph, layers):
    """The direct-import half of the layers contract, from the ast walk (also runs without import-linter)."""
    upward = import_graph.upward_imports(graph, layers)
    report = "\n".join(f"  {i.importer} (line {i.line}) imports {i.imported}" for i in upward)
    assert not upward, f"imports from a lower layer into a higher one:\n{report}"


def test_no_two_modules_import_each_other(graph):
    pairs = import_graph.mutual_imports(graph.edges())
    lines = {(i.importer, i.imported): i.line for i in graph.imports}
    report = "\n".join(f"  {a} (line {lines[a, b]}) <-> {b} (line {lines[b, a]})" for a, b in pairs)
    assert not pairs, f"modules importing each other:\n{report}"


def test_no_import_cycles(graph):
    """Any cycle, function-level imports included: a deferred import hides a cycle, it does not remove it."""
    cycles = import_graph.find_cycles(graph.edges())
    report = "\n".join("  " + " -> ".join(cycle) for cycle in cycles)
    assert not cycles, f"import cycles (one example per strongly connected group of modules):\n{report}"


def test_import_graph_resolves_imports(tmp_path):
    """The walk on a small package: absolute, relative, from-import of a module or a name, in functions."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "import os\nfrom pkg.sub import b\nfrom pkg.sub.b import thing\n",
        "sub/__init__.py": "from . import b\n",
        "sub/b.py": "def f():\n    from ..c import g\n",
        "c.py": "import pkg.a\nfrom pkg import sub\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph.build_graph(package, "pkg")
    assert set(graph.modules) == {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.c"}
    assert graph.edges() == {
        "pkg": set(),
        "pkg.a": {"pkg.sub.b"},
        "pkg.sub": {"pkg.sub.b"},
        "pkg.sub.b": {"pkg.c"},
        "pkg.c": {"pkg.a", "pkg.sub"},
    }
    assert [i.in_function for i in graph.imports if i.importer == "pkg.sub.b"] == [True]
    assert import_graph.find_cycles(graph.edges()) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    assert import_graph.mutual_imports({"x": {"y"}, "y": {"x", "z"}, "z": set()}) == [("x", "y")]


# --- docstrings and size -----------------------------------------------------------------------------


def test_every_module_has_a_real_docstring(graph):
    problems = []
    for name, path in sorted(graph.modules.items()):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not docstring or not docstring.strip():
            problems.append(f"  {name} ({path.relative_to(ROOT)}): no module docstring")
        elif PLACEHOLDER.fullmatch(docstring.strip()):
            problems.append(f"  {name} ({path.relative_to(ROOT)}): placeholder docstring {docstring.strip()!r}")
    assert not problems, "modules need a docstring saying what they are for:\n" + "\n".join(problems)


def test_modules_are_short(graph):
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in graph.modules.items()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in ALLOWED_LONG}
    stale = sorted(name for name in ALLOWED_LONG if sizes.get(name, 0) <= MAX_LINES)
    if stale:
        warnings.warn(f"ALLOWED_LONG entries no longer needed (missing or <= {MAX_LINES} lines): {stale}", stacklevel=1)
    for name, reason in ALLOWED_LONG.items():
        assert reason.strip(), f"ALLOWED_LONG[{name!r}] needs a reason"
    report = "\n".join(f"  {name}: {n} lines" for name, n in sorted(too_long.items(), key=lambda item: -item[1]))
    assert not too_long, f"modules over {MAX_LINES} lines (split them, or list them in ALLOWED_LONG with a reason):\n{report}"
