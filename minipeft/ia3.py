"""IA³ around one nn.Linear (Liu et al. 2022): one learned vector that rescales activations."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops
from minipeft.adapter import adopt_linear, module_names, path_matches
from minipeft.config import IA3Config


class IA3Linear(nn.Module):
    """A frozen linear layer whose input or output is rescaled by a learned vector l (init 1):

        y = (x Wᵀ + b) ⊙ l      l (out,)   ordinary targets (key, value)
        y = (x ⊙ l) Wᵀ + b      l (in,)    feed-forward targets (output.dense)

    W and b are the base layer's own Parameters under the same names `weight` / `bias`; the
    untouched base nn.Linear is kept (unregistered) in `base`, for `remove()`. PEFT stores l as
    (out, 1) or (1, in); peft_tensors / load_peft_tensors convert.
    An AdapterLayer (minipeft.adapter), registered in minipeft.registry.
    """

    ROLE = "ia3"
    ADAPTER_PARAMS = ("ia3_l",)
    PEFT_TYPE = "IA3"
    PEFT_MARKERS = {}
    PEFT_REQUIRED = ("target_modules", "feedforward_modules")
    PEFT_OPTIONAL = ()

    def __init__(self, base: nn.Linear, feedforward: bool, fused: bool = True):
        super().__init__()
        adopt_linear(self, base)
        self.feedforward, self.fused = feedforward, fused
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

    @classmethod
    def from_config(cls, base: nn.Linear, path: str, config: IA3Config) -> IA3Linear:
        return cls(base, feedforward=path_matches(path, config.feedforward), fused=config.fused)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """ΔW = W·diag(l) − W (feed-forward) or diag(l)·W − W, (out, in), in fp32. The output-scaled
        form also rescales the bias (b ⊙ l), which is not part of ΔW."""
        w, l = self.weight.float(), self.ia3_l.float()
        return w * ((l[None, :] if self.feedforward else l[:, None]) - 1)  # (out, in)

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W', b') with l folded in, in fp32 then cast: W·diag(l) for feed-forward targets,
        diag(l)·W and b ⊙ l otherwise."""
        w, l = self.weight.float(), self.ia3_l.float()
        if self.feedforward:
            return (w * l[None, :]).to(self.weight.dtype), self.bias
        bias = None if self.bias is None else (self.bias.float() * l).to(self.bias.dtype)
        return (w * l[:, None]).to(self.weight.dtype), bias

    def peft_tensors(self) -> dict[str, torch.Tensor]:
        """PEFT stores l as (1, in) for feed-forward targets, (out, 1) otherwise."""
        return {"ia3_l": self.ia3_l[None, :] if self.feedforward else self.ia3_l[:, None]}

    @torch.no_grad()
    def load_peft_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.ia3_l.copy_(tensors["ia3_l"].reshape(-1))

    @staticmethod
    def peft_config(config: IA3Config) -> dict:
        return {"feedforward_modules": module_names(config.feedforward), "init_ia3_weights": True}

    @staticmethod
    def config_from_peft(d: dict, file: Path, modules_to_save: tuple[str, ...]) -> IA3Config:
        return IA3Config(
            targets=d["target_modules"], feedforward=d["feedforward_modules"], modules_to_save=modules_to_save
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"feedforward={self.feedforward}, fused={self.fused}"
        )
