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
