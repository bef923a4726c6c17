"""The package's layers: no import circles, and no module imports a module of a higher layer.

Every file of src/tunebench is parsed (ast): every `import` and `from ... import`, at the top, inside functions
and under `if TYPE_CHECKING:` alike (an annotation-only import is still a dependency; none is exempt),
relative imports resolved. Each module maps to its unit: the top-level module or subpackage it belongs to
(tunebench.plan.cost -> plan; tunebench/__init__.py -> tunebench, which holds __version__). Every `__main__.py`
(tunebench/__main__.py, tunebench/plan/__main__.py for `python -m tunebench.plan`) is its own unit, `__main__`,
on top: an entry point run as a script, imported by nothing. Imports by name at run time (importlib, the plan's
"module:function" runner) are not imports here.

The layers, lowest first, follow the pipeline config -> data -> model + method -> train -> evaluate -> results
-> report, with the tools on top. A unit may import units of lower layers only: units of one layer are
siblings and import none of each other (when one needs another, the order between them belongs here).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "tunebench"
ENTRY = "__main__"

LAYERS: tuple[tuple[str, ...], ...] = (
    # foundations, importing nothing of tunebench: the package's __version__, the one error type, atomic file
    # writes and log reading, the findings rules (pure, values in)
    ("tunebench", "errors", "io", "findings"),
    # the task table: every fact about each task, the one list of task names (the config validates against it)
    ("tasks",),
    # the typed schema every stage reads
    ("config",),
    # what stands on the config alone: the data sources (re-exporting the task table), the precision policy,
    # checkpoints, tracking, the run-folder contract (results), the process and machine (system: errors as lines,
    # memory, environment, locks), the FLOPs convention with the peak table (flops), shared by plan and bench, and
    # the arms a study compares (a method plus the settings that define it)
    ("data", "precision", "checkpoints", "tracking", "results", "system", "flops", "arms"),
    # model + method: records encoded into features, the model, LoRA or full, the pure metrics
    ("features", "model", "methods", "metrics"),
    # the Trainer's mechanics: evaluation (scoring a split; sequential, in-loop outputs reused) and the speed
    # patches behind training.trainer_fast_paths
    ("evaluate", "fast_paths"),
    # the engine: the Trainer, built once; it evaluates through tunebench.evaluate
    ("train",),
    # tools over the engine's pieces: the sanity checks (which train a little), model conversion, the
    # forgetting / spectrum analysis of finished runs
    ("sanity", "convert", "analysis"),
    # one run, start to verdict: preflight (sanity), train, its results folder
    ("runner",),
    # many runs: a plan's grid, its costs (flops) and its execution (through the runner)
    ("plan",),
    # the report over the results (it selects as a plan does: plan.select.setting_rank, and reads analysis files)
    ("report",),
    # the benchmark and the GPU check: they measure the engine, run runs, plans' estimates and reports
    ("bench",),
    # the CLI verbs, then the parser that dispatches to them, then the entry points
    ("commands",),
    ("cli",),
    (ENTRY,),
)


@dataclass(frozen=True)
class Edge:
    """One import: `importer` unit imports `imported` unit at `where` (file:line)."""

    importer: str
    imported: str
    where: str


def module_name(path: Path, package_dir: Path) -> str:
    """tunebench/plan/cost.py -> tunebench.plan.cost; a package's __init__.py -> the package."""
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of_file(path: Path, package_dir: Path) -> str:
    """A file's unit: ENTRY for a __main__.py, the package for its __init__.py, else its top-level module or
    subpackage."""
    rel = path.relative_to(package_dir)
    if path.name == f"{ENTRY}.py":
        return ENTRY
    return package_dir.name if rel.parts == ("__init__.py",) else rel.parts[0].removesuffix(".py")


def unit_of(module: str, units: Iterable[str]) -> str:
    """The unit a dotted name belongs to: its top-level module or subpackage, the root package for a name the
    root package itself holds (`from tunebench import __version__`), ENTRY for a __main__ module."""
    parts = module.split(".")
    if parts[-1] == ENTRY:
        return ENTRY
    return parts[1] if len(parts) > 1 and parts[1] in set(units) else parts[0]


def imported_names(tree: ast.AST, module: str, is_package: bool, package: str) -> list[tuple[str, int]]:
    """(dotted name, line) of every import of `package` anywhere in the tree; `from X import a` gives X.a
    (a submodule or a name X holds: unit_of sorts them out), relative imports resolved against `module`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found += [(f"{source}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in found if name == package or name.startswith(package + ".")]


def collect_edges(package_dir: Path) -> tuple[set[str], list[Edge]]:
    """The units of the package in `package_dir` and every import between two different units (one edge per
    import statement and imported unit)."""
    package = package_dir.name
    files = sorted(package_dir.rglob("*.py"))
    units = {unit_of_file(p, package_dir) for p in files}
    edges = []
    for path in files:
        module = module_name(path, package_dir)
        importer = unit_of_file(path, package_dir)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in imported_names(tree, module, path.name == "__init__.py", package):
            edge = Edge(importer, unit_of(name, units), f"{path.relative_to(package_dir.parent).as_posix()}:{line}")
            if edge.imported != importer and edge not in edges:       # one per import statement and unit
                edges.append(edge)
    return units, edges


def find_cycles(edges: Sequence[Edge]) -> list[str]:
    """One line per import circle (a strongly connected set of units): the circle, unit -> unit, with the
    file:line of each of its imports."""
    graph: dict[str, dict[str, str]] = {}
    for e in edges:
        graph.setdefault(e.importer, {}).setdefault(e.imported, e.where)
        graph.setdefault(e.imported, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:          # Tarjan; the graph is a few dozen units, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    lines = []
    for component in components:
        path = _circle(graph, component)
        steps = [f"{a} -> {b} ({graph[a][b]})" for a, b in zip(path, path[1:], strict=False)]
        lines.append(f"import circle among {', '.join(component)}: " + "; ".join(steps))
    return lines


def _circle(graph: dict[str, dict[str, str]], component: list[str]) -> list[str]:
    """A shortest way from the component's first unit back to itself, within the component (breadth first)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]                       # back from v to the start
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    return [start, start]


