"""Shared fixtures. Tests that need the real checkpoint skip with the reason when it is not fetched."""

import pytest
import torch

from models import BertConfig, BertModel, save_pretrained
from models.assets import MINILM, asset_dir

TINY_BERT = dict(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
)


@pytest.fixture(scope="session")
def minilm_dir():
    try:
        return asset_dir(MINILM)
    except FileNotFoundError as e:
        pytest.skip(f"real checkpoint not fetched: {e}")


@pytest.fixture(scope="session")
def make_tiny_model(minilm_dir, tmp_path_factory):
    """make_tiny_model(**config overrides) -> folder of a tiny random BertModel (seed 0, TINY_BERT sizes)
    saved with save_pretrained next to the real tokenizer files; one folder per distinct overrides.
    The folders are shared by the whole session: tests must only read them."""
    made = {}

    def make(**overrides):
        key = tuple(sorted(overrides.items()))
        if key not in made:
            torch.manual_seed(0)
            cfg = BertConfig(**{**TINY_BERT, **overrides})
            made[key] = save_pretrained(
                BertModel(cfg), tmp_path_factory.mktemp("tiny"), tokenizer_dir=minilm_dir
            )
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_model(make_tiny_model):
    """A tiny random BERT (2 layers, hidden 32, 2 heads, 128 positions) with the real tokenizer: read only."""
    return make_tiny_model()


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~10 s; the fast tier is -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    """pyproject.toml's `filterwarnings` (third-party notices, each by message and module) as a mark
    on every test: pytest ranks marks above `-W` on the command line, so `-W default` (run to see
    ResourceWarnings) or `-W error` still leave exactly those notices out, and nothing else."""
    marks = [pytest.mark.filterwarnings(f) for f in config.getini("filterwarnings")]
    for item in items:
        for mark in marks:
            item.add_marker(mark, append=False)


def pytest_terminal_summary(terminalreporter):
    """The fuzzing suite's figures (issue 21), when any fuzz case ran."""
    import sys

    harness = sys.modules.get("fuzz_harness")
    if harness is not None and (harness.TALLY["tried"] or harness.TALLY["kills"]):
        terminalreporter.write_line(harness.summary())
