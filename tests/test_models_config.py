"""Every family's config (models/config.py) goes through the one validation helper
(hf_config.validate) and the one config.json reader/writer, with the same rules."""

from dataclasses import fields

import pytest

import models.config as config_module
from models.families import FAMILIES
from models.hf_config import read_json_object

CONFIGS = [fam.config for fam in FAMILIES.values()]


def test_every_family_config_lives_in_models_config():
    assert {c.__module__ for c in CONFIGS} == {"models.config"}
    assert all(getattr(config_module, c.__name__) is c for c in CONFIGS)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_round_trip_and_label_normalisation(cls):
    cfg = cls(id2label={"0": "neg", "1": "pos"})  # JSON keys are strings
    assert cfg.id2label == {0: "neg", 1: "pos"} and cfg.label2id == {"neg": 0, "pos": 1}
    d = cfg.to_dict()
    assert d["architectures"] == list(cls.ARCHITECTURES) and d["model_type"] == cls().model_type
    assert all(d[k] == v for k, v in cls.FIXED.items())
    assert cls.from_dict(d) == cfg
    old = cls.from_dict({k: v for k, v in d.items() if k not in ("id2label", "label2id")} | {"num_labels": 3})
    assert old.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"} and old.num_labels == 3


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_the_shared_checks_name_the_file_and_the_field(cls):
    act, width, heads = cls.CHECK
    d = cls().to_dict()
    with pytest.raises(ValueError, match=rf"x/config.json: {act}='swish' is not supported"):
        cls.from_dict({**d, act: "swish"}, source="x/config.json")
    with pytest.raises(ValueError, match=rf"x/config.json: model_type='roberta'; {cls.__name__}"):
        cls.from_dict({**d, "model_type": "roberta"}, source="x/config.json")
    if width in d:  # MobileBERT's width is derived (true_hidden_size)
        with pytest.raises(ValueError, match=rf"{width}=\d+ is not a multiple of {heads}"):
            cls.from_dict({**d, width: d[heads] * 8 + 1}, source="x/config.json")
    for key in cls.FIXED:
        with pytest.raises(ValueError, match=rf"{key}='other' is not supported"):
            cls.from_dict({**d, key: "other"}, source="x/config.json")


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_shared_fields_are_declared_once_and_keyword_only(cls):
    """The label, runtime and `extra` fields come from ModelConfig alone; a family declares only
    its architecture fields and model_type, which keep their positions in __init__."""
    shared = {f.name for f in fields(config_module.ModelConfig)}
    assert shared >= {"id2label", "label2id", "name_or_path", "recompute_attention", "first_position_only"}
    assert not shared & set(cls.__dict__.get("__annotations__", {}))
    own = [f for f in fields(cls) if f.name not in shared]
    assert not any(f.kw_only for f in own) and all(f.kw_only for f in fields(cls) if f.name in shared)
    first = own[0].name  # vocab_size in every family, as in HF's config classes
    assert getattr(cls(101), first) == 101
    with pytest.raises(TypeError):
        cls(*[getattr(cls(), f.name) for f in own], None)  # no shared field by position


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_head_dim_is_the_checked_width_over_the_heads(cls):
    _, width, heads = cls.CHECK
    cfg = cls()
    assert cfg.head_dim * getattr(cfg, heads) == getattr(cfg, width)


def test_json_object_reader_names_the_file_and_the_fix(tmp_path):
    bad, arr = tmp_path / "bad.json", tmp_path / "arr.json"
    bad.write_text("{oops", encoding="utf-8")
    arr.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{bad}: not valid JSON .*; write it again$"):
        read_json_object(bad, fix="write it again")
    with pytest.raises(ValueError, match=rf"{arr}: expected a JSON object .*found a list; fix the file$"):
        read_json_object(arr)
