"""bloodcli's import graph, read from the source with :mod:`ast` (nothing is imported).

Run from anywhere::

    python scripts/import_graph.py            # package-level graph, layers, violations, cycles
    python scripts/import_graph.py --modules  # plus every module-to-module import

The graph holds every ``import``/``from ... import`` statement of every module under
``bloodcli/``, at module level (``if TYPE_CHECKING:`` blocks and class bodies included) and inside
functions. ``from bloodcli.x import name`` is an import of module ``bloodcli.x.name`` when that
is a module, else of ``bloodcli.x``; relative imports are resolved the same way. Imports of
anything outside the package are ignored.

The layers come from the ``layers`` contract in ``pyproject.toml`` (``[tool.importlinter]``), so
this script, ``lint-imports`` and ``tests/test_architecture.py`` share one definition. The test
loads this file and uses :func:`build_graph`, :func:`find_cycles`, :func:`load_layers` and
:func:`layer_of`: the walk lives in one place.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10: pytest depends on tomli there
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
ROOT_PACKAGE = "bloodcli"


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``importer`` imports ``imported`` (both module names)."""

    importer: str
    imported: str
    line: int
    in_function: bool  # inside a function body (deferred until called) rather than at import time


@dataclass
class ModuleGraph:
    """The modules of a package (name -> file) and the imports between them."""

    modules: dict[str, Path]
    imports: list[Import] = field(default_factory=list)
    #: module files that Python never imports because a package of the same name wins (``x.py`` next to ``x/``)
    shadowed: list[Path] = field(default_factory=list)

    def edges(self) -> dict[str, set[str]]:
        """importer -> the set of modules it imports (every module is a key)."""
        result: dict[str, set[str]] = {name: set() for name in self.modules}
        for imp in self.imports:
            result[imp.importer].add(imp.imported)
        return result


# --- discovering modules ---------------------------------------------------------------------------


