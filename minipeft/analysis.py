"""What an adapter learned: the update ΔW of each adapted layer and measurements of it.

    deltas = update_weights(model)                  # {path: ΔW (out, in), float64}
    s = singular_values(deltas[path])               # spectrum of the update
    variance_rank(s), stable_rank(s), effective_rank(s)
    subspace_similarity(A_r8, A_r64, i=1, j=1)      # Hu et al. 2021, §7.2
    amplification(ΔW, W0, r)                        # Hu et al. 2021, §7.3
    intruder_dimensions(W_ft, W0, k=10, eps)        # Shuttleworth et al. 2024

Pure functions on tensors and on adapter layers (minipeft.adapter.AdapterLayer: LoRA, IA³ and any
registered type; the LoRA- and IA³-only measures select layers by their ROLE), so they work on any
nn.Module with minipeft adapters. Every SVD runs in float64 on the CPU copy of the tensor (a
768 x 3072 matrix takes well under a second). ΔW of a LoRA or IA³ layer is defined as its merged
weight minus its base weight, i.e. exactly what `merge(model)` changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from minipeft.inject import adapters
from minipeft.registry import layer_types

F64 = torch.float64


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=F64)


# ---------------------------------------------------------------- updates ΔW


def delta_weight(module: nn.Module) -> torch.Tensor:
    """ΔW (out, in) of one adapter layer, in float64: its merged weight minus its base weight.

    LoRA:  ΔW = (alpha/r) · B A          (the merge, W + s·BA, is rounded to W's dtype first)
    IA³:   ΔW = diag(l) W − W  or  W diag(l) − W  (feed-forward targets)
    Any registered adapter type (minipeft.registry) works: it goes through the layer's `merged()`,
    the very weight `merge(model)` writes, so `merge(model)`'s weight minus the base weight
    equals this tensor exactly (the layer's own `delta_weight()` is the same before rounding)."""
    if not isinstance(module, layer_types()):
        raise ValueError(
            f"delta_weight takes an adapter layer ({', '.join(t.__name__ for t in layer_types())}), "
            f"found {type(module).__name__}; for full fine-tuning use full_delta(w_finetuned, w_base)"
        )
    return _f64(module.merged()[0]) - _f64(module.weight)  # (out, in)


def update_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """{adapted module path: ΔW (out, in) float64}, in model order."""
    return {path: delta_weight(m) for path, m in adapters(model)}


def full_delta(w_finetuned: torch.Tensor, w_base: torch.Tensor, name: str = "weight") -> torch.Tensor:
    """ΔW = W_ft − W₀ of full fine-tuning, in float64 (Biderman et al. 2024)."""
    if tuple(w_finetuned.shape) != tuple(w_base.shape):
        raise ValueError(
            f"{name}: fine-tuned shape {tuple(w_finetuned.shape)} differs from the base's "
            f"{tuple(w_base.shape)}; both must come from the same architecture"
        )
    return _f64(w_finetuned) - _f64(w_base)


def lora_factors(module: nn.Module, path: str = "module") -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r, in), B (out, r)) of a LoRA layer, float64; anything else raises."""
    if getattr(module, "ROLE", None) != "lora":  # the adapter protocol's role, not a class test
        raise ValueError(
            f"{path} is a {type(module).__name__}, not a LoRA layer: subspace similarity and the "
            "amplification factor need LoRA's A and B matrices (IA³ learns one vector per layer); "
            "use ia3_statistics for IA³"
        )
    return _f64(module.lora_A), _f64(module.lora_B)


# ---------------------------------------------------------------- spectra and ranks


def svd(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (U, S, Vᵀ) of m (out, in) in float64. A non-square m is first reduced by QR to its
    k x k factor, k = min(out, in), so that LAPACK works on a square matrix (a wide 768 x 3072
    matrix straight into gesdd takes a minute on some CPU builds, this way about a second):
        tall  m = Q R:        R = U' S Vᵀ   ->  U = Q U'
        wide  mᵀ = Q R:       Rᵀ = U S V'ᵀ  ->  Vᵀ = V'ᵀ Qᵀ"""
    m = _f64(m)
    out_dim, in_dim = m.shape
    if out_dim > in_dim:
        q, r = torch.linalg.qr(m)  # (out, in), (in, in)
        u, s, vh = torch.linalg.svd(r)
        return q @ u, s, vh
    if in_dim > out_dim:
        q, r = torch.linalg.qr(m.T)  # (in, out), (out, out)
        u, s, vh = torch.linalg.svd(r.T)
        return u, s, vh @ q.T
    return torch.linalg.svd(m)


