"""Config validation: clear messages on construction."""

import math

import pytest

from minipeft import IA3Config, LoraConfig


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(r=0), "r must be an int >= 1"),
        (dict(dropout=1.0), "0 <= dropout < 1"),
        (dict(alpha=0), "alpha must be a positive"),
        (dict(init="loftq"), "init must be one of"),
        (dict(targets=()), "targets is empty"),
        (dict(targets="(query"), "not a valid regular expression"),
        (dict(modules_to_save="classifier"), r"write \('classifier',\)"),
    ],
)
def test_lora_config_rejects_with_a_clear_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoraConfig(**kwargs)


def test_lora_config_normalises_and_scales():
    c = LoraConfig(r=16, alpha=8, targets=["query", "value"])
    assert c.targets == ("query", "value") and c.scaling == 8 / 16
    assert LoraConfig(r=16, alpha=8, use_rslora=True).scaling == 8 / math.sqrt(16)


def test_ia3_feedforward_must_be_subset_of_targets():
    with pytest.raises(ValueError, match=r"subset of targets; \['intermediate.dense'\]"):
        IA3Config(targets=("key",), feedforward=("intermediate.dense",))
    with pytest.raises(ValueError, match="both be tuples"):
        IA3Config(targets=r".*key", feedforward=("key",))
    assert IA3Config().targets == ("key", "value", "output.dense")
