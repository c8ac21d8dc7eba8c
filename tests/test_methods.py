"""DoRA, PiSSA/OLoRA and VeRA as layers: each against its written-out equation, and the fused op
against the plain path in values and gradients. In a model (inject, merge, files, LoRA+, counts):
test_methods_in_a_model.py."""

import math

import pytest
import torch
import torch.nn as nn

from minipeft import DoRALinear, LoRALinear, VeRALinear, ops
from minipeft.lora_init import olora, pissa
from minipeft.vera import VeraProjections


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- the equations -------------------------------------------------------------------------------


def test_dora_plain_path_is_the_papers_equation():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = DoRALinear(base, r=4, alpha=8, fused=False).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude_vector.mul_(torch.linspace(0.5, 1.5, 10))
    x = _x(3, 5, 12)
    W, b, A, B, m = base.weight, base.bias, layer.lora_A, layer.lora_B, layer.lora_magnitude_vector
    V = W + 2.0 * B @ A  # s = alpha / r = 2
    W_prime = m[:, None] * V / V.norm(dim=1, keepdim=True)  # m ⊙ (W + sBA) / ‖W + sBA‖_row
    torch.testing.assert_close(layer(x), x @ W_prime.T + b, rtol=0, atol=1e-5)


def test_dora_norm_gets_no_gradient_and_dropout_acts_on_the_update_only():
    """DoRA §4.3: ∂y/∂B through n is dropped. With n detached, y depends on B only via (m/n)·s·BAx."""
    torch.manual_seed(0)
    layer = DoRALinear(nn.Linear(6, 5), r=2, alpha=2, fused=False)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = _x(4, 6)
    layer(x).sum().backward()
    n = (layer.weight + layer.lora_B @ layer.lora_A).norm(dim=1).detach()
    g = (layer.lora_magnitude_vector / n).detach()
    want = (g[None, :] * torch.ones(4, 5)).T @ (x @ layer.lora_A.T)  # ∂/∂B of Σ (g ⊙ s x Aᵀ Bᵀ), s = 1
    torch.testing.assert_close(layer.lora_B.grad, want, rtol=1e-5, atol=1e-6)


def test_pissa_factors_are_the_principal_part_and_olora_the_qr_basis():
    torch.manual_seed(0)
    W = torch.randn(10, 12)
    A, B = pissa(W, r=3, scaling=2.0)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    torch.testing.assert_close(2.0 * B @ A, U[:, :3] @ torch.diag(S[:3]) @ Vh[:3], rtol=0, atol=1e-5)
    A, B = olora(W, r=3)
    Q, R = torch.linalg.qr(W)
    torch.testing.assert_close(B.T @ B, torch.eye(3), rtol=0, atol=1e-5)  # orthonormal columns
    torch.testing.assert_close(B @ A, Q[:, :3] @ R[:3], rtol=0, atol=0)
    with pytest.raises(ValueError, match="r=13 exceeds"):
        pissa(W, r=13, scaling=1.0)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_residual_inits_start_equal_to_the_base_and_move_with_A_B(init):
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = LoRALinear(base, r=4, alpha=8, init=init, fused=False)
    x = _x(6, 12)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=1e-5)  # W - sB₀A₀ + sB₀A₀ = W
    with torch.no_grad():
        layer.lora_B.add_(0.1)
    s = 2.0
    residual = base.weight - s * layer.lora_B0 @ layer.lora_A0  # PEFT's residual base
    want = x @ (residual + s * layer.lora_B @ layer.lora_A).T + base.bias
    torch.testing.assert_close(layer(x), want, rtol=0, atol=1e-5)
    assert not layer.lora_A0.requires_grad and "lora_A0" not in layer.state_dict()


def test_vera_plain_path_is_the_papers_equation():
    torch.manual_seed(0)
    base = nn.Linear(10, 7)
    shared = VeraProjections(r=5, max_in=12, max_out=9, key=0)
    layer = VeRALinear(base, shared, r=5, fused=False)
    with torch.no_grad():
        layer.vera_lambda_b.normal_()
        layer.vera_lambda_d.normal_()
    x = _x(4, 10)
    A, B = shared.vera_A[:, :10], shared.vera_B[:7]  # the leading slices
    delta = torch.diag(layer.vera_lambda_b) @ B @ torch.diag(layer.vera_lambda_d) @ A  # (7, 10)
    torch.testing.assert_close(layer(x), x @ (base.weight + delta).T + base.bias, rtol=0, atol=1e-5)
    bound = math.sqrt(6 / 12)  # kaiming-uniform, gain √2, fan_in = columns
    assert shared.vera_A.abs().max() <= bound and shared.vera_A.abs().max() > 0.9 * bound