def singular_values(m: torch.Tensor) -> torch.Tensor:
    """Singular values of m in float64, descending (square QR factor first, as `svd`)."""
    m = _f64(m)
    if m.shape[0] != m.shape[1]:
        m = torch.linalg.qr(m if m.shape[0] > m.shape[1] else m.T, mode="r").R
    return torch.linalg.svdvals(m)


def variance_rank(s: torch.Tensor, share: float = 0.9) -> int:
    """Smallest k with Σ_{i≤k} s_i² ≥ share · Σ s_i² (Biderman et al. 2024: the rank that explains
    90% of the update's variance). 0 for an all-zero spectrum."""
    energy = _f64(s) ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 0
    cum = torch.cumsum(energy, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(share, dtype=F64) - 1e-12)) + 1


def stable_rank(s: torch.Tensor) -> float:
    """‖M‖²_F / ‖M‖²_2 = Σ s_i² / s_1² (0 for a zero matrix)."""
    s = _f64(s)
    top = float(s.max()) if s.numel() else 0.0
    return float((s**2).sum()) / top**2 if top > 0 else 0.0


def effective_rank(s: torch.Tensor) -> float:
    """Roy & Vetterli 2007: erank = exp(H(p)), p_i = s_i / Σ_j s_j, H(p) = −Σ p_i log p_i
    (0 · log 0 = 0). Between 1 (one direction) and the number of non-zero singular values."""
    s = _f64(s)
    total = float(s.sum())
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return math.exp(float(-(p * torch.log(p)).sum()))


# ---------------------------------------------------------------- subspace similarity (Hu et al. §7.2)


def right_singular_vectors(a: torch.Tensor) -> torch.Tensor:
    """Columns of V (in, k) of a = U Σ Vᵀ, float64, ordered by singular value."""
    return svd(a)[2].T  # (in, k)


def subspace_similarity(a1: torch.Tensor, a2: torch.Tensor, i: int, j: int) -> float:
    """Hu et al. 2021 (LoRA, §7.2): φ(A₁, A₂, i, j) = ‖U₁⁽ⁱ⁾ᵀ U₂⁽ʲ⁾‖²_F / min(i, j) ∈ [0, 1],
    with U⁽ⁱ⁾ the top-i right-singular vectors of A (r, in). 1: one subspace contains the other."""
    return float(similarity_grid(a1, a2, i, j)[i - 1, j - 1])


def similarity_grid(a1: torch.Tensor, a2: torch.Tensor, imax: int | None = None, jmax: int | None = None):
    """φ(A₁, A₂, i, j) for i = 1..imax, j = 1..jmax, a float64 (imax, jmax) tensor (their Fig. 3/4)."""
    if a1.shape[-1] != a2.shape[-1]:
        raise ValueError(f"A matrices have {a1.shape[-1]} and {a2.shape[-1]} columns; they must match")
    u1, u2 = right_singular_vectors(a1), right_singular_vectors(a2)  # (in, r1), (in, r2)
    imax, jmax = imax or u1.shape[1], jmax or u2.shape[1]
    if not (1 <= imax <= u1.shape[1] and 1 <= jmax <= u2.shape[1]):
        raise ValueError(f"i, j must be in 1..{u1.shape[1]} and 1..{u2.shape[1]}, got {imax}, {jmax}")
    sq = (u1[:, :imax].T @ u2[:, :jmax]) ** 2  # (imax, jmax): cos² between single directions
    cum = sq.cumsum(0).cumsum(1)  # ‖U₁⁽ⁱ⁾ᵀ U₂⁽ʲ⁾‖²_F for every (i, j)
    i = torch.arange(1, imax + 1, dtype=F64)[:, None]
    j = torch.arange(1, jmax + 1, dtype=F64)[None, :]
    return cum / torch.minimum(i, j)


