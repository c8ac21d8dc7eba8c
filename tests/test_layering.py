"""The import direction of DESIGN.md, checked on every file with `ast`.

benchmarks/ -> tasks/, minipeft/, models/ ; tasks/ -> minipeft/, models/ ;
models/ and minipeft/ -> third-party and stdlib only ; nothing imports benchmarks/ or tests/.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"minipeft", "models", "tasks", "benchmarks", "tests"}
ALLOWED = {
    "models": set(),
    "minipeft": set(),
    "tasks": {"minipeft", "models"},
    "benchmarks": {"tasks", "minipeft", "models"},
}
THIRD_PARTY = {"torch", "tokenizers", "safetensors", "numpy", "sklearn", "tqdm", "matplotlib"}
REFERENCE_ONLY = {"transformers", "peft"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def test_import_direction():
    bad = []
    for pkg, allowed in ALLOWED.items():
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for line, top in _imports(f):
                if top in OURS and top != pkg and top not in allowed:
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {top}")
    assert not bad, "imports against DESIGN.md:\n" + "\n".join(bad)


def test_library_never_imports_reference_implementations():
    """transformers and peft are test/benchmark extras: models/, minipeft/ and tasks/ never import them."""
    bad = []
    for pkg in ("models", "minipeft", "tasks"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            bad += [
                f"{f.relative_to(ROOT)}:{line} imports {top}"
                for line, top in _imports(f)
                if top in REFERENCE_ONLY
            ]
    assert not bad, "\n".join(bad)


def test_checker_sees_a_violation(tmp_path):
    """The checker itself must be able to fail: a models/ file importing minipeft is caught."""
    f = tmp_path / "bad.py"
    f.write_text("import os\nfrom minipeft.lora import LoRALinear\n")
    assert [(2, "minipeft")] == [(l, t) for l, t in _imports(f) if t in OURS]


def _module_edges(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of this repository it imports, function-level imports included.
    `from pkg import name` counts as importing pkg.name when that is a module, else pkg itself."""
    files = {}
    for pkg in ALLOWED:
        for f in (root / pkg).rglob("*.py"):
            parts = f.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    edges = {}
    for mod, f in files.items():
        package = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        edges[mod] = {m for m in found if m in files and m != mod}
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path [a, b, ..., a], or [] when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return []

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycle_between_modules():
    """No module of ours imports, directly or through others, a module that imports it back
    (a package's __init__ counts as a module: `import minipeft` inside minipeft/audit.py is a cycle)."""
    cycle = _cycle(_module_edges(ROOT))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_cycle_checker_sees_a_cycle(tmp_path):
    """The checker can fail: a package whose two files import each other, one of them lazily."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "tasks" / "a.py").write_text("from tasks import b\n")
    (tmp_path / "tasks" / "b.py").write_text("def f():\n    from tasks.a import x\n")
    edges = _module_edges(tmp_path)
    assert edges["tasks.a"] == {"tasks.b"} and edges["tasks.b"] == {"tasks.a"}
    assert _cycle(edges) in (["tasks.a", "tasks.b", "tasks.a"], ["tasks.b", "tasks.a", "tasks.b"])
    (tmp_path / "tasks" / "b.py").write_text("import os\n")
    assert _cycle(_module_edges(tmp_path)) == []
