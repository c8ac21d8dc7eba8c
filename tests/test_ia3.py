"""IA3Linear: ones are the identity, the two scaling sides, fused == plain, the folded weights."""

import pytest
import torch
import torch.nn as nn

from minipeft import IA3Linear


@pytest.mark.parametrize("ff", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_ones_leave_output_unchanged_and_shapes(ff, fused):
    base = nn.Linear(6, 4)
    layer = IA3Linear(base, feedforward=ff, fused=fused)
    assert layer.ia3_l.shape == ((6,) if ff else (4,)) and torch.equal(
        layer.ia3_l, torch.ones_like(layer.ia3_l)
    )
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), base(x))
    assert set(layer.state_dict()) == {"weight", "bias", "ia3_l"}


@pytest.mark.parametrize("fused", [True, False])
def test_scaling_sides_follow_the_equations(fused):
    base = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    ff, out = IA3Linear(base, True, fused), IA3Linear(base, False, fused)
    with torch.no_grad():
        ff.ia3_l.uniform_(0.5, 1.5)
        out.ia3_l.uniform_(0.5, 1.5)
    torch.testing.assert_close(ff(x), (x * ff.ia3_l) @ base.weight.T + base.bias)
    torch.testing.assert_close(out(x), (x @ base.weight.T + base.bias) * out.ia3_l)


@pytest.mark.parametrize("ff", [True, False])
def test_merged_weights_reproduce_the_layer_including_bias(ff):
    base = nn.Linear(6, 4)
    layer = IA3Linear(base, ff)
    with torch.no_grad():
        layer.ia3_l.uniform_(0.5, 1.5)
    w, b = layer.merged()
    x = torch.randn(5, 6)
    torch.testing.assert_close(x @ w.T + b, layer(x), rtol=1e-5, atol=1e-6)
    if not ff:
        assert not torch.equal(b, base.bias)  # output scaling scales the bias too


def test_fused_equals_plain_gradients():
    base = nn.Linear(6, 4)
    for ff in (True, False):
        a, b = IA3Linear(base, ff, fused=True), IA3Linear(base, ff, fused=False)
        with torch.no_grad():
            a.ia3_l.uniform_(0.5, 1.5)
            b.ia3_l.copy_(a.ia3_l)
        x = torch.randn(3, 6, requires_grad=True)
        ga = torch.autograd.grad(a(x).square().sum(), [x, a.ia3_l])
        gb = torch.autograd.grad(b(x).square().sum(), [x, b.ia3_l])
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v)
