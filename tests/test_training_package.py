"""minipeft/training/ as a room of its own: no import cycle between its files, and the old
`minipeft.train` path still works with a DeprecationWarning."""

import importlib
import sys

import pytest
from test_layering import ROOT, _cycle, _module_edges  # one import-graph checker for the repository


def _package_graph(root, package: str) -> dict[str, set[str]]:
    """The import graph of `package`'s own files (package "minipeft.training": its __init__ and modules)."""
    edges = _module_edges(root)
    inside = {m for m in edges if m == package or m.startswith(package + ".")}
    return {m: edges[m] & inside for m in inside}


@pytest.mark.parametrize("package", ["minipeft.training", "models"])
def test_no_import_cycle_between_files(package):
    graph = _package_graph(ROOT, package)
    assert len(graph) > 3, f"{package}: no files found"
    assert _cycle(graph) == [], f"import cycle in {package}: {' -> '.join(_cycle(graph))}"


def test_cycle_checker_can_fail(tmp_path):
    """The checker must see train -> loop -> train (the cycle this package had) through a relative,
    lazy import."""
    pkg = tmp_path / "minipeft" / "training"
    pkg.mkdir(parents=True)
    (tmp_path / "minipeft" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text("def train():\n    from .loop import Loop\n")
    (pkg / "loop.py").write_text("from .train import train\nclass Loop: ...\n")
    graph = _package_graph(tmp_path, "minipeft.training")
    assert _cycle(graph) == ["minipeft.training.loop", "minipeft.training.train", "minipeft.training.loop"]


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
