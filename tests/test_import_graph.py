"""The package's layers, read from its imports: no circles and no import that runs upward.

Every .py file of wavemix_profile/ (and of the zoo, models/, installed as wavemix_profile.models) is
parsed with `ast`; every `import` and `from ... import` counts, at module level or inside a function,
absolute or relative (`from . import x` included, where x is a module). A module's layer is its
folder: wavemix_profile/<layer>/... . LAYERS lists them once, lowest first; a module may import its
own layer and the layers below it, never one above, and no set of modules may import each other in a
circle. The files left at the package's root are the entry points (cli.py, api.py, __main__.py) and
the package itself (__init__.py), the top facade: it reaches `api` only lazily (__getattr__), and no
module below may import it (that would be an arrow upward, and a circle through `api`).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "wavemix_profile"

# Lowest first. Each entry: (layer, what it holds). A layer is a folder of wavemix_profile/, except
# "models" (the zoo, models/ in the repo), "entry" (the modules at the package's root) and "facade"
# (the package's __init__).
LAYERS = (
    ("models", "the zoo: architectures, their registry and the paper's published figures; imports no profiler code"),
    ("core", "torch-free facts and records every layer shares: errors, results, ranges, protocol, GPU tables"),
    ("store", "persistence: the result store, its locks, atomic writes, regular files"),
    ("sources", "where a model comes from (zoo, torchvision, timm, a user's file) and the training step around it"),
    ("estimate", "models of the CUDA allocator, autocast and CUDA overheads that turn a CPU's recording into a GPU's figure"),
    ("measure", "measuring one model in this process: FLOPs, memory, max batch, throughput, energy, NVML"),
    ("run", "processes: isolation, the fork server and its workers, lanes, devices, Ray"),
    ("validation", "`validate`'s stages, probes and checks against a real GPU"),
    ("render", "stored results to tables, files and charts; never imports torch"),
    ("commands", "one module per CLI command"),
    ("entry", "the CLI (cli.py, __main__.py) and the Python API (api.py)"),
    ("facade", "the package's __init__: __version__ and a lazy measure_model"),
)
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
ENTRY_MODULES = {"cli", "api", "__main__"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name under wavemix_profile, or None if it is in none."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return "facade"
    if parts[1] in RANK and parts[1] not in ("entry", "facade"):
        return parts[1]
    if len(parts) == 2 and parts[1] in ENTRY_MODULES:
        return "entry"
    return None


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the package and the zoo."""
    found = {}
    for top, prefix in ((ROOT / PACKAGE, [PACKAGE]), (ROOT / "models", [PACKAGE, "models"])):
        for path in sorted(top.rglob("*.py")):
            parts = prefix + list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that `source` (the text of `module`) imports, at any depth of its code."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] + ([node.module] if node.module else [])
                base_name = ".".join(base)
            else:
                base_name = node.module or ""
            # `from pkg import name`: the module pkg.name where there is one, else pkg itself
            targets = [f"{base_name}.{alias.name}" if f"{base_name}.{alias.name}" in known else base_name
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of an attribute path: its module
                target = target.rpartition(".")[0]
            if target and target != module:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", known)
            for module, path in files.items()}


def unplaced(graph: dict[str, set[str]]) -> list[str]:
    return sorted(module for module in graph if layer_of(module) is None)


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) where the imported module's layer is above the importer's."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if layer_of(a) and layer_of(b) and RANK[layer_of(b)] > RANK[layer_of(a)])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_is_in_a_layer(graph):
    assert len(graph) > 40, "the scan found too few modules: is ROOT right?"
    assert unplaced(graph) == [], f"modules outside every layer of LAYERS: {unplaced(graph)}"


def test_no_import_runs_upward(graph):
    upward = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, b in upward_edges(graph)]
    assert upward == []


def test_no_circles(graph):
    assert cycles(graph) == []


def test_the_checks_report_a_circle_and_an_upward_import():
    fake = {
        "wavemix_profile.core.results": {"wavemix_profile.run.worker"},       # upward: core -> run
        "wavemix_profile.run.worker": {"wavemix_profile.run.forkserver", "wavemix_profile.core.results"},
        "wavemix_profile.run.forkserver": {"wavemix_profile.run.worker"},     # a circle within one layer
        "wavemix_profile.render.csv": {"wavemix_profile.core.results"},       # downward: fine
        "wavemix_profile.cli": {"wavemix_profile"},                           # the facade, from below
        "wavemix_profile": {"wavemix_profile.api"},
        "wavemix_profile.api": set(),
        "wavemix_profile.helpers": set(),                                     # a flat module: no layer
    }
    assert upward_edges(fake) == [("wavemix_profile.cli", "wavemix_profile"),
                                  ("wavemix_profile.core.results", "wavemix_profile.run.worker")]
    assert cycles(fake) == [["wavemix_profile.core.results", "wavemix_profile.run.forkserver",
                             "wavemix_profile.run.worker"]]
    assert unplaced(fake) == ["wavemix_profile.helpers"]


def test_imports_are_read_at_every_depth_and_form():
    known = {"wavemix_profile", "wavemix_profile.run", "wavemix_profile.run.worker", "wavemix_profile.run.forkserver",
             "wavemix_profile.core", "wavemix_profile.core.results", "wavemix_profile.measure.measure"}
    source = ("from . import forkserver\n"
              "from ..core.results import Result\n"
              "def main():\n"
              "    from ..measure.measure import measure\n"
              "    import wavemix_profile.core\n"
              "    from .. import __version__\n")
    assert imports_of("wavemix_profile.run.worker", source, False, known) == {
        "wavemix_profile.run.forkserver", "wavemix_profile.core.results", "wavemix_profile.measure.measure",
        "wavemix_profile.core", "wavemix_profile"}
