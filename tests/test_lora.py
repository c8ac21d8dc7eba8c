"""LoRALinear: the equation, PEFT's initialisation, zero-B identity, fused == plain, keys unchanged."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import LoRALinear


def _layer(r=4, alpha=8, dropout=0.0, fused=True, rs=False, init="kaiming", bias=True):
    base = nn.Linear(6, 5, bias=bias)
    return base, LoRALinear(base, r=r, alpha=alpha, dropout=dropout, use_rslora=rs, init=init, fused=fused)


@pytest.mark.parametrize("fused", [True, False])
def test_zero_initialised_B_leaves_output_unchanged(fused):
    base, lora = _layer(fused=fused)
    x = torch.randn(3, 2, 6)
    assert torch.equal(lora.lora_B, torch.zeros(5, 4))
    assert torch.equal(lora(x), base(x))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("rs", [False, True])
def test_forward_is_the_equation(fused, rs):
    base, lora = _layer(r=4, alpha=8, fused=fused, rs=rs)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(7, 6)
    s = 8 / math.sqrt(4) if rs else 8 / 4
    expected = x @ base.weight.T + base.bias + s * (x @ lora.lora_A.T @ lora.lora_B.T)
    torch.testing.assert_close(lora(x), expected, rtol=1e-5, atol=1e-5)
    assert lora.scaling == s


def test_fused_and_plain_paths_agree_in_values_and_gradients():
    _, a = _layer(fused=True)
    b = LoRALinear(a.base, r=4, alpha=8, fused=False)
    with torch.no_grad():
        b.lora_A.copy_(a.lora_A)
        a.lora_B.normal_()
        b.lora_B.copy_(a.lora_B)
    x = torch.randn(2, 3, 6, requires_grad=True)
    ya = a(x)
    (ga,) = torch.autograd.grad(ya.square().sum(), [x])
    gA_a, gB_a = torch.autograd.grad(a(x).square().sum(), [a.lora_A, a.lora_B])
    yb = b(x)
    (gb,) = torch.autograd.grad(yb.square().sum(), [x])
    gA_b, gB_b = torch.autograd.grad(b(x).square().sum(), [b.lora_A, b.lora_B])
    for u, v in [(ya, yb), (ga, gb), (gA_a, gA_b), (gB_a, gB_b)]:
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


def test_init_matches_peft_kaiming_and_gaussian():
    _, lora = _layer(r=4)
    bound = 1 / math.sqrt(6)  # kaiming_uniform(a=√5): sqrt(6 / ((1 + 5) fan_in))
    assert lora.lora_A.abs().max() <= bound and lora.lora_A.abs().max() > bound / 2
    big = LoRALinear(nn.Linear(400, 3), r=4, alpha=4, init="gaussian")
    assert abs(big.lora_A.std().item() - 1 / 4) < 0.02  # PEFT: A ~ N(0, 1/r)


@pytest.mark.parametrize("fused", [True, False])
def test_dropout_touches_the_lora_branch_only(fused):
    base, lora = _layer(dropout=0.5, fused=fused)
    lora.train()
    x = torch.randn(50, 6)
    assert torch.equal(lora(x), base(x))  # B = 0: whatever dropout does, the base output is intact
    with torch.no_grad():
        lora.lora_B.normal_()
    torch.manual_seed(1)
    y1 = lora(x)
    torch.manual_seed(2)
    assert not torch.equal(y1, lora(x))  # dropout is live in training
    lora.eval()
    expected = F.linear(x, base.weight, base.bias) + lora.scaling * x @ lora.lora_A.T @ lora.lora_B.T
    torch.testing.assert_close(lora(x), expected, rtol=1e-5, atol=1e-5)


def test_base_parameters_keep_their_names_and_objects():
    base, lora = _layer()
    assert lora.weight is base.weight and lora.bias is base.bias and lora.base is base
    assert set(lora.state_dict()) == set(base.state_dict()) | {"lora_A", "lora_B"}
    assert lora.lora_A.shape == (4, 6) and lora.lora_B.shape == (5, 4)


def test_bias_free_base_and_disabled_flag():
    base, lora = _layer(bias=False)
    assert "bias" not in lora.state_dict()
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(2, 6)
    assert not torch.equal(lora(x), base(x))
    lora.disabled = True
    assert torch.equal(lora(x), base(x))


def test_rejects_non_linear_and_unknown_init():
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=2, alpha=2)
    with pytest.raises(ValueError, match="gaussian"):
        LoRALinear(nn.Linear(2, 2), r=2, alpha=2, init="loftq")