def discover_modules(package_dir: Path, package: str = ROOT_PACKAGE) -> tuple[dict[str, Path], list[Path]]:
    """Every ``.py`` module under ``package_dir`` by dotted name, and the module files a package shadows.

    ``pkg/__init__.py`` is module ``pkg``; directories without ``__init__.py`` count as (namespace)
    packages. Where both ``x.py`` and ``x/__init__.py`` exist, Python imports the package, so the
    package wins and ``x.py`` is reported as shadowed.
    """
    package_dir = Path(package_dir)
    modules: dict[str, Path] = {}
    shadowed: list[Path] = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
            continue
        parts = [package, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name in modules:
            keep, drop = (path, modules[name]) if path.name == "__init__.py" else (modules[name], path)
            modules[name] = keep
            shadowed.append(drop)
        else:
            modules[name] = path
    return modules, shadowed


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


# --- reading imports -------------------------------------------------------------------------------


def _longest_module_prefix(dotted: str, modules: Mapping[str, Path]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _resolve_relative(importer: str, importer_is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if importer_is_package else importer.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, importer: str, importer_is_package: bool, modules: Mapping[str, Path], root: str):
        self.importer = importer
        self.importer_is_package = importer_is_package
        self.modules = modules
        self.root = root
        self.function_depth = 0
        self.found: list[Import] = []

    def _add(self, target: str | None, node: ast.stmt) -> None:
        if target is None or target == self.importer:
            return
        self.found.append(Import(self.importer, target, node.lineno, self.function_depth > 0))

    def _in_package(self, dotted: str) -> bool:
        return dotted == self.root or dotted.startswith(self.root + ".")

    def _enter_function(self, node: ast.AST) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _enter_function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._in_package(alias.name):
                self._add(_longest_module_prefix(alias.name, self.modules), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            source = _resolve_relative(self.importer, self.importer_is_package, node.level, node.module)
        else:
            source = node.module or ""
        if not self._in_package(source):
            return
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if alias.name != "*" and submodule in self.modules:
                self._add(submodule, node)
            else:
                self._add(_longest_module_prefix(source, self.modules), node)


def module_imports(name: str, path: Path, modules: Mapping[str, Path], root: str = ROOT_PACKAGE) -> list[Import]:
    """The imports of package modules in one module's source (a syntax error propagates, naming the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    visitor = _ImportVisitor(name, is_package(path), modules, root)
    visitor.visit(tree)
    return visitor.found


def build_graph(package_dir: Path | None = None, package: str = ROOT_PACKAGE) -> ModuleGraph:
    """The import graph of every module under ``package_dir`` (default: this repository's ``bloodcli/``)."""
    package_dir = Path(package_dir) if package_dir is not None else REPO / package
    modules, shadowed = discover_modules(package_dir, package)
    graph = ModuleGraph(modules, shadowed=shadowed)
    for name, path in modules.items():
        graph.imports.extend(module_imports(name, path, modules, package))
    return graph


# --- cycles ----------------------------------------------------------------------------------------


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def _cycle_in(component: Sequence[str], edges: Mapping[str, Iterable[str]]) -> list[str]:
    """One shortest cycle through the first module of a strongly connected component (BFS inside it)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, ())):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")  # pragma: no cover


def find_cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One example cycle ``[a, b, ..., a]`` per strongly connected component; empty when acyclic."""
    return [_cycle_in(component, edges) for component in strongly_connected(edges)]


def mutual_imports(edges: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """Pairs of modules that import each other (cycles of length 2), each pair once, sorted."""
    return sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets if a in edges.get(b, ())})


# --- layers and packages ---------------------------------------------------------------------------


def load_layers(pyproject: Path | None = None) -> list[tuple[str, ...]]:
    """The layers of the first ``layers`` contract in ``pyproject.toml``, highest first, as module names.

    A layer of several modules (``"a | b"`` independent, ``"a : b"`` not) is one tuple; optional
    layers (``"(x)"``) lose their parentheses; ``containers`` are prefixed.
    """
    pyproject = Path(pyproject) if pyproject is not None else REPO / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    contract = next((c for c in contracts if c.get("type") == "layers"), None)
    if contract is None:
        raise LookupError(f"{pyproject}: no [[tool.importlinter.contracts]] of type 'layers'")
    containers = contract.get("containers") or [""]
    if len(containers) != 1:
        raise ValueError("layers contracts with several containers are not supported here")
    prefix = f"{containers[0]}." if containers[0] else ""
    layers = []
    for raw in contract["layers"]:
        names = raw.replace(":", "|").split("|")
        layers.append(tuple(prefix + name.strip().strip("()").strip() for name in names))
    return layers


def layer_of(module: str, layers: Sequence[Sequence[str]]) -> int | None:
    """Index (0 = highest) of the layer holding ``module`` or one of its parent packages; None outside layers."""
    for number, layer in enumerate(layers):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return number
    return None


def package_of(module: str, root: str = ROOT_PACKAGE) -> str:
    """``bloodcli.learn.model_file`` -> ``bloodcli.learn``; top-level modules are their own package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == root and len(parts) > 1 else module


def package_edges(graph: ModuleGraph) -> Counter:
    """``(importer package, imported package) -> number of module pairs``, between different packages only."""
    counts: Counter = Counter()
    for importer, targets in graph.edges().items():
        for imported in targets:
            pair = (package_of(importer), package_of(imported))
            if pair[0] != pair[1]:
                counts[pair] += 1
    return counts


def upward_imports(graph: ModuleGraph, layers: Sequence[Sequence[str]]) -> list[Import]:
    """Imports from a lower layer into a higher one (the layers contract's violations, direct ones only)."""
    found = []
    for imp in graph.imports:
        low, high = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
        if low is not None and high is not None and high < low:
            found.append(imp)
    return sorted(found, key=lambda i: (i.importer, i.line))


# --- report ----------------------------------------------------------------------------------------


def render(graph: ModuleGraph, layers: Sequence[Sequence[str]], show_modules: bool = False) -> str:
    edges = graph.edges()
    n_edges = sum(len(targets) for targets in edges.values())
    deferred = {(i.importer, i.imported) for i in graph.imports if i.in_function}
    eager = {(i.importer, i.imported) for i in graph.imports if not i.in_function}
    only_deferred = deferred - eager
    lines = [
        f"{ROOT_PACKAGE} import graph: {len(graph.modules)} modules, {n_edges} module-to-module imports "
        f"({len(only_deferred)} only inside functions)",
        "",
        "Layers (highest first; a module may import its own layer and lower ones):",
    ]
    packages = sorted({package_of(m) for m in graph.modules})

    def tag(package: str) -> str:
        number = layer_of(package, layers)
        return "[-]" if number is None else f"[{number}]"

    for number, layer in enumerate(layers):
        present = [name for name in layer if any(m == name or m.startswith(name + ".") for m in graph.modules)]
        missing = [name for name in layer if name not in present]
        note = f"   (missing: {', '.join(missing)})" if missing else ""
        lines.append(f"  [{number}] {' | '.join(layer)}{note}")
    outside = [p for p in packages if layer_of(p, layers) is None]
    lines.append(f"  [-] outside the layers: {', '.join(outside) or 'none'}")

    lines += ["", "Package imports (importer -> imported  x module pairs):"]
    counts = package_edges(graph)
    for package in packages:
        targets = sorted(
            ((imported, n) for (importer, imported), n in counts.items() if importer == package),
            key=lambda item: (layer_of(item[0], layers) if layer_of(item[0], layers) is not None else -1, item[0]),
        )
        size = sum(1 for m in graph.modules if package_of(m) == package)
        lines.append(f"  {tag(package)} {package}  ({size} module{'s' if size != 1 else ''})")
        if not targets:
            lines.append("        -> (nothing in the package)")
        for imported, n in targets:
            flag = ""
            low, high = layer_of(package, layers), layer_of(imported, layers)
            if low is not None and high is not None and high < low:
                flag = "   <-- UPWARD (layer violation)"
            lines.append(f"        -> {tag(imported)} {imported:<24} x{n}{flag}")

    lines += ["", "Upward imports (lower layer importing a higher one):"]
    upward = upward_imports(graph, layers)
    lines += [f"  {i.importer}:{i.line} -> {i.imported}{' (in a function)' if i.in_function else ''}" for i in upward] or ["  none"]

    lines += ["", "Import cycles between modules:"]
    cycles = find_cycles(edges)
    lines += [f"  {' -> '.join(cycle)}" for cycle in cycles] or ["  none"]

    if graph.shadowed:
        lines += ["", "Shadowed module files (a package of the same name wins):"]
        lines += [f"  {path}" for path in graph.shadowed]

    if show_modules:
        lines += ["", "Module imports (* = only inside functions):"]
        for importer in sorted(edges):
            for imported in sorted(edges[importer]):
                star = " *" if (importer, imported) in only_deferred else ""
                lines.append(f"  {importer} -> {imported}{star}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="also list every module-to-module import")
    parser.add_argument("--package-dir", type=Path, default=REPO / ROOT_PACKAGE, help="default: %(default)s")
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml", help="default: %(default)s")
    args = parser.parse_args(argv)
    graph = build_graph(args.package_dir)
    print(render(graph, load_layers(args.pyproject), args.modules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
