"""The import direction of the library, read from the source (every import statement, at any
depth): cli → train/report/explain/energy/compress/export → model → nn/io/generation →
tensor/quantum/data → config → files (and the other private helpers). Units of one layer may
import each other only without a cycle; imports of the library inside functions are allowed
only in the CLI (start-up time), never to dodge a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "qtensorformer"

#: Layer of each unit (a top-level module or subpackage); higher layers import lower ones.
LAYERS = {
    "cli": 6,
    "train": 5,
    "report": 5,
    "explain": 5,
    "energy": 5,
    "compress": 5,
    "export": 5,
    "model": 4,
    "nn": 3,
    "io": 3,
    "generation": 3,
    "tensor": 2,
    "quantum": 2,
    "data": 2,
    "config": 1,
    "files": 0,
    "_tracing": 0,
    "_version": 0,
}
#: Modules that re-export the public API (they may import anything).
EXEMPT = {"__init__", "__main__"}


def _unit(module: str) -> str:
    """``qtensorformer.nn.block`` → ``nn``; the package root → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported library module, line, inside a function) for every import in ``path``."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, path.name == "__init__.py")
                out.append((target, child.lineno, inner))
            visit(child, inner)

    visit(tree, False)
    return [(m, line, f) for m, line, f in out if m.split(".")[0] == "qtensorformer"]


def _edges() -> list[tuple[str, str, str, int, bool]]:
    """(from unit, to unit, file, line, inside a function) for every cross-unit import."""
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit(_module_name(path)) if path.parent != ROOT else path.stem
        for target, line, in_fn in _imports(path):
            dst = _unit(target)
            if dst != src:
                edges.append((src, dst, str(path.relative_to(ROOT.parent)), line, in_fn))
    return edges


def test_every_unit_has_a_layer():
    units = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if p.is_dir()}
    units -= EXEMPT | {"__pycache__"}
    missing = sorted(units - set(LAYERS))
    assert not missing, f"give these units a layer in LAYERS (and the README): {missing}"


def test_imports_point_down():
    wrong = [
        f"{file}:{line}: {src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]})"
        for src, dst, file, line, _ in _edges()
        if src not in EXEMPT and dst not in EXEMPT and LAYERS[dst] > LAYERS[src]
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_unit_imports_the_package_root():
    wrong = [f"{f}:{line}" for src, dst, f, line, _ in _edges() if dst == "__init__"]
    assert not wrong, "import from the submodule, not the package root: " + ", ".join(wrong)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the path that closes it (depth-first), or None."""
    state: dict[str, int] = {}

    def cycle_from(u: str, path: list[str]) -> list[str] | None:
        state[u] = 1
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return [*path, u, v]
            if v not in state and (found := cycle_from(v, [*path, u])):
                return found
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := cycle_from(u, [])):
            return found
    return None


def test_units_form_no_cycle():
    graph: dict[str, set[str]] = {}
    for src, dst, *_ in _edges():
        if src not in EXEMPT and dst not in EXEMPT:
            graph.setdefault(src, set()).add(dst)
    found = _find_cycle(graph)
    assert found is None, "import cycle: " + " → ".join(found)


def test_library_imports_in_functions_only_in_the_cli():
    lazy = [
        f"{file}:{line}: {src} imports {dst} inside a function"
        for src, dst, file, line, in_fn in _edges()
        if in_fn and src != "cli"
    ]
    assert not lazy, "move these imports to the module top:\n" + "\n".join(lazy)


def _module_graph() -> dict[str, set[str]]:
    """Module → library modules it imports, at the top or inside a function (package
    ``__init__`` files, which only re-export, are left out)."""
    names = {_module_name(p) for p in ROOT.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        for target, _, _ in _imports(path):
            # ``from .pkg import mod`` names the package; count it only when it is a module
            if target in names:
                graph.setdefault(_module_name(path), set()).add(target)
    return graph


def test_no_import_inside_a_function_dodges_a_cycle():
    """Counting imports inside functions too, no module reaches itself: a lazy import may
    defer an optional dependency or start-up cost, never hide a loop."""
    found = _find_cycle(_module_graph())
    assert found is None, "modules in an import loop: " + " → ".join(found)


@pytest.mark.parametrize("unit", ["config", "files"])
def test_bottom_units_import_nothing_above_them(unit):
    above = [dst for src, dst, *_ in _edges() if src == unit and dst not in {"_tracing"}]
    assert not above or all(LAYERS[d] < LAYERS[unit] for d in above), above


def test_the_checker_catches_a_wrong_import(tmp_path, monkeypatch):
    """The checks above can fail: a config module importing nn is caught."""
    fake = tmp_path / "qtensorformer"
    (fake / "nn").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "nn" / "__init__.py").write_text("")
    (fake / "config.py").write_text("def f():\n    from .nn import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    edges = _edges()
    assert ("config", "nn", "qtensorformer/config.py", 2, True) in edges
    with pytest.raises(AssertionError, match="config"):
        test_imports_point_down()


def test_the_module_graph_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """A loop closed by an import inside a function is caught."""
    fake = tmp_path / "qtensorformer"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "a.py").write_text("from .b import y\n")
    (fake / "data" / "b.py").write_text("def y():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    assert _module_graph() == {
        "qtensorformer.data.a": {"qtensorformer.data.b"},
        "qtensorformer.data.b": {"qtensorformer.data.a"},
    }
    with pytest.raises(AssertionError, match=r"data\.a"):
        test_no_import_inside_a_function_dodges_a_cycle()
