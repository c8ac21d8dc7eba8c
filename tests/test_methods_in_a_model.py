"""DoRA, PiSSA/OLoRA, VeRA and LoRA+ in a model: starting equal to the base, merge equal to the
adapted forward, each method's role in param_table, files bit for bit (PiSSA/OLoRA as PEFT's rank-2r
LoRA), LoRA+'s learning-rate groups, clear errors, and trainable counts on BERT-base's shape.
The layers against their equations: test_methods.py."""

import copy
import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from minipeft import (
    DoraConfig,
    DoRALinear,
    LoraConfig,
    VeraConfig,
    VeRALinear,
    adapters,
    disabled,
    fingerprint,
    inject,
    load_adapter,
    merge,
    param_table,
    remove,
    save_adapter,
)
from minipeft.training.optim import build_adamw, set_lr
from minipeft.vera import VeraProjections


class MLP(nn.Module):
    """Two differently shaped targets (12 -> 10 -> 7), so VeRA must slice its shared pair."""

    def __init__(self):
        super().__init__()
        self.query = nn.Linear(12, 10)
        self.value = nn.Linear(10, 7)
        self.classifier = nn.Linear(7, 3)

    def forward(self, x):
        return self.classifier(torch.tanh(self.value(torch.tanh(self.query(x)))))


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _perturb(model, seed=2, scale=0.3):
    """Give every adapter tensor non-trivial values (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in adapters(model):
            for n in m.ADAPTER_PARAMS:
                p = getattr(m, n)
                p.add_(scale * torch.randn(p.shape, generator=g))


CONFIGS = {
    "dora": DoraConfig(r=4, alpha=8, targets=("query", "value"), modules_to_save=("classifier",)),
    "pissa": LoraConfig(
        r=4, alpha=8, targets=("query", "value"), init="pissa", modules_to_save=("classifier",)
    ),
    "olora": LoraConfig(
        r=4, alpha=8, targets=("query", "value"), init="olora", modules_to_save=("classifier",)
    ),
    "vera": VeraConfig(r=6, targets=("query", "value"), modules_to_save=("classifier",)),
}


# ---- zero init, merge ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dora", "pissa", "olora", "vera"])
def test_injected_model_starts_equal_to_its_base_and_merge_equals_the_adapted_forward(kind):
    torch.manual_seed(0)
    model = MLP().eval()
    x = _x(5, 12)
    before = model(x)
    inject(model, CONFIGS[kind])
    base_print = fingerprint(model)  # the base without the (trained) head
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)  # zero-init update (or B₀A₀ - B₀A₀)
    _perturb(model)
    adapted = model(x)
    assert (adapted - before).abs().max() > 1e-3
    with disabled(model):
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    torch.testing.assert_close(merge(model)(x), adapted, rtol=1e-5, atol=1e-5)
    assert fingerprint(model) == base_print  # the base is untouched, PiSSA/OLoRA included
    remove(model)
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


# ---- roles, counts, files ------------------------------------------------------------------------


def test_param_table_gives_each_method_its_role_and_buffers_theirs():
    for kind, role in (("dora", "dora"), ("pissa", "lora"), ("vera", "vera")):
        model = MLP()
        inject(model, CONFIGS[kind])
        rows = {r.name: r for r in param_table(model, buffers=True)}
        adapter_rows = [r for r in rows.values() if r.role == role]
        assert adapter_rows and all(r.trainable == (r.kind == "parameter") for r in adapter_rows)
        if kind == "dora":
            assert rows["query.lora_magnitude_vector"].shape == (10,)
        if kind == "pissa":  # A₀, B₀ are frozen buffers: the trainable count is plain LoRA's
            assert rows["query.lora_A0"].role == "lora" and not rows["query.lora_A0"].trainable
            assert sum(r.numel for r in adapter_rows if r.trainable) == 4 * (12 + 10) + 4 * (10 + 7)
        if kind == "vera":
            a = rows["query.vera.vera_A"]
            assert a.role == "vera" and a.shape == (6, 12) and rows["value.vera.vera_A"].shared_with == a.name


def _saved(kind, folder):
    """(adapted model with perturbed adapters, saved to folder; a copy of its base from before inject)."""
    torch.manual_seed(0)
    model = MLP().eval()
    base = copy.deepcopy(model)
    inject(model, CONFIGS[kind])
    _perturb(model)
    save_adapter(model, folder)
    return model, base


def _assert_saves_the_same_bytes(model, folder):
    """Saving `model` again writes folder's adapter_model.safetensors byte for byte."""
    save_adapter(model, folder / "again")
    assert (folder / "again/adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("kind", ["dora", "vera"])
def test_save_and_load_reproduce_the_model_bit_for_bit(tmp_path, kind):
    model, fresh = _saved(kind, tmp_path)
    torch.manual_seed(123)  # another init draw: loading must overwrite every adapter tensor
    load_adapter(fresh, tmp_path)
    x = _x(4, 12)
    assert torch.equal(fresh(x), model(x))
    for (_, a), (_, b) in zip(adapters(fresh), adapters(model)):
        for n in a.ADAPTER_PARAMS:
            assert torch.equal(getattr(a, n), getattr(b, n))
    _assert_saves_the_same_bytes(fresh, tmp_path)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_residual_inits_save_as_a_plain_rank_2r_lora_against_the_untouched_base(tmp_path, init):
    model, untouched = _saved(init, tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["init_lora_weights"]) == (8, 16, True)
    manifest = json.loads((tmp_path / "adapter_manifest.json").read_text())
    assert manifest["adapter"]["init"] == init and manifest["adapter"]["rank"] == 4
    t = load_file(str(tmp_path / "adapter_model.safetensors"))
    q = next(m for p, m in adapters(model) if p == "query")
    assert torch.equal(t["base_model.model.query.lora_A.weight"], torch.cat([q.lora_A, q.lora_A0]).detach())
    assert torch.equal(
        t["base_model.model.query.lora_B.weight"], torch.cat([q.lora_B, -q.lora_B0], 1).detach()
    )
    config = load_adapter(untouched, tmp_path)  # manifest's base fingerprint holds on the untouched base
    assert config == LoraConfig(r=8, alpha=16, targets=("query", "value"), modules_to_save=("classifier",))
    assert untouched.__dict__["_minipeft"].loaded_from["adapter"]["init"] == init
    x = _x(4, 12)
    torch.testing.assert_close(untouched(x), model(x), rtol=0, atol=1e-5)
    _assert_saves_the_same_bytes(untouched, tmp_path)  # the loaded plain LoRA writes the same tensors back


# ---- LoRA+ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_loraplus_groups_carry_the_ratio_and_the_schedule_keeps_it(kind):
    model = MLP()
    inject(model, LoraConfig(r=2, modules_to_save=("classifier",)) if kind == "lora" else CONFIGS["dora"])
    opt = build_adamw(model, lr=1e-3, weight_decay=0.01, loraplus_ratio=16)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for _, m in adapters(model):
        assert lr_of[id(m.lora_A)] == 1e-3 and lr_of[id(m.lora_B)] == 16e-3
        if kind == "dora":  # 1-D, on the B side as in PEFT's create_loraplus_optimizer
            assert lr_of[id(m.lora_magnitude_vector)] == 16e-3
    assert lr_of[id(model.classifier.weight)] == 1e-3 and lr_of[id(model.classifier.bias)] == 16e-3
    set_lr(opt, 5e-4)  # a warm-up/decay step
    for g in opt.param_groups:
        assert g["lr"] == 5e-4 * g["lr_ratio"]
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())
    plain = build_adamw(model, lr=1e-3, weight_decay=0.01)
    assert {g["lr"] for g in plain.param_groups} == {1e-3}