def test_vera_projections_follow_the_key():
    a, b, c = (VeraProjections(4, 8, 6, key=k) for k in (0, 0, 1))
    assert torch.equal(a.vera_A, b.vera_A) and torch.equal(a.vera_B, b.vera_B)
    assert not torch.equal(a.vera_A, c.vera_A)


# ---- fused vs plain --------------------------------------------------------------------------------


def _pair(kind, dropout):
    """(plain layer, fused layer) with the same tensors, perturbed away from the init."""
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    if kind == "dora":
        make = lambda fused: DoRALinear(base, r=4, alpha=8, dropout=dropout, fused=fused)  # noqa: E731
    elif kind == "vera":
        shared = VeraProjections(r=6, max_in=12, max_out=10, key=0)
        make = lambda fused: VeRALinear(base, shared, r=6, dropout=dropout, fused=fused)  # noqa: E731
    else:
        make = lambda fused: LoRALinear(base, r=4, alpha=8, dropout=dropout, init=kind, fused=fused)  # noqa: E731
    plain, fused = make(False), make(True)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n in plain.ADAPTER_PARAMS:
            getattr(plain, n).add_(0.3 * torch.randn(getattr(plain, n).shape, generator=g))
    fused.load_state_dict(plain.state_dict())
    return plain, fused


@pytest.mark.parametrize("kind", ["dora", "pissa", "olora", "vera"])
def test_fused_equals_plain_in_values_and_gradients(kind):
    plain, fused = _pair(kind, dropout=0.0)
    x = _x(3, 5, 12).requires_grad_()
    dy = _x(3, 5, 10, seed=9)
    grads = []
    for layer in (plain, fused):
        x.grad = None
        y = layer(x)
        (y * dy).sum().backward()
        grads.append((y.detach(), x.grad.clone(), [getattr(layer, n).grad for n in layer.ADAPTER_PARAMS]))
    (y0, dx0, g0), (y1, dx1, g1) = grads
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx1, dx0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_dora_with_dropout_matches_the_equation_under_its_own_mask():
    """Training with dropout: y = xWᵀ + b + (g-1) ⊙ x_d Wᵀ + g ⊙ s x_d AᵀBᵀ for the op's own mask."""
    plain, fused = _pair("dora", dropout=0.3)
    fused.train()
    x = _x(4, 12).requires_grad_()
    torch.manual_seed(7)
    y = fused(x)
    torch.manual_seed(7)
    keep, keep_scale = ops.dropout_mask(x.shape, 0.3, x.device)  # the same draw the op made
    xd = x * keep * keep_scale
    W, b, A, B, m = plain.weight, plain.bias, plain.lora_A, plain.lora_B, plain.lora_magnitude_vector
    g = m / (W + 2.0 * B @ A).norm(dim=1).detach()
    want = x @ W.T + b + (g - 1) * (xd @ W.T) + g * 2.0 * (xd @ A.T @ B.T)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    dy = _x(4, 10, seed=3)
    gf = torch.autograd.grad(y, [x, fused.lora_A, fused.lora_B, fused.lora_magnitude_vector], dy)
    gp = torch.autograd.grad(want, [x, plain.lora_A, plain.lora_B, plain.lora_magnitude_vector], dy)
    for a, b_ in zip(gf, gp):
        torch.testing.assert_close(a, b_, rtol=1e-5, atol=1e-5)


def test_dora_norm_without_the_full_matrix_equals_the_direct_norm():
    torch.manual_seed(0)
    W, A, B = torch.randn(10, 12), torch.randn(4, 12), torch.randn(10, 4)
    torch.testing.assert_close(
        ops.dora_norm(W, A, B, 0.5), (W + 0.5 * B @ A).norm(dim=1), rtol=1e-5, atol=1e-5
    )


# ---- CUDA-ready: traceable, no host synchronisation ----------------------------------------------


@pytest.mark.slow
def test_fused_dora_traces_as_one_graph_and_matches_eager():
    """torch.compile(fullgraph=True) must not break the op (a break or a .item() would raise)."""
    torch.manual_seed(0)
    W, b = torch.randn(10, 12), torch.randn(10)
    A, B, m = (torch.randn(*s, requires_grad=True) for s in ((4, 12), (10, 4), (10,)))
    x = _x(3, 12)
    f = lambda x: ops.dora_linear(x, W, b, A, B, m, 2.0, 0.0, True)  # noqa: E731
    eager = f(x)
    g_eager = torch.autograd.grad(eager.sum(), [A, B, m])
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    for a, b_ in zip(torch.autograd.grad(compiled.sum(), [A, B, m]), g_eager):
        torch.testing.assert_close(a, b_, rtol=1e-6, atol=1e-6)
