"""LoRA initialisations that start from the base weight's own directions: PiSSA and OLoRA.

PiSSA (Meng et al. 2024): with the SVD W = V diag(S) Uᴴ (out, in),

    A = diag(√(S_r / s)) Uᴴ_r      (r, in)
    B = V_r diag(√(S_r / s))       (out, r)      so that s · B A = V_r diag(S_r) Uᴴ_r,

the rank-r principal part of W. OLoRA (Büyükakyüz 2024): with the QR decomposition W = Q R,

    A = R[:r]                      (r, in)
    B = Q[:, :r]                   (out, r).

Both start the adapter at a non-zero s·B₀A₀, so the base must act as the residual W - s·B₀A₀ for
the layer to begin equal to W. PEFT writes that residual into the base weights; minipeft leaves W
untouched and subtracts s·B₀A₀ x in the forward (minipeft.lora.LoRALinear), which computes the
same function while the base (and so its audit fingerprint) stays the pretrained one. Either way
the trained update is ΔW = s·(B A - B₀A₀) = s·[B, -B₀][A; A₀]: a plain LoRA of rank 2r with the
same scaling, which is what `save_adapter` writes (PEFT's `path_initial_model_for_weight_conversion`).

Both are computed in float32 (as PEFT does) and cast to W's dtype; `torch.linalg.svd` / `qr`
with full_matrices=False / mode "reduced", so the factors equal PEFT's bit for bit on one machine.
"""

from __future__ import annotations

import torch


def _check(weight: torch.Tensor, r: int, name: str) -> None:
    if weight.dim() != 2:
        raise ValueError(f"{name}: the base weight must be 2-D (out, in), found shape {tuple(weight.shape)}")
    if r > min(weight.shape):
        raise ValueError(
            f"{name}: r={r} exceeds the rank bound min(out, in)={min(weight.shape)} of a weight of shape "
            f"{tuple(weight.shape)}; choose r <= {min(weight.shape)}"
        )


@torch.no_grad()
def pissa(weight: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r, in), B (out, r)) with s·B A the rank-r truncated SVD of `weight` (out, in)."""
    _check(weight, r, "pissa")
    V, S, Uh = torch.linalg.svd(weight.float(), full_matrices=False)  # (out, k), (k,), (k, in)
    root = torch.sqrt(S[:r] / scaling)  # (r,)
    A = root[:, None] * Uh[:r]  # (r, in) = diag(√(S_r/s)) Uᴴ_r
    B = V[:, :r] * root[None, :]  # (out, r) = V_r diag(√(S_r/s))
    return A.to(weight.dtype), B.to(weight.dtype)


@torch.no_grad()
def olora(weight: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r, in), B (out, r)) = (R[:r], Q[:, :r]) from the reduced QR decomposition of `weight`."""
    _check(weight, r, "olora")
    Q, R = torch.linalg.qr(weight.float())  # (out, k), (k, in)
    return R[:r].contiguous().to(weight.dtype), Q[:, :r].contiguous().to(weight.dtype)


def residual_init(init: str, weight: torch.Tensor, r: int, scaling: float):
    """A, B for init "pissa" or "olora"."""
    if init == "pissa":
        return pissa(weight, r, scaling)
    if init == "olora":
        return olora(weight, r)
    raise ValueError(f"residual_init: init must be 'pissa' or 'olora', found {init!r}")
