"""save_adapter / load_adapter on the toy model: PEFT layout, bit-exact round trip, clear refusals."""

import dataclasses
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_inject import Toy, _perturb

from minipeft import IA3Config, LoraConfig, adapters, inject, load_adapter, save_adapter
from minipeft.io import CONFIG_FILE, WEIGHTS_FILE

LORA = LoraConfig(r=2, alpha=4, dropout=0.1, targets=("query", "value"), modules_to_save=("classifier",))
IA3 = IA3Config(modules_to_save=("classifier",))


def _trained(config, seed=0):
    torch.manual_seed(seed)
    model = Toy()
    inject(model, config)
    _perturb(model)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    return model


def _fresh_like(seed=0):
    torch.manual_seed(seed)
    return Toy()


@pytest.mark.parametrize("config", [LORA, IA3], ids=["lora", "ia3"])
def test_save_then_load_is_bit_exact(tmp_path, config):
    model = _trained(config)
    save_adapter(model, tmp_path, task_type="SEQ_CLS")
    other = _fresh_like()
    loaded = load_adapter(other, tmp_path)
    assert type(loaded) is type(config) and set(loaded.targets) == set(config.targets)
    assert dataclasses.replace(loaded, targets=config.targets) == config
    a, b = model.state_dict(), other.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    model.eval(), other.eval()
    x = torch.randn(4, 6)
    assert torch.equal(model(x), other(x))
    assert {n for n, p in other.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }


def test_lora_files_follow_peft_layout(tmp_path):
    model = _trained(LORA)
    save_adapter(model, tmp_path, task_type="SEQ_CLS", base_model_name_or_path="some/base")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter_config.json",
        "adapter_manifest.json",
        "adapter_model.safetensors",
    ]
    text = (tmp_path / CONFIG_FILE).read_text()
    cfg = json.loads(text)
    assert text == json.dumps(cfg, sort_keys=True, indent=2) + "\n"
    assert {
        k: cfg[k]
        for k in (
            "peft_type",
            "r",
            "lora_alpha",
            "lora_dropout",
            "target_modules",
            "modules_to_save",
            "use_rslora",
            "bias",
            "task_type",
            "inference_mode",
            "base_model_name_or_path",
        )
    } == dict(
        peft_type="LORA",
        r=2,
        lora_alpha=4,
        lora_dropout=0.1,
        target_modules=["query", "value"],
        modules_to_save=["classifier"],
        use_rslora=False,
        bias="none",
        task_type="SEQ_CLS",
        inference_mode=True,
        base_model_name_or_path="some/base",
    )
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    p = "base_model.model."
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        p + "query.lora_A.weight": (2, 6),
        p + "query.lora_B.weight": (6, 2),
        p + "value.lora_A.weight": (2, 6),
        p + "value.lora_B.weight": (6, 2),
        p + "classifier.weight": (3, 6),
        p + "classifier.bias": (3,),
    }
    assert torch.equal(tensors[p + "query.lora_B.weight"], model.query.lora_B)
    header = json.loads(
        (tmp_path / WEIGHTS_FILE).read_bytes()[
            8 : 8 + int.from_bytes((tmp_path / WEIGHTS_FILE).read_bytes()[:8], "little")
        ]
    )
    assert header["__metadata__"] == {"format": "pt"}


def test_ia3_vectors_are_stored_in_peft_shapes(tmp_path):
    model = _trained(IA3)
    save_adapter(model, tmp_path)
    t = load_file(str(tmp_path / WEIGHTS_FILE))
    p = "base_model.model."
    assert t[p + "key.ia3_l"].shape == (6, 1) and t[p + "output.dense.ia3_l"].shape == (1, 10)
    assert torch.equal(t[p + "output.dense.ia3_l"][0], model.output.dense.ia3_l)
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert cfg["peft_type"] == "IA3" and cfg["feedforward_modules"] == ["output.dense"]
    assert cfg["target_modules"] == sorted(["key", "value", "output.dense"]) and cfg["task_type"] is None


def _edit_config(d, **changes):
    cfg = json.loads((d / CONFIG_FILE).read_text())
    cfg.update(changes)
    (d / CONFIG_FILE).write_text(json.dumps(cfg))
    (d / "adapter_manifest.json").unlink(missing_ok=True)  # as a PEFT-written folder: no manifest


@pytest.mark.parametrize(
    "field, value",
    [
        ("rank_pattern", {"query": 4}),
        ("alpha_pattern", {"query": 4}),
        ("layers_to_transform", [0]),
        ("bias", "all"),
        ("lora_bias", True),
        ("init_lora_weights", "pissa_niter_4"),  # randomised SVD: A₀, B₀ not reproducible
        ("init_lora_weights", "corda"),
        ("init_lora_weights", "loftq"),
    ],
)
def test_math_changing_peft_fields_are_refused_by_name(tmp_path, field, value):
    save_adapter(_trained(LORA), tmp_path)
    _edit_config(tmp_path, **{field: value})
    model = _fresh_like()
    with pytest.raises(ValueError, match=field):
        load_adapter(model, tmp_path)
    assert not adapters(model)


def test_unknown_fields_warn_and_unmatched_modules_to_save_are_skipped(tmp_path):
    save_adapter(_trained(LORA), tmp_path)
    _edit_config(tmp_path, future_knob=3, modules_to_save=["classifier", "score"])
    with pytest.warns(UserWarning) as caught:
        load_adapter(_fresh_like(), tmp_path)
    text = " ".join(str(w.message) for w in caught)
    assert "future_knob" in text and "['score']" in text and "unverified" in text


def test_unsupported_type_missing_keys_and_wrong_shapes_raise_and_leave_model_clean(tmp_path):
    save_adapter(_trained(LORA), tmp_path)
    model = _fresh_like()
    keys = set(model.state_dict())
    _edit_config(tmp_path, peft_type="PREFIX_TUNING")
    with pytest.raises(ValueError, match="peft_type='PREFIX_TUNING'"):
        load_adapter(model, tmp_path)
    _edit_config(tmp_path, peft_type="LORA")
    t = load_file(str(tmp_path / WEIGHTS_FILE))
    save_file(
        {k: v for k, v in t.items() if k != "base_model.model.value.lora_A.weight"},
        str(tmp_path / WEIGHTS_FILE),
    )
    with pytest.raises(KeyError, match=r"missing \['base_model.model.value.lora_A.weight'\]"):
        load_adapter(model, tmp_path)
    assert not adapters(model) and set(model.state_dict()) == keys
    save_file(t, str(tmp_path / WEIGHTS_FILE))
    _edit_config(tmp_path, r=3)
    with pytest.raises(ValueError, match=r"lora_A.weight has shape \(2, 6\), the model expects \(3, 6\)"):
        load_adapter(model, tmp_path)
    assert not adapters(model) and all(p.requires_grad for p in model.parameters())


def test_missing_files_and_double_loading(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(_fresh_like(), tmp_path)
    save_adapter(_trained(LORA), tmp_path)
    model = _fresh_like()
    load_adapter(model, tmp_path)
    with pytest.raises(ValueError, match="already holds adapters"):
        load_adapter(model, tmp_path)
    with pytest.raises(ValueError, match="no adapters"):
        save_adapter(_fresh_like(), tmp_path)


def test_writes_leave_no_temporary_files_and_overwrite_atomically(tmp_path):
    save_adapter(_trained(LORA), tmp_path)
    save_adapter(_trained(LORA, seed=1), tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(_fresh_like(seed=1), tmp_path)  # verified: no warning at all
