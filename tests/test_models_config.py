"""Every family's config (models/config.py) goes through the one validation helper
(hf_config.validate) and the one config.json reader/writer, with the same rules."""

import pytest

import models.config as config_module
from models.families import FAMILIES

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
