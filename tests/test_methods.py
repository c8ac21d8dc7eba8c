"""DoRA, PiSSA/OLoRA, VeRA and LoRA+: each against its written-out equation, fused vs plain in values
and gradients, starting equal to the base, merge equal to the adapted forward, files bit for bit."""

import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from minipeft import (
    DoraConfig,
    DoRALinear,
    LoraConfig,
    LoRALinear,
    VeraConfig,
    VeRALinear,
    adapters,
    disabled,
    fingerprint,
    inject,
    load_adapter,
    merge,
    ops,
    param_table,
    remove,
    save_adapter,
)
from minipeft.lora_init import olora, pissa
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


# ---- fused vs plain, zero init, merge ------------------------------------------------------------


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


@pytest.mark.parametrize("kind", ["dora", "vera"])
def test_save_and_load_reproduce_the_model_bit_for_bit(tmp_path, kind):
    torch.manual_seed(0)
    model = MLP().eval()
    fresh = _clone(model)
    inject(model, CONFIGS[kind])
    _perturb(model)
    save_adapter(model, tmp_path)
    torch.manual_seed(123)  # another init draw: loading must overwrite every adapter tensor
    load_adapter(fresh, tmp_path)
    x = _x(4, 12)
    assert torch.equal(fresh(x), model(x))
    for (_, a), (_, b) in zip(adapters(fresh), adapters(model)):
        for n in a.ADAPTER_PARAMS:
            assert torch.equal(getattr(a, n), getattr(b, n))
    save_adapter(fresh, tmp_path / "again")
    assert (tmp_path / "again/adapter_model.safetensors").read_bytes() == (
        tmp_path / "adapter_model.safetensors"
    ).read_bytes()


def _clone(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_residual_inits_save_as_a_plain_rank_2r_lora_against_the_untouched_base(tmp_path, init):
    torch.manual_seed(0)
    model = MLP().eval()
    untouched = _clone(model)
    inject(model, CONFIGS[init])
    _perturb(model)
    save_adapter(model, tmp_path)
    import json

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
    save_adapter(untouched, tmp_path / "again")  # the loaded plain LoRA writes the same tensors back
    assert (tmp_path / "again/adapter_model.safetensors").read_bytes() == (
        tmp_path / "adapter_model.safetensors"
    ).read_bytes()


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