@pytest.mark.parametrize("ratio", [0, -2.0, float("nan")])
def test_loraplus_ratio_must_be_positive(ratio):
    model = MLP()
    inject(model, LoraConfig(r=2))
    with pytest.raises(ValueError, match="loraplus_ratio must be a number > 0"):
        build_adamw(model, lr=1e-3, weight_decay=0.0, loraplus_ratio=ratio)


# ---- bad input -----------------------------------------------------------------------------------


def test_clear_errors_name_the_field_and_the_fix():
    with pytest.raises(ValueError, match="DoraConfig.init must be one of .* use LoraConfig"):
        DoraConfig(init="pissa")
    with pytest.raises(ValueError, match="DoRA .* needs an nn.Linear"):
        DoRALinear(nn.Conv1d(2, 2, 1), r=1, alpha=1)
    model = nn.Sequential(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="only nn.Linear is adaptable"):
        inject(model, DoraConfig(targets=("0",)))
    shared = VeraProjections(r=4, max_in=8, max_out=8, key=0)
    with pytest.raises(ValueError, match="cannot share vera_A"):
        VeRALinear(nn.Linear(12, 8), shared, r=4)
    with pytest.raises(ValueError, match="VeraConfig.projection_prng_key"):
        VeraConfig(projection_prng_key=-1)


# ---- trainable counts on the paper's BERT-base shape ---------------------------------------------


class _BertBaseShape(nn.Module):
    """BERT-base's query/value projections, HF paths: 12 layers × Linear(768, 768) × 2."""

    def __init__(self):
        super().__init__()
        layer = lambda: nn.ModuleDict(  # noqa: E731
            {
                "attention": nn.ModuleDict(
                    {"self": nn.ModuleDict({"query": nn.Linear(768, 768), "value": nn.Linear(768, 768)})}
                )
            }
        )
        self.layer = nn.ModuleList(layer() for _ in range(12))


H, LAYERS, TARGETS = 768, 12, 2  # BERT-base, query and value


@pytest.mark.parametrize(
    "config, expected",
    [
        (LoraConfig(r=8), LAYERS * TARGETS * 8 * (H + H)),  # the paper's 294,912
        (DoraConfig(r=8), LAYERS * TARGETS * (8 * (H + H) + H)),  # + one magnitude per output row
        (VeraConfig(r=256), LAYERS * TARGETS * (H + 256)),  # λ_b (out) + λ_d (r); A, B shared, frozen
        (VeraConfig(r=1024), LAYERS * TARGETS * (H + 1024)),
    ],
    ids=["lora-r8", "dora-r8", "vera-r256", "vera-r1024"],
)
def test_trainable_counts_on_the_bert_base_shape(config, expected):
    from minipeft import summary

    model = _BertBaseShape()
    inject(model, config)
    s = summary(model)
    assert s.adapter == s.trainable == expected
    if isinstance(config, LoraConfig) and config.init == "kaiming":
        assert expected == 294_912
