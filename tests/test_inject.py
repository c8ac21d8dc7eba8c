"""inject / merge / remove / disabled on a toy model with BERT-like module names."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import (
    IA3Config,
    IA3Linear,
    LoraConfig,
    LoRALinear,
    adapters,
    disabled,
    inject,
    merge,
    remove,
    saved_modules,
)


class Out(nn.Module):
    def __init__(self, h, d):
        super().__init__()
        self.dense = nn.Linear(h, d)


class Toy(nn.Module):
    """query/key/value, an intermediate and an `output.dense`, a LayerNorm, a buffer, a head."""

    def __init__(self, d=6, h=10, c=3):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.intermediate = nn.Linear(d, h)
        self.output = Out(h, d)
        self.classifier = nn.Linear(d, c)
        self.register_buffer("offset", torch.linspace(-1, 1, d))

    def forward(self, x):  # x (batch, d)
        a = self.norm(x + self.query(x) * torch.sigmoid(self.key(x)) + self.value(x) + self.offset)
        a = a + self.output.dense(F.gelu(self.intermediate(a)))
        return self.classifier(a)  # (batch, c)


def _perturb(model):
    """Give every adapter non-trivial values, as training would."""
    with torch.no_grad():
        for _, m in adapters(model):
            for n in m.ADAPTER_PARAMS:
                p = getattr(m, n)
                p.copy_(torch.rand_like(p) + 0.5 if n == "ia3_l" else torch.randn_like(p))


LORA = LoraConfig(r=2, alpha=4, targets=("query", "value"), modules_to_save=("classifier",))
IA3 = IA3Config(modules_to_save=("classifier",))


def test_lora_injection_touches_targets_keeps_keys_and_freezes_the_rest():
    model = Toy()
    keys = set(model.state_dict())
    touched = inject(model, LORA)
    assert touched == ["query", "value", "classifier"]
    assert isinstance(model.query, LoRALinear) and isinstance(model.value, LoRALinear)
    assert set(model.state_dict()) == keys | {"query.lora_A", "query.lora_B", "value.lora_A", "value.lora_B"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "query.lora_A",
        "query.lora_B",
        "value.lora_A",
        "value.lora_B",
        "classifier.weight",
        "classifier.bias",
    }
    assert saved_modules(model) == ("classifier",)


def test_ia3_suffix_rule_reaches_output_dense_and_marks_feedforward():
    model = Toy()
    touched = inject(model, IA3)
    assert touched == ["key", "value", "output.dense", "classifier"]
    assert model.output.dense.feedforward and model.output.dense.ia3_l.shape == (10,)
    assert not model.key.feedforward and model.key.ia3_l.shape == (6,)


def test_regex_targets_use_fullmatch():
    model = Toy()
    assert inject(model, LoraConfig(targets=r"(query|key)")) == ["query", "key"]
    with pytest.raises(ValueError, match="matches no module"):
        inject(Toy(), LoraConfig(targets=r"quer"))  # fullmatch, not search


def test_errors_name_the_target_and_the_nearest_modules():
    with pytest.raises(ValueError, match=r"'qurey' matches no module.*'query'"):
        inject(Toy(), LoraConfig(targets=("qurey",)))
    with pytest.raises(ValueError, match=r"'norm'.*LayerNorm.*only nn.Linear"):
        inject(Toy(), LoraConfig(targets=("norm",)))
    with pytest.raises(ValueError, match=r"modules_to_save entry 'clasifier'.*'classifier'"):
        inject(Toy(), LoraConfig(modules_to_save=("clasifier",)))


def test_second_injection_into_an_adapted_layer_is_refused_other_layers_are_fine():
    model = Toy()
    inject(model, LORA)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="already adapted"):
        inject(model, IA3Config(targets=("value",), feedforward=()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.value, LoRALinear)
    inject(model, IA3Config(targets=("key",), feedforward=()))
    assert isinstance(model.key, IA3Linear)
    assert model.key.ia3_l.requires_grad and not model.key.weight.requires_grad


def test_targets_inside_saved_modules_are_not_adapted():
    with pytest.raises(ValueError, match="matches no module"):
        inject(Toy(), LoraConfig(targets=("classifier",), modules_to_save=("classifier",)))


@pytest.mark.parametrize("config", [LORA, IA3], ids=["lora", "ia3"])
def test_training_moves_only_adapters_and_head_and_base_stays_bit_identical(config):
    model = Toy()
    inject(model, config)
    _perturb(model)
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        got = {n for n, p in model.named_parameters() if p.grad is not None}
        assert got == {n for n, p in model.named_parameters() if p.requires_grad}
        opt.step()
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())


@pytest.mark.parametrize(
    "config",
    [
        LORA,
        IA3,
        LoraConfig(r=3, alpha=5, use_rslora=True, targets=r"query|key|value|intermediate|output\.dense"),
    ],
    ids=["lora", "ia3", "rslora-all"],
)
def test_merge_matches_and_leaves_the_original_untouched(config):
    model = Toy()
    inject(model, config)
    _perturb(model)
    model.eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(5, 6)
    plain = merge(model)
    assert not adapters(plain) and not saved_modules(plain)
    assert set(plain.state_dict()) == set(Toy().state_dict())
    torch.testing.assert_close(plain(x), model(x), rtol=1e-5, atol=1e-5)
    assert adapters(model) and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in plain.parameters())  # flags as before injection


def test_merge_half_precision_within_dtype_tolerance():
    model = Toy().to(torch.bfloat16)
    inject(model, LORA)
    _perturb(model)
    x = torch.randn(5, 6, dtype=torch.bfloat16)
    torch.testing.assert_close(merge(model)(x).float(), model(x).float(), rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("config", [LORA, IA3], ids=["lora", "ia3"])
def test_remove_puts_back_the_same_base_objects_and_flags(config):
    model = Toy()
    model.key.weight.requires_grad_(False)  # a flag that must come back as it was
    originals = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    state = copy.deepcopy(model.state_dict())
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    inject(model, config)
    _perturb(model)
    remove(model)
    assert {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)} == originals
    assert all(originals[n] is m for n, m in model.named_modules() if n in originals)
    assert set(model.state_dict()) == set(state)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    inject(model, config)  # the same base serves the next run
    assert adapters(model)


def test_disabled_runs_the_base_alone_and_restores():
    model = Toy()
    ref = copy.deepcopy(model)
    inject(model, IA3Config(targets=("key", "value", "output.dense"), feedforward=("output.dense",)))
    _perturb(model)
    x = torch.randn(4, 6)
    adapted = model(x)
    with disabled(model):
        assert torch.equal(model(x), ref(x))
    assert torch.equal(model(x), adapted) and not torch.equal(adapted, ref(x))


def test_injected_layers_inherit_eval_mode():
    model = Toy().eval()
    inject(model, LoraConfig(dropout=0.5, targets=("query",)))
    assert not model.query.training and not model.query.lora_dropout.training
    with torch.no_grad():
        model.query.lora_B.normal_()
    x = torch.randn(3, 6)
    assert torch.equal(model(x), model(x))  # no live dropout in eval mode
