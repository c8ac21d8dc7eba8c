"""LoRA around one nn.Linear (Hu et al. 2021), with PEFT's defaults and initialisation."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops
from minipeft.lora_init import residual_init


def adopt_linear(module: nn.Module, base: nn.Linear) -> None:
    """Make `module` stand in for `base`: base's own weight and bias Parameters registered under the
    same names (so state-dict keys do not change), its sizes copied, and base kept, unregistered, in
    `module.base` for `remove()`."""
    if not isinstance(base, nn.Linear):
        raise TypeError(f"{type(module).__name__} wraps an nn.Linear, found {type(base).__name__}")
    object.__setattr__(module, "base", base)  # kept, but not a submodule: keys stay unchanged
    module.in_features, module.out_features = base.in_features, base.out_features
    module.register_parameter("weight", base.weight)  # (out, in), frozen by inject()
    module.register_parameter("bias", base.bias)  # (out,) or None


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update:

        y = x Wᵀ + b + (alpha/r) · dropout(x) Aᵀ Bᵀ        (alpha/√r with rsLoRA)

    W (out, in) and b are the base layer's own Parameters, registered here under the same names
    `weight` / `bias`, so the base's state-dict keys do not change; A (r, in) starts
    kaiming-uniform(a=√5), B (out, r) at zero, so the layer starts equal to its base. The
    untouched base nn.Linear is kept (unregistered) in `base`, for `remove()`.

    init="pissa" / "olora" (minipeft.lora_init) start A, B at A₀, B₀ taken from W, kept as frozen
    non-persistent buffers `lora_A0` / `lora_B0`; the base then acts as the residual W - s·B₀A₀:

        y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ - s · x A₀ᵀ B₀ᵀ

    (PEFT stores W - s·B₀A₀ in the base instead: the same function, but a changed base.)
    """

    ROLE = "lora"
    ADAPTER_PARAMS = ("lora_A", "lora_B")
    LORAPLUS_B = ("lora_B",)  # LoRA+: learns at lr × loraplus_ratio (minipeft.optim)

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
        init: str = "kaiming",
        fused: bool = True,
    ):
        super().__init__()
        adopt_linear(self, base)
        self.r, self.alpha, self.use_rslora, self.fused = r, alpha, use_rslora, fused
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **like))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **like))  # (out, r)
        self.lora_dropout = nn.Dropout(dropout)
        self.disabled, self.init = False, init
        self.register_buffer("lora_A0", None, persistent=False)  # (r, in) for pissa/olora, else None
        self.register_buffer("lora_B0", None, persistent=False)  # (out, r)
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        elif init == "gaussian":
            nn.init.normal_(self.lora_A, std=1 / r)
        elif init in ("pissa", "olora"):
            A0, B0 = residual_init(init, base.weight.detach(), r, self.scaling)
            with torch.no_grad():
                self.lora_A.copy_(A0)
                self.lora_B.copy_(B0)
            self.lora_A0, self.lora_B0 = A0, B0
        else:
            raise ValueError(
                f"LoRALinear init must be 'kaiming', 'gaussian', 'pissa' or 'olora', found {init!r}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.disabled:
            return F.linear(x, self.weight, self.bias)
        if self.fused:
            y = ops.lora_linear(
                x,
                self.weight,
                self.bias,
                self.lora_A,
                self.lora_B,
                self.scaling,
                self.lora_dropout.p,
                self.training,
            )
        else:
            delta = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
            y = F.linear(x, self.weight, self.bias) + self.scaling * delta  # (..., out)
        if self.lora_A0 is None:
            return y
        return y - self.scaling * F.linear(F.linear(x, self.lora_A0), self.lora_B0)  # the residual base

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + s · (B A - B₀A₀), computed in fp32 and cast back to W's dtype (B₀A₀ = 0 unless pissa/olora)."""
        delta = self.lora_B.float() @ self.lora_A.float()  # (out, in)
        if self.lora_A0 is not None:
            delta -= self.lora_B0.float() @ self.lora_A0.float()
        return (self.weight.float() + self.scaling * delta).to(self.weight.dtype)

    def update_factors(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(A', B', alpha') of the plain LoRA equal to this layer's update ΔW = s·B'A': (A, B, alpha)
        for kaiming/gaussian, and for pissa/olora PEFT's rank-2r conversion A' = [A; A₀],
        B' = [B, -B₀] with the scaling kept (alpha doubled, or ×√2 with rsLoRA)."""
        if self.lora_A0 is None:
            return self.lora_A, self.lora_B, self.alpha
        A = torch.cat([self.lora_A.detach(), self.lora_A0], dim=0)  # (2r, in)
        B = torch.cat([self.lora_B.detach(), -self.lora_B0], dim=1)  # (out, 2r)
        return A, B, self.alpha * (math.sqrt(2) if self.use_rslora else 2)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"alpha={self.alpha}, scaling={self.scaling:g}, dropout={self.lora_dropout.p}, "
            f"init={self.init}, fused={self.fused}"
        )