def layer_violations(edges: Sequence[Edge], layers: Sequence[Sequence[str]], units: Iterable[str]) -> list[str]:
    """One line per import of a unit not in a lower layer (file:line, both units and their layers), and one per
    unit that no layer names."""
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    lines = [f"unit {u} is in no layer: place it in LAYERS (tests/test_layers.py)"
             for u in sorted(set(units) - rank.keys())]
    for e in edges:
        if e.importer in rank and e.imported in rank and rank[e.imported] >= rank[e.importer]:
            how = "a sibling of its own layer" if rank[e.imported] == rank[e.importer] else "a higher layer"
            lines.append(f"{e.where}: {e.importer} (layer {rank[e.importer]}) imports {e.imported} "
                         f"(layer {rank[e.imported]}, {how})")
    return lines


# ---------------------------------------------------------------- the package


def test_every_unit_has_exactly_one_layer_and_every_layer_names_units_that_exist():
    units, _ = collect_edges(PACKAGE_DIR)
    named = [u for layer in LAYERS for u in layer]
    assert len(named) == len(set(named)), "a unit named in two layers"
    assert sorted(set(named) - units) == [], "LAYERS names units the package does not have"
    assert sorted(units - set(named)) == [], "units in no layer: place them in LAYERS"


def test_no_import_circles():
    _, edges = collect_edges(PACKAGE_DIR)
    assert find_cycles(edges) == []


def test_no_import_of_a_higher_layer():
    units, edges = collect_edges(PACKAGE_DIR)
    assert layer_violations(edges, LAYERS, units) == []


def test_the_imports_seen_include_function_level_and_entry_point_ones():
    """The collector sees what the checks rely on: an import inside a function (runner -> sanity, for the
    preflight) and the entry point of `python -m tunebench.plan` as ENTRY, not plan."""
    _, edges = collect_edges(PACKAGE_DIR)
    pairs = {(e.importer, e.imported) for e in edges}
    assert ("runner", "sanity") in pairs
    assert (ENTRY, "cli") in pairs and ("plan", "cli") not in pairs
    assert ("data", "tunebench") in pairs          # from tunebench import __version__


# ---------------------------------------------------------------- the checker itself can fail


def test_the_checker_reports_a_circle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "1"\n')
    (pkg / "base.py").write_text("from pkg import __version__\n")
    (pkg / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.base import x\n"
        "\n"
        "\n"
        "def f():\n"
        "    from pkg.sub.deep import g   # upward, inside a function\n"
        "    return g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "deep.py").write_text("from .. import low\n")     # relative: pkg.low, closing the circle
    (pkg / "__main__.py").write_text("from pkg.sub import deep\n")

    units, edges = collect_edges(pkg)
    assert units == {"pkg", "base", "low", "sub", ENTRY}
    assert {(e.importer, e.imported, e.where) for e in edges} == {
        ("base", "pkg", "pkg/base.py:1"),
        ("low", "base", "pkg/low.py:4"),
        ("low", "sub", "pkg/low.py:8"),
        ("sub", "low", "pkg/sub/deep.py:1"),
        (ENTRY, "sub", "pkg/__main__.py:1"),
    }

    [circle] = find_cycles(edges)
    assert circle == ("import circle among low, sub: low -> sub (pkg/low.py:8); sub -> low (pkg/sub/deep.py:1)")

    layers = (("pkg",), ("base",), ("low",), ("sub",), (ENTRY,))
    assert layer_violations(edges, layers, units) == [
        "pkg/low.py:8: low (layer 2) imports sub (layer 3, a higher layer)"]

    # siblings of one layer may not import each other; a unit in no layer is named
    assert layer_violations(edges, (("pkg", "base"), ("low", "sub")), units) == [
        f"unit {ENTRY} is in no layer: place it in LAYERS (tests/test_layers.py)",
        "pkg/base.py:1: base (layer 0) imports pkg (layer 0, a sibling of its own layer)",
        "pkg/low.py:8: low (layer 1) imports sub (layer 1, a sibling of its own layer)",
        "pkg/sub/deep.py:1: sub (layer 1) imports low (layer 1, a sibling of its own layer)",
    ]

    # the same checker passes a graph without either
    clean = [e for e in edges if (e.importer, e.imported) != ("low", "sub")]
    assert find_cycles(clean) == []
    assert layer_violations(clean, layers, units) == []
