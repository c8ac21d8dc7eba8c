"""DoRA around one nn.Linear (Liu et al. 2024): LoRA with the weight split into magnitude and direction."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops
from minipeft.adapter import adopt_linear
from minipeft.config import DoraConfig
from minipeft.lora import LoRALinear, add_low_rank_pair


class DoRALinear(nn.Module):
    """A frozen linear layer whose weight is re-composed from a learned magnitude and a LoRA-updated
    direction:

        W' = m ⊙ (W + s·B A) / n,    n = ‖W + s·B A‖ per output row (over the inputs), detached
        y  = x Wᵀ + b + (m/n - 1) ⊙ (dropout(x) Wᵀ) + (m/n) ⊙ s · dropout(x) Aᵀ Bᵀ

    which is x W'ᵀ + b without dropout (PEFT's formula, including where dropout acts). m (out,)
    starts at n = ‖W‖ and B at 0, so the layer starts equal to its base; n gets no gradient
    (DoRA §4.3, PEFT's default). A (r, in), B (out, r), s = alpha/r (alpha/√r with rsLoRA).
    W and b are the base layer's own Parameters under the same names; PEFT's file key of m is
    `<path>.lora_magnitude_vector`, the name used here. An AdapterLayer (minipeft.adapter): PEFT's
    LORA type with use_dora=True.
    """

    ROLE = "dora"
    ADAPTER_PARAMS = ("lora_A", "lora_B", "lora_magnitude_vector")
    LORAPLUS_B = ("lora_B",)  # LoRA+ (the 1-D magnitude is on the B side too, by shape)
    PEFT_TYPE = "LORA"
    PEFT_MARKERS = {"use_dora": True}
    PEFT_REQUIRED = LoRALinear.PEFT_REQUIRED
    PEFT_OPTIONAL = LoRALinear.PEFT_OPTIONAL

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
        if not isinstance(base, nn.Linear):
            raise ValueError(
                f"DoRA (use_dora=True) needs an nn.Linear to decompose, found {type(base).__name__}; "
                "target nn.Linear layers only, or use plain LoRA (use_dora=False)"
            )
        adopt_linear(self, base)
        self.fused, self.init = fused, init
        if not add_low_rank_pair(self, r, alpha, dropout, use_rslora, init):
            raise ValueError(f"DoRALinear init must be 'kaiming' or 'gaussian', found {init!r}")
        self.lora_magnitude_vector = nn.Parameter(self.weight_norm())  # (out,) = ‖W‖ at init

    @torch.no_grad()
    def weight_norm(self) -> torch.Tensor:
        """n = ‖W + s·B A‖ per output row, (out,), without gradient."""
        return torch.linalg.vector_norm(self.weight + self.scaling * (self.lora_B @ self.lora_A), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.disabled:
            return F.linear(x, self.weight, self.bias)
        if self.fused:
            return ops.dora_linear(
                x,
                self.weight,
                self.bias,
                self.lora_A,
                self.lora_B,
                self.lora_magnitude_vector,
                self.scaling,
                self.lora_dropout.p,
                self.training,
            )
        g, xd = self.lora_magnitude_vector / self.weight_norm(), self.lora_dropout(x)  # (out,), (..., in)
        lora = self.scaling * F.linear(F.linear(xd, self.lora_A), self.lora_B)  # (..., out)
        return F.linear(x, self.weight, self.bias) + (g - 1) * F.linear(xd, self.weight) + g * lora

    @classmethod
    def from_config(cls, base: nn.Linear, path: str, config: DoraConfig) -> DoRALinear:
        if not isinstance(base, nn.Linear):
            raise ValueError(
                f"DoraConfig targets {path!r}, a {type(base).__name__}; DoRA decomposes an nn.Linear "
                "weight. Fix DoraConfig.targets to name nn.Linear layers only"
            )
        c = config
        return cls(base, c.r, c.alpha, c.dropout, c.use_rslora, c.init, c.fused)

    @torch.no_grad()
    def _merged_fp32(self) -> torch.Tensor:
        """W' = m ⊙ (W + s·B A) / ‖W + s·B A‖, (out, in), in fp32."""
        w = self.weight.float() + self.scaling * (self.lora_B.float() @ self.lora_A.float())  # (out, in)
        g = self.lora_magnitude_vector.float() / torch.linalg.vector_norm(w, dim=1)  # (out,)
        return w * g[:, None]

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W', b): W' in fp32, cast back to W's dtype; the bias is unchanged."""
        return self._merged_fp32().to(self.weight.dtype), self.bias

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """ΔW = W' - W, (out, in), in fp32."""
        return self._merged_fp32() - self.weight.float()

    def peft_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "lora_A.weight": self.lora_A,  # (r, in)
            "lora_B.weight": self.lora_B,  # (out, r)
            "lora_magnitude_vector": self.lora_magnitude_vector,  # (out,)
        }

    @torch.no_grad()
    def load_peft_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, t in self.peft_tensors().items():
            t.copy_(tensors[name])

    @staticmethod
    def peft_config(config: DoraConfig) -> dict:
        return {**LoRALinear.peft_config(config), "use_dora": True}

    @staticmethod
    def config_from_peft(d: dict, file: Path, modules_to_save: tuple[str, ...]) -> DoraConfig:
        c = LoRALinear.config_from_peft(d, file, modules_to_save)
        if c.init not in ("kaiming", "gaussian"):
            raise ValueError(
                f"{file}: use_dora=true with init_lora_weights={d.get('init_lora_weights')!r} is not "
                "supported; expected true or 'gaussian'"
            )
        return DoraConfig(c.r, c.alpha, c.dropout, c.targets, c.modules_to_save, c.use_rslora, c.init)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"alpha={self.alpha}, scaling={self.scaling:g}, dropout={self.lora_dropout.p}, "
            f"fused={self.fused}"
        )
