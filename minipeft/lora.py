"""LoRA around one nn.Linear (Hu et al. 2021), with PEFT's defaults and initialisation."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops


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
    """

    ROLE = "lora"
    ADAPTER_PARAMS = ("lora_A", "lora_B")

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
        self.disabled = False
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        elif init == "gaussian":
            nn.init.normal_(self.lora_A, std=1 / r)
        else:
            raise ValueError(f"LoRALinear init must be 'kaiming' or 'gaussian', found {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.disabled:
            return F.linear(x, self.weight, self.bias)
        if self.fused:
            return ops.lora_linear(
                x,
                self.weight,
                self.bias,
                self.lora_A,
                self.lora_B,
                self.scaling,
                self.lora_dropout.p,
                self.training,
            )
        delta = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return F.linear(x, self.weight, self.bias) + self.scaling * delta  # (..., out)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + s · B A, computed in fp32 and cast back to W's dtype."""
        delta = self.lora_B.float() @ self.lora_A.float()  # (out, in)
        return (self.weight.float() + self.scaling * delta).to(self.weight.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"alpha={self.alpha}, scaling={self.scaling:g}, dropout={self.lora_dropout.p}, "
            f"fused={self.fused}"
        )
