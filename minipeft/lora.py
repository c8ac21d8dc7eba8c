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
from minipeft.lora_init import residual_init

# PEFT's init_lora_weights -> ours. False (B random) loads fine: the values come from the file.
# "pissa"/"olora": a file saved by PEFT without conversion; loading re-runs the init on the
# pretrained base (as PEFT does), then the trained A, B replace A₀, B₀.
PEFT_INITS = {True: "kaiming", False: "kaiming", "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def add_low_rank_pair(
    layer: nn.Module, r: int, alpha: float, dropout: float, use_rslora: bool, init: str
) -> bool:
    """Give `layer` (after adopt_linear) LoRA's low-rank pair, shared by LoRALinear and DoRALinear:
    s = alpha/r (alpha/√r with rsLoRA), A (r, in), B (out, r) = 0, dropout on the input. A starts
    kaiming-uniform(a=√5) for init="kaiming" or N(0, (1/r)²) for "gaussian" (PEFT's two plain inits);
    for any other init A is left uninitialised and False is returned: the caller sets it or refuses."""
    layer.r, layer.alpha, layer.use_rslora = r, alpha, use_rslora
    layer.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
    like = dict(device=layer.weight.device, dtype=layer.weight.dtype)
    layer.lora_A = nn.Parameter(torch.empty(r, layer.in_features, **like))  # (r, in)
    layer.lora_B = nn.Parameter(torch.zeros(layer.out_features, r, **like))  # (out, r)
    layer.lora_dropout = nn.Dropout(dropout)
    if init == "kaiming":
        nn.init.kaiming_uniform_(layer.lora_A, a=math.sqrt(5))
    elif init == "gaussian":
        nn.init.normal_(layer.lora_A, std=1 / r)
    else:
        return False
    return True


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

    PEFT stores W - s·B₀A₀ in the base instead: the same function, but a changed base. Saved, such
    a layer is PEFT's rank-2r conversion (`update_factors`), a plain LoRA against the untouched W.
    An AdapterLayer (minipeft.adapter), registered in minipeft.registry.
    """

    ROLE = "lora"
    ADAPTER_PARAMS = ("lora_A", "lora_B")
    ADAPTER_BUFFERS = ("lora_A0", "lora_B0")  # frozen A₀, B₀ of pissa/olora (None otherwise)
    LORAPLUS_B = ("lora_B",)  # LoRA+: learns at lr × loraplus_ratio (minipeft.training.optim)
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
        self.fused, self.init = fused, init
        self.register_buffer("lora_A0", None, persistent=False)  # (r, in) for pissa/olora, else None
        self.register_buffer("lora_B0", None, persistent=False)  # (out, r)
        if add_low_rank_pair(self, r, alpha, dropout, use_rslora, init):
            return  # kaiming or gaussian
        if init not in ("pissa", "olora"):
            raise ValueError(
                f"LoRALinear init must be 'kaiming', 'gaussian', 'pissa' or 'olora', found {init!r}"
            )
        self.lora_A0, self.lora_B0 = residual_init(init, base.weight.detach(), r, self.scaling)
        with torch.no_grad():
            self.lora_A.copy_(self.lora_A0)
            self.lora_B.copy_(self.lora_B0)

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

    @classmethod
    def from_config(cls, base: nn.Linear, path: str, config: LoraConfig) -> LoRALinear:
        c = config
        return cls(base, c.r, c.alpha, c.dropout, c.use_rslora, c.init, c.fused)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · (B A - B₀A₀), (out, in), in fp32 (B₀A₀ = 0 unless pissa/olora)."""
        delta = self.lora_B.float() @ self.lora_A.float()  # (out, in)
        if self.lora_A0 is not None:
            delta -= self.lora_B0.float() @ self.lora_A0.float()
        return self.scaling * delta

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W + ΔW, b): computed in fp32, cast back to W's dtype; the bias is unchanged."""
        return (self.weight.float() + self.delta_weight()).to(self.weight.dtype), self.bias

    def update_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A', B') of the plain LoRA with the same scaling s and ΔW = s·B'A': (A, B), or for
        pissa/olora PEFT's rank-2r conversion A' = [A; A₀] (2r, in), B' = [B, -B₀] (out, 2r)."""
        if self.lora_A0 is None:
            return self.lora_A, self.lora_B
        A = torch.cat([self.lora_A.detach(), self.lora_A0], dim=0)  # (2r, in)
        B = torch.cat([self.lora_B.detach(), -self.lora_B0], dim=1)  # (out, 2r)
        return A, B

    def peft_tensors(self) -> dict[str, torch.Tensor]:
        """What save_adapter writes: A, B (r, in), (out, r); pissa/olora as PEFT's rank-2r conversion."""
        A, B = self.update_factors()
        return {"lora_A.weight": A, "lora_B.weight": B}

    @staticmethod
    def manifest_record(config: LoraConfig) -> dict:
        """For the audit: the init the saved (converted) file no longer shows."""
        if config.init not in ("pissa", "olora"):
            return {}
        return {
            "init": config.init,
            "rank": config.r,
            "saved_as": f"plain LoRA of rank {2 * config.r} against the untouched base "
            "(PEFT's path_initial_model_for_weight_conversion)",
        }

    def peft_expected(self) -> dict[str, torch.Tensor]:
        """What a file loading into this layer holds: A, B at rank r (a pissa/olora file saved by
        PEFT without conversion holds the trained A, B; A₀, B₀ are recomputed from W)."""
        return {"lora_A.weight": self.lora_A, "lora_B.weight": self.lora_B}

    @torch.no_grad()
    def load_peft_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.lora_A.copy_(tensors["lora_A.weight"])
        self.lora_B.copy_(tensors["lora_B.weight"])

    @staticmethod
    def peft_config(config: LoraConfig) -> dict:
        """PEFT's fields; pissa/olora as PEFT's conversion writes them: r and alpha doubled (alpha
        ×√2 with rsLoRA, so the scaling is kept), init_lora_weights=True."""
        r, alpha, init = config.r, config.alpha, config.init
        if init in ("pissa", "olora"):
            r, alpha, init = 2 * r, alpha * (math.sqrt(2) if config.use_rslora else 2), "kaiming"
        return {
            "r": r,
            "lora_alpha": alpha,
            "lora_dropout": config.dropout,
            "use_rslora": config.use_rslora,
            "bias": "none",
            "init_lora_weights": True if init == "kaiming" else init,
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
                f"{file}: init_lora_weights={init!r} is not supported (LoftQ/CorDA/EVA/... change "
                f"the base weights too); expected one of {list(PEFT_INITS)}. Save it from PEFT with "
                "path_initial_model_for_weight_conversion to get a plain LoRA"
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
            f"init={self.init}, fused={self.fused}"
        )
