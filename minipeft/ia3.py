"""IA³ around one nn.Linear (Liu et al. 2022): one learned vector that rescales activations."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops
from minipeft.lora import adopt_linear


class IA3Linear(nn.Module):
    """A frozen linear layer whose input or output is rescaled by a learned vector l (init 1):

        y = (x Wᵀ + b) ⊙ l      l (out,)   ordinary targets (key, value)
        y = (x ⊙ l) Wᵀ + b      l (in,)    feed-forward targets (output.dense)

    W and b are the base layer's own Parameters under the same names `weight` / `bias`; the
    untouched base nn.Linear is kept (unregistered) in `base`, for `remove()`. PEFT stores l as
    (out, 1) or (1, in); minipeft.io converts on save and load.
    """

    ROLE = "ia3"
    ADAPTER_PARAMS = ("ia3_l",)

    def __init__(self, base: nn.Linear, feedforward: bool, fused: bool = True):
        super().__init__()
        adopt_linear(self, base)
        self.feedforward, self.fused, self.disabled = feedforward, fused, False
        n = self.in_features if feedforward else self.out_features
        self.ia3_l = nn.Parameter(torch.ones(n, device=base.weight.device, dtype=base.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.disabled:
            return F.linear(x, self.weight, self.bias)
        if self.fused:
            return ops.ia3_linear(x, self.weight, self.bias, self.ia3_l, self.feedforward)
        if self.feedforward:
            return F.linear(x * self.ia3_l, self.weight, self.bias)  # (..., out)
        return F.linear(x, self.weight, self.bias) * self.ia3_l  # (..., out)

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W', b') with l folded in, in fp32 then cast: W·diag(l) for feed-forward targets,
        diag(l)·W and b ⊙ l otherwise."""
        w, l = self.weight.float(), self.ia3_l.float()
        if self.feedforward:
            return (w * l[None, :]).to(self.weight.dtype), self.bias
        bias = None if self.bias is None else (self.bias.float() * l).to(self.bias.dtype)
        return (w * l[:, None]).to(self.weight.dtype), bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"feedforward={self.feedforward}, fused={self.fused}"
        )
