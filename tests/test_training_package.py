"""minipeft/training/ as a room of its own: no import cycle between its files, and the old
`minipeft.train` path still works with a DeprecationWarning."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_graph(package: Path) -> dict[str, set[str]]:
    """module -> modules of `package` it imports (at any depth: lazy imports in functions count).
    `from . import x` and `from pkg import x` depend on pkg.x when x is a module, else on pkg."""
    prefix = ".".join(package.relative_to(ROOT).parts)
    mods = {f"{prefix}.{f.stem}" if f.stem != "__init__" else prefix: f for f in package.glob("*.py")}
    graph = {}
    for name, f in mods.items():
        here = name if f.stem == "__init__" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in mods and t != name}
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (depth-first search)."""
    state, path = {}, []

    def visit(v):
        state[v] = "open"
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return path[path.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


@pytest.mark.parametrize("package", ["minipeft/training", "models"])
def test_no_import_cycle_between_files(package):
    graph = _module_graph(ROOT / package)
    assert len(graph) > 3, f"{package}: no files found"
    assert _cycle(graph) is None, f"import cycle in {package}: {' -> '.join(_cycle(graph))}"


def test_cycle_checker_can_fail(tmp_path, monkeypatch):
    """The checker must see train -> loop -> train (the cycle this package had) and a lazy import."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text("def train():\n    from .loop import Loop\n")
    (pkg / "loop.py").write_text("from .train import train\nclass Loop: ...\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _cycle(_module_graph(pkg)) == ["pkg.loop", "pkg.train", "pkg.loop"]


def test_old_minipeft_train_path_warns_and_gives_the_same_objects():
    import minipeft.training as new

    sys.modules.pop("minipeft.train", None)
    with pytest.warns(DeprecationWarning, match="minipeft.training"):
        old = importlib.import_module("minipeft.train")
    assert (old.train, old.TrainConfig, old.evaluate, old.seed_everything) == (
        new.train,
        new.TrainConfig,
        new.evaluate,
        new.seed_everything,
    )