# ---------------------------------------------------------------- amplification (Hu et al. §7.3)


@dataclass(frozen=True)
class Amplification:
    """‖Uᵀ W V‖_F for three choices of the r directions U (out, r), V (in, r), and the factor
    ‖ΔW‖_F / ‖Uᵀ W V‖_F of ΔW's own directions (Hu et al. 2021, Table 7)."""

    r: int
    norm_delta: float  # ‖ΔW‖_F
    norm_w: float  # ‖W‖_F
    proj_delta: float  # ‖Uᵀ W V‖_F, U, V the top-r singular vectors of ΔW
    proj_w: float  # same with W's own top-r singular vectors (= sqrt(Σ_{i≤r} σ_i(W)²))
    proj_random: float  # same with random orthonormal U, V (seeded)

    @property
    def factor(self) -> float:
        return self.norm_delta / self.proj_delta if self.proj_delta > 0 else math.inf


def _top(m: torch.Tensor, r: int, done=None) -> tuple[torch.Tensor, torch.Tensor]:
    u, _, vh = done if done is not None else svd(m)
    return u[:, :r], vh[:r].T  # (out, r), (in, r)


def amplification(
    delta: torch.Tensor, w: torch.Tensor, r: int, seed: int = 0, svd_delta=None, svd_w=None
) -> Amplification:
    """Hu et al. 2021 (§7.3): how strongly ΔW amplifies directions of W. Project W onto the
    r-dimensional subspace of ΔW, ‖Uᵀ W V‖_F, and compare with ‖ΔW‖_F; a large factor means ΔW
    amplifies directions that W holds but does not emphasise. W's own top-r directions and random
    directions give the scale of the projection for comparison. `svd_delta` / `svd_w`: the
    (U, S, Vᵀ) of `svd(delta)` / `svd(w)` when already computed (e.g. for several r)."""
    d, w = _f64(delta), _f64(w)
    if d.shape != w.shape:
        raise ValueError(f"ΔW has shape {tuple(d.shape)} and W {tuple(w.shape)}; they must match")
    if not 1 <= r <= min(w.shape):
        raise ValueError(f"r must be in 1..{min(w.shape)}, got {r}")
    g = torch.Generator().manual_seed(seed)
    rand_u = torch.linalg.qr(torch.randn(w.shape[0], r, generator=g, dtype=F64)).Q  # (out, r)
    rand_v = torch.linalg.qr(torch.randn(w.shape[1], r, generator=g, dtype=F64)).Q  # (in, r)

    def proj(u, v):
        return float(torch.linalg.matrix_norm(u.T @ w @ v))

    return Amplification(
        r=r,
        norm_delta=float(torch.linalg.matrix_norm(d)),
        norm_w=float(torch.linalg.matrix_norm(w)),
        proj_delta=proj(*_top(d, r, svd_delta)),
        proj_w=proj(*_top(w, r, svd_w)),
        proj_random=proj(rand_u, rand_v),
    )


# ---------------------------------------------------------------- intruder dimensions (Shuttleworth et al.)


