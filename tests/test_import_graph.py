"""The package's modules import each other one way: no import cycle, not even one hidden by an
import inside a function.

The graph is read from the source with ``ast`` (every ``import`` statement, at any depth;
relative imports resolved; ``from pkg import name`` counts as importing ``pkg.name`` when that
is a module). Importing ``pkg`` runs ``pkg/__init__.py``, so its imports are edges like any
other; a submodule's own parent packages are not counted as its imports (Python has already
run them by the time the submodule runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "dmmvae"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``path`` imports, anywhere in the file."""
    is_pkg = path.name == "__init__.py"
    base = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                mod = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # the deepest package module the import names
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        edges = imports_of(name, path, known)
        # importing a submodule runs its parent packages' __init__: not an edge of its own
        graph[name] = {e for e in edges if not name.startswith(e + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from dmmvae import a\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path, raising=False)
    globals()["SRC"], saved = tmp_path, SRC
    try:
        assert find_cycles(import_graph()) == [["dmmvae.a", "dmmvae.b"]]
    finally:
        globals()["SRC"] = saved


def test_no_import_cycle_inside_the_package():
    graph = import_graph()
    assert len(graph) > 30, "the package was not found"
    cycles = find_cycles(graph)
    if cycles:
        pytest.fail(
            "import cycles inside the package (each line a strongly connected set of modules):\n"
            + "\n".join(" <-> ".join(c) for c in cycles)
        )


#: the VAE module layer (scvi-tools' module / model split): networks, objectives, likelihoods
#: and the data spec; fitting, prediction on MuData and I/O live in ``methods._model``
MODULE_LAYER = [
    "dmmvae.methods.vae", "dmmvae.methods.objectives", "dmmvae.methods.nn",
    "dmmvae.methods.likelihoods", "dmmvae.methods._spec", "dmmvae.methods._views",
    "dmmvae.methods.mvae", "dmmvae.methods.mmvae", "dmmvae.methods.mopoe",
    "dmmvae.methods.mmvae_plus", "dmmvae.methods.dmmvae", "dmmvae.methods.scmodal",
    "dmmvae.methods.mlp_fusion", "dmmvae.methods.mmaavi", "dmmvae.methods._graph",
]
DATA_LIBRARIES = {"mudata", "anndata", "pandas", "scanpy", "muon", "h5py"}


def _top_level_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("name", MODULE_LAYER)
def test_vae_modules_are_pure_torch_with_no_data_or_io_imports(name):
    """No module of the VAE layer reaches (directly or through the package) a data library,
    the predictions' I/O (``dmmvae.io``), the training loop or the model layer."""
    graph = import_graph()
    paths = modules()
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo += sorted(graph.get(mod, ()))
    forbidden = {"dmmvae.io", "dmmvae.methods._loop", "dmmvae.methods._model", "dmmvae.methods.data"}
    assert not seen & forbidden, (name, sorted(seen & forbidden))
    libs = set().union(*(_top_level_imports(paths[m]) for m in seen))
    assert not libs & DATA_LIBRARIES, (name, sorted(libs & DATA_LIBRARIES))
