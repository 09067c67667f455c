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


#: ``methods/`` by role (scvi-tools' module / model split), bottom to top; a layer may import
#: the layers below it, never one above, and the role folders import nothing sideways except
#: within their own folder
M = "dmmvae.methods"
LAYERS = {
    "modules": f"{M}.modules",  # torch modules and their maths: no data library, no I/O
    "anchors": f"{M}.anchors",  # every anchor-finding algorithm, public functions
    "baselines": f"{M}.baselines",  # controls and references written here
    "external": f"{M}.external",  # wrappers of other packages
    "training": f"{M}.training",  # the model wrapper, the loop, the batches
}
#: what each layer may import inside ``methods/`` (besides its own folder and ``_base``)
ALLOWED = {
    "modules": set(),
    "anchors": set(),
    "baselines": {"anchors"},
    "external": {"anchors", "training"},  # scvi_refs reads the batches' data spec
    "training": {"modules", "anchors"},
}


def _layer(mod: str) -> str | None:
    for name, prefix in LAYERS.items():
        if mod == prefix or mod.startswith(prefix + "."):
            return name
    return None


def test_methods_are_laid_out_by_role():
    """Every module of ``methods/`` sits in a role folder, except the registry and the contract."""
    loose = sorted(m for m in modules() if m.startswith(M + ".") and _layer(m) is None)
    assert loose == [f"{M}._base"], loose


@pytest.mark.parametrize("layer", list(LAYERS))
def test_each_role_imports_only_the_layers_below_it(layer):
    graph = import_graph()
    bad = []
    for mod, edges in graph.items():
        if _layer(mod) != layer:
            continue
        for e in edges:
            other = _layer(e)
            if e == M:  # the registry sits on top
                bad.append((mod, e))
            elif other not in (None, layer) and other not in ALLOWED[layer]:
                bad.append((mod, e))
    assert not bad, f"{layer} imports a layer it must not: {sorted(bad)}"


def test_the_layer_checker_catches_an_upward_import(tmp_path):
    pkg = tmp_path / PACKAGE / "methods"
    (pkg / "anchors.py").parent.mkdir(parents=True)
    for f in ("__init__.py", "methods/__init__.py", "methods/anchors.py",
              "methods/baselines/__init__.py", "methods/baselines/gw_ot.py"):
        (tmp_path / PACKAGE / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / PACKAGE / f).write_text("")
    (pkg / "anchors.py").write_text("from .baselines.gw_ot import as_list\n")
    globals()["SRC"], saved = tmp_path, SRC
    try:
        graph = import_graph()
    finally:
        globals()["SRC"] = saved
    assert f"{M}.baselines.gw_ot" in graph[f"{M}.anchors"]
    assert "baselines" not in ALLOWED["anchors"]


MODULE_LAYER = sorted(m for m in modules() if _layer(m) == "modules")
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
    forbidden = {"dmmvae.io", f"{M}.training.loop", f"{M}.training.model", f"{M}.training.batches"}
    assert not seen & forbidden, (name, sorted(seen & forbidden))
    libs = set().union(*(_top_level_imports(paths[m]) for m in seen))
    assert not libs & DATA_LIBRARIES, (name, sorted(libs & DATA_LIBRARIES))