def max_cosines(w_ft: torch.Tensor, w0: torch.Tensor, k: int = 10, u0=None) -> torch.Tensor:
    """For each of the top-k left-singular vectors of W_ft, its largest |cosine| with any
    left-singular vector of W₀ (float64, shape (k,)); `u0`: W₀'s U when already computed."""
    u_ft = svd(w_ft)[0][:, :k]  # (out, k)
    u0 = svd(w0)[0] if u0 is None else u0  # (out, n)
    return (u0.T @ u_ft).abs().amax(0)  # unit vectors: the dot product is the cosine


def intruder_dimensions(
    w_ft: torch.Tensor, w0: torch.Tensor, k: int = 10, eps: float | Sequence[float] = 0.5, u0=None
) -> int | list[int]:
    """Shuttleworth et al. 2024 (Algorithm 1): the number of the top-k singular vectors of the
    fine-tuned W whose largest cosine similarity with every singular vector of W₀ is below ε.
    One count per ε when eps is a sequence."""
    if tuple(w_ft.shape) != tuple(w0.shape):
        raise ValueError(f"W_ft {tuple(w_ft.shape)} and W0 {tuple(w0.shape)} must have the same shape")
    cos = max_cosines(w_ft, w0, k, u0)
    if isinstance(eps, (int, float)):
        return int((cos < eps).sum())
    return [int((cos < e).sum()) for e in eps]


# ---------------------------------------------------------------- where the change is


def layer_and_module(path: str) -> tuple[int | None, str]:
    """(layer index, module name) from a module path: the first integer component and what
    follows it, e.g. `bert.encoder.layer.3.attention.self.query` -> (3, `attention.self.query`)."""
    m = re.search(r"(?:^|\.)(\d+)\.(.+)$", path)
    return (int(m.group(1)), m.group(2)) if m else (None, path)


def update_row(path: str, delta: torch.Tensor, w0: torch.Tensor) -> dict:
    """Size and shape of one update: ‖ΔW‖_F, ‖ΔW‖_F / ‖W₀‖_F, stable and effective rank, 90% rank."""
    s = singular_values(delta)
    norm, base = float(torch.linalg.vector_norm(s)), float(torch.linalg.matrix_norm(_f64(w0)))
    layer, module = layer_and_module(path)
    return {
        "path": path,
        "layer": layer,
        "module": module,
        "shape": list(delta.shape),
        "delta_fro": norm,
        "relative": norm / base if base > 0 else math.inf,
        "stable_rank": stable_rank(s),
        "effective_rank": effective_rank(s),
        "rank90": variance_rank(s, 0.9),
    }


def update_norms(model: nn.Module) -> list[dict]:
    """Per adapted layer, without an SVD: path, shape, ‖ΔW‖_F and ‖ΔW‖_F / ‖W₀‖_F (for audits)."""
    rows = []
    for path, m in adapters(model):
        d, base = delta_weight(m), float(torch.linalg.matrix_norm(_f64(m.weight)))
        norm = float(torch.linalg.matrix_norm(d))
        rel = norm / base if base > 0 else math.inf
        rows.append({"path": path, "shape": list(d.shape), "delta_fro": norm, "relative": rel})
    return rows


def update_sizes(model: nn.Module) -> list[dict]:
    """update_row for every adapted layer of `model`, in model order."""
    return [update_row(p, delta_weight(m), m.weight) for p, m in adapters(model)]


def ia3_statistics(model: nn.Module, threshold: float = 0.05) -> list[dict]:
    """Per IA³ layer: mean and largest |l − 1| and the share of entries with |l − 1| > threshold."""
    rows = []
    for path, m in adapters(model):
        if m.ROLE == "ia3":
            dev = (_f64(m.ia3_l) - 1).abs()
            layer, module = layer_and_module(path)
            rows.append(
                {
                    "path": path,
                    "layer": layer,
                    "module": module,
                    "feedforward": m.feedforward,
                    "mean_abs_dev": float(dev.mean()),
                    "max_abs_dev": float(dev.max()),
                    "share_moved": float((dev > threshold).to(F64).mean()),
                }
            )
    return rows
