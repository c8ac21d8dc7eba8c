"""Shared fixtures. Tests that need the real checkpoint skip with the reason when it is not fetched."""
import pytest
import torch

from models.assets import MINILM, asset_dir


@pytest.fixture(scope="session")
def minilm_dir():
    try:
        return asset_dir(MINILM)
    except FileNotFoundError as e:
        pytest.skip(f"real checkpoint not fetched: {e}")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
