"""LoRA around one nn.Linear (Hu et al. 2021), with PEFT's defaults and initialisation."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops
from minipeft.adapter import adopt_linear
from minipeft.config import LoraConfig

# PEFT's init_lora_weights -> ours. False (B random) loads fine: the values come from the file.
PEFT_INITS = {True: "kaiming", False: "kaiming", "gaussian": "gaussian"}


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update:

        y = x Wᵀ + b + (alpha/r) · dropout(x) Aᵀ Bᵀ        (alpha/√r with rsLoRA)

    W (out, in) and b are the base layer's own Parameters, registered here under the same names
    `weight` / `bias`, so the base's state-dict keys do not change; A (r, in) starts
    kaiming-uniform(a=√5), B (out, r) at zero, so the layer starts equal to its base. The
    untouched base nn.Linear is kept (unregistered) in `base`, for `remove()`.
    An AdapterLayer (minipeft.adapter), registered in minipeft.registry.
    """

    ROLE = "lora"
    ADAPTER_PARAMS = ("lora_A", "lora_B")
    PEFT_TYPE = "LORA"
    PEFT_MARKERS = {}
    PEFT_REQUIRED = ("r", "lora_alpha", "lora_dropout", "target_modules")
    PEFT_OPTIONAL = ("use_rslora",)

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

    @classmethod
    def from_config(cls, base: nn.Linear, path: str, config: LoraConfig) -> LoRALinear:
        c = config
        return cls(base, c.r, c.alpha, c.dropout, c.use_rslora, c.init, c.fused)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · B A, (out, in), in fp32."""
        return self.scaling * (self.lora_B.float() @ self.lora_A.float())  # (out, in)

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W + s · B A, b): computed in fp32, cast back to W's dtype; the bias is unchanged."""
        return (self.weight.float() + self.delta_weight()).to(self.weight.dtype), self.bias

    def peft_tensors(self) -> dict[str, torch.Tensor]:
        return {"lora_A.weight": self.lora_A, "lora_B.weight": self.lora_B}  # (r, in), (out, r)

    @torch.no_grad()
    def load_peft_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.lora_A.copy_(tensors["lora_A.weight"])
        self.lora_B.copy_(tensors["lora_B.weight"])

    @staticmethod
    def peft_config(config: LoraConfig) -> dict:
        return {
            "r": config.r,
            "lora_alpha": config.alpha,
            "lora_dropout": config.dropout,
            "use_rslora": config.use_rslora,
            "bias": "none",
            "init_lora_weights": True if config.init == "kaiming" else config.init,
            "use_dora": False,
            "lora_bias": False,
            "rank_pattern": {},
            "alpha_pattern": {},
            "layers_to_transform": None,
            "layers_pattern": None,
            "loftq_config": {},
            "megatron_config": None,
            "megatron_core": "megatron.core",
            "layer_replication": None,
        }

    @staticmethod
    def config_from_peft(d: dict, file: Path, modules_to_save: tuple[str, ...]) -> LoraConfig:
        init = d.get("init_lora_weights", True)
        if init not in PEFT_INITS:
            raise ValueError(
                f"{file}: init_lora_weights={init!r} is not supported (PiSSA/OLoRA/LoftQ/... change "
                f"the base weights too); expected one of {list(PEFT_INITS)}"
            )
        return LoraConfig(
            r=d["r"],
            alpha=d["lora_alpha"],
            dropout=d["lora_dropout"],
            targets=d["target_modules"],
            modules_to_save=modules_to_save,
            use_rslora=bool(d.get("use_rslora", False)),
            init=PEFT_INITS[init],
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"alpha={self.alpha}, scaling={self.scaling:g}, dropout={self.lora_dropout.p}, "
            f"fused={self.fused}"
        )
