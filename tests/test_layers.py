"""The package's layering (README, "For developers: the layout"): a module imports only from its own layer or
the layers below it, `training/` and `evaluation/` never import each other, and no two modules import each
other in a cycle. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import action2sound

PACKAGE = Path(action2sound.__file__).parent

# Lowest layer first; a module's layer is that of the longest prefix listed here.
LAYERS = {
    "errors": 1, "config": 1,
    "media": 2, "mel": 2, "levels": 2, "plotting": 2,
    "sampling": 3, "static_sampling": 3, "weights": 3, "models": 3, "convert": 3, "mel_bridge": 3,
    "data": 4, "benchmark": 4, "retrieval": 4, "indexing": 4, "conditions": 4,
    "training": 5, "options": 5, "windows": 5, "outputs": 5, "pipeline": 5,
    "evaluation": 6, "api": 6,
    "cli": 7, "demo": 7, "serve": 7,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The package-relative modules a file imports (absolute `action2sound.x` or relative `.x`/`..x`)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
                if node.module is None or not target:  # `from . import x` / `from .. import x`
                    found.update(".".join([*base, a.name]) for a in node.names)
                    continue
            elif node.module and node.module.startswith("action2sound"):
                target = node.module.removeprefix("action2sound").lstrip(".")
                if not target:
                    found.update(a.name for a in node.names)
                    continue
            else:
                continue
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("action2sound.") for a in node.names if a.name.startswith("action2sound."))
    return {f for f in found if f}


def _layer(module: str) -> int | None:
    top = module.split(".")[0]
    return LAYERS.get(top)


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py") if _module_name(p)}


def test_every_module_has_a_layer():
    missing = sorted(m for m in _graph() if _layer(m) is None)
    assert not missing, f"give these modules a layer in LAYERS (and the README's layout): {missing}"


def test_modules_import_only_their_own_layer_or_lower():
    wrong = []
    for module, imports in _graph().items():
        for target in imports:
            lt = _layer(target)
            if lt is not None and lt > _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) imports {target} (layer {lt})")
    assert not wrong, "\n".join(sorted(wrong))


def test_training_and_evaluation_never_import_each_other():
    wrong = [f"{m} imports {t}" for m, imports in _graph().items() for t in imports
             if {m.split(".")[0], t.split(".")[0]} == {"training", "evaluation"}]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles_between_modules():
    graph = _graph()
    known = set(graph)

    def resolve(target: str) -> str | None:  # `from .models import x` may name a module or a package symbol
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m} for m, ts in graph.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of the code's logic.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The checker itself: a lower-layer file that imports the pipeline is reported."""
    fake = tmp_path / "action2sound"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "bad.py").write_text("from ..pipeline import Pipeline\n")
    (fake / "pipeline.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert _graph()["models.bad"] == {"pipeline"}
    try:
        test_modules_import_only_their_own_layer_or_lower()
    except AssertionError as err:
        assert "models.bad (layer 3) imports pipeline (layer 5)" in str(err)
    else:
        raise AssertionError("the layer check missed a models -> pipeline import")
