"""minipeft.analysis on constructed matrices whose answers are known in closed form."""

import math

import pytest
import torch
from torch import nn

from minipeft import IA3Config, LoraConfig, analysis, inject, merge


def orthonormal(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q  # (n, k)


def with_rows(basis: torch.Tensor, r: int, seed: int) -> torch.Tensor:
    """An (r, in) matrix whose row space is span(basis) (in, r), mixed by a random invertible matrix."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(r, r, generator=g, dtype=torch.float64) + 3 * torch.eye(r, dtype=torch.float64)
    return mix @ basis.T


@pytest.mark.parametrize("i,j", [(1, 1), (2, 3), (4, 4), (3, 8)])
def test_phi_is_one_for_nested_subspaces(i, j):
    # A1's top-i right-singular vectors lie inside A2's subspace when both share one basis and A2
    # has the larger rank: U1^(i) ⊂ span(U2), so ||U1^(i)T U2^(j)||_F^2 = min(i, j) when j covers it.
    basis = orthonormal(40, 8, seed=1)
    a = with_rows(basis, 8, seed=2)
    assert analysis.subspace_similarity(a, a, i, j) == pytest.approx(1.0, abs=1e-10)
    # the same 8-dim subspace from another mixing: the full subspaces coincide
    b = with_rows(basis, 8, seed=3)
    assert analysis.subspace_similarity(a, b, 8, 8) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("i,j", [(1, 1), (2, 5), (4, 4), (4, 6)])
def test_phi_is_zero_for_orthogonal_subspaces(i, j):
    q = orthonormal(40, 10, seed=4)
    a1, a2 = with_rows(q[:, :4], 4, seed=5), with_rows(q[:, 4:], 6, seed=6)
    assert analysis.subspace_similarity(a1, a2, i, j) == pytest.approx(0.0, abs=1e-12)


def test_phi_grid_matches_the_definition_and_a_half_overlap():
    # U2 = [u1, w] with w ⟂ u1: φ(1, 2) = |u1·u1|^2 / 1 = 1 and φ(1, 1) with a 45° direction = 1/2
    q = orthonormal(20, 3, seed=7)
    u1, w = q[:, 0], q[:, 1]
    a1 = u1[None, :]  # (1, 20)
    a2 = ((u1 + w) / math.sqrt(2))[None, :]
    assert analysis.subspace_similarity(a1, a2, 1, 1) == pytest.approx(0.5, abs=1e-12)
    grid = analysis.similarity_grid(with_rows(q, 3, 8), with_rows(q[:, :2], 2, 9))
    v1 = analysis.right_singular_vectors(with_rows(q, 3, 8))
    v2 = analysis.right_singular_vectors(with_rows(q[:, :2], 2, 9))
    for i in range(1, 4):
        for j in range(1, 3):
            want = torch.linalg.matrix_norm(v1[:, :i].T @ v2[:, :j]) ** 2 / min(i, j)
            assert float(grid[i - 1, j - 1]) == pytest.approx(float(want), abs=1e-12)


def planted_w(out_dim=30, in_dim=20, seed=10):
    """W = U diag(σ) Vᵀ with known singular vectors and σ = 10, 9, ..., 1, 0.5, ..."""
    u, v = orthonormal(out_dim, in_dim, seed), orthonormal(in_dim, in_dim, seed + 1)
    sigma = torch.tensor([10.0 - k if k < 10 else 0.5 / (k - 8) for k in range(in_dim)], dtype=torch.float64)
    return u @ torch.diag(sigma) @ v.T, u, sigma, v


def test_amplification_of_a_planted_update():
    w, u, sigma, v = planted_w()
    k, c = 12, 3.0  # ΔW = c · u_k v_kᵀ along W's 13th direction, whose singular value is sigma[12]
    delta = c * torch.outer(u[:, k], v[:, k])
    amp = analysis.amplification(delta, w, r=1)
    assert amp.proj_delta == pytest.approx(float(sigma[k]), rel=1e-10)  # |u_kᵀ W v_k| = σ_k
    assert amp.factor == pytest.approx(c / float(sigma[k]), rel=1e-10)
    assert amp.norm_delta == pytest.approx(c, rel=1e-12)
    assert amp.proj_w == pytest.approx(float(sigma[0]), rel=1e-10)  # W's own top direction: σ_1
    # r = 3 along W's top three directions: ‖UᵀWV‖_F = sqrt(σ1² + σ2² + σ3²)
    delta3 = sum(torch.outer(u[:, i], v[:, i]) * (i + 1) for i in range(3))
    amp3 = analysis.amplification(delta3, w, r=3)
    assert amp3.proj_delta == pytest.approx(float(sigma[:3].norm()), rel=1e-10)
    assert amp3.proj_w == pytest.approx(float(sigma[:3].norm()), rel=1e-10)
    assert amp3.proj_random < amp3.proj_w


def test_intruder_dimensions_find_a_planted_orthogonal_direction():
    d = 16
    w0 = torch.diag(torch.linspace(2.0, 1.0, d, dtype=torch.float64))  # singular vectors: e_1..e_d
    x = torch.ones(d, dtype=torch.float64) / math.sqrt(d)  # cosine 1/√d = 0.25 with every e_i
    w_ft = w0 + 20.0 * torch.outer(x, x)  # becomes the top singular direction
    cos = analysis.max_cosines(w_ft, w0, k=5)
    assert float(cos[0]) < 0.3 and float(cos[1:].min()) > 0.5
    assert analysis.intruder_dimensions(w_ft, w0, k=5, eps=0.4) == 1
    assert analysis.intruder_dimensions(w0, w0, k=5, eps=[0.5, 0.99]) == [0, 0]
    assert analysis.intruder_dimensions(w_ft, w0, k=5, eps=[0.1, 0.4]) == [0, 1]


def test_ranks_of_known_spectra():
    flat = torch.ones(8, dtype=torch.float64)
    assert analysis.effective_rank(flat) == pytest.approx(8.0)  # exp(log 8)
    assert analysis.effective_rank(torch.tensor([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    s = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    p = s / s.sum()
    assert analysis.effective_rank(s) == pytest.approx(math.exp(float(-(p * p.log()).sum())))
    assert analysis.stable_rank(s) == pytest.approx((4 + 1 + 1) / 4)
    # energy 100, 64, 36 of 200: 50% after one, 82% after two, 100% after three
    s2 = torch.tensor([10.0, 8.0, 6.0], dtype=torch.float64)
    assert analysis.variance_rank(s2, 0.5) == 1
    assert analysis.variance_rank(s2, 0.8) == 2
    assert analysis.variance_rank(s2, 0.9) == 3
    assert analysis.variance_rank(torch.zeros(3), 0.9) == 0


def test_singular_values_are_float64_and_match_a_planted_matrix():
    w, _, sigma, _ = planted_w()
    s = analysis.singular_values(w.float())
    assert s.dtype == torch.float64
    assert torch.allclose(s, sigma.sort(descending=True).values, atol=1e-5)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([nn.ModuleDict({"query": nn.Linear(12, 10), "value": nn.Linear(12, 10)})])
        self.out = nn.Linear(10, 12)

    def forward(self, x):
        return self.out(self.layer[0]["query"](x) + self.layer[0]["value"](x))


def _train_a_little(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize(
    "config",
    [
        LoraConfig(r=4, alpha=8, targets=("query", "value")),
        IA3Config(targets=("query", "out"), feedforward=("out",)),
    ],
)
def test_delta_equals_merged_minus_base_exactly(config):
    model = Toy()
    inject(model, config)
    _train_a_little(model)
    plain = merge(model)
    deltas = analysis.update_weights(model)
    assert list(deltas) == [p for p, _ in analysis.adapters(model)]
    for path, d in deltas.items():
        base = model.get_submodule(path).weight
        assert torch.equal(d, plain.get_submodule(path).weight.double() - base.double())
    if isinstance(config, LoraConfig):  # and equals s·BA up to float32 rounding of the merge
        m = model.get_submodule("layer.0.query")
        assert torch.allclose(
            deltas["layer.0.query"], m.scaling * m.lora_B.double() @ m.lora_A.double(), atol=1e-6
        )


def test_update_sizes_and_ia3_statistics():
    model = Toy()
    inject(model, IA3Config(targets=("query",), feedforward=()))
    m = model.get_submodule("layer.0.query")
    with torch.no_grad():
        m.ia3_l.copy_(torch.tensor([1.0] * 6 + [1.1, 0.9, 1.02, 1.5]))  # 3 of 10 moved by more than 5%
    (row,) = analysis.ia3_statistics(model)
    assert (row["layer"], row["module"]) == (0, "query")
    assert row["max_abs_dev"] == pytest.approx(0.5)
    assert row["mean_abs_dev"] == pytest.approx((0.1 + 0.1 + 0.02 + 0.5) / 10)
    assert row["share_moved"] == pytest.approx(0.3)
    (size,) = analysis.update_sizes(model)
    d = (m.ia3_l.detach().double() - 1)[:, None] * m.weight.detach().double()  # ΔW = diag(l − 1) W
    assert size["delta_fro"] == pytest.approx(float(d.norm()), rel=1e-6)
    assert size["relative"] == pytest.approx(float(d.norm() / m.weight.double().norm()), rel=1e-6)


def test_lora_only_functions_refuse_ia3_and_bad_shapes():
    model = Toy()
    inject(model, IA3Config(targets=("query",), feedforward=()))
    with pytest.raises(ValueError, match="layer.0.query is a IA3Linear, not a LoRA layer"):
        analysis.lora_factors(model.get_submodule("layer.0.query"), "layer.0.query")
    with pytest.raises(ValueError, match="takes an adapter layer"):
        analysis.delta_weight(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="differs from the base"):
        analysis.full_delta(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="columns"):
        analysis.similarity_grid(torch.zeros(2, 5), torch.zeros(2, 6))


def test_layer_and_module_from_paths():
    assert analysis.layer_and_module("bert.encoder.layer.3.attention.self.query") == (
        3,
        "attention.self.query",
    )
    assert analysis.layer_and_module("encoder.layer.11.output.dense") == (11, "output.dense")
    assert analysis.layer_and_module("classifier") == (None, "classifier")


@pytest.mark.parametrize("shape", [(9, 4), (4, 9), (6, 6)])
def test_svd_reduces_to_a_square_factor_without_losing_accuracy(shape):
    m = torch.randn(*shape, dtype=torch.float64)
    u, s, vh = analysis.svd(m)
    k = min(shape)
    assert u.shape == (shape[0], k) and vh.shape == (k, shape[1])
    assert torch.allclose((u * s) @ vh, m, atol=1e-12)
    assert torch.allclose(u.T @ u, torch.eye(k, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(vh @ vh.T, torch.eye(k, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(analysis.singular_values(m), torch.linalg.svdvals(m), atol=1e-12)


def test_precomputed_svds_give_the_same_answers():
    w, u, _, v = planted_w()
    delta = 0.5 * torch.outer(u[:, 3], v[:, 3]) + 0.2 * torch.outer(u[:, 15], v[:, 15])
    plain = analysis.amplification(delta, w, r=2, seed=1)
    cached = analysis.amplification(delta, w, 2, 1, analysis.svd(delta), analysis.svd(w))
    assert plain == cached
    w_ft = w + delta
    assert analysis.intruder_dimensions(w_ft, w, 5, [0.3, 0.9]) == analysis.intruder_dimensions(
        w_ft, w, 5, [0.3, 0.9], u0=analysis.svd(w)[0]
    )


def test_update_norms_agree_with_update_sizes():
    model = Toy()
    inject(model, LoraConfig(r=2, alpha=4, targets=("query", "value")))
    _train_a_little(model)
    for cheap, full in zip(analysis.update_norms(model), analysis.update_sizes(model)):
        assert cheap["path"] == full["path"] and cheap["shape"] == full["shape"]
        assert cheap["delta_fro"] == pytest.approx(full["delta_fro"], rel=1e-12)  # ‖ΔW‖_F = ‖σ‖₂
        assert cheap["relative"] == pytest.approx(full["relative"], rel=1e-12)
