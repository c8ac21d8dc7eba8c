"""VeRA on nn.Linear layers (Kopiczko et al. 2024): shared frozen random projections, per-layer vectors."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minipeft import ops
from minipeft.adapter import adopt_linear
from minipeft.config import VeraConfig

SHARED_KEYS = ("base_model.vera_A", "base_model.vera_B")  # PEFT's keys of the shared pair


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(-bound, bound) with bound = √3 · gain / √fan_in, gain = √2 and fan_in = shape[1]: the draw
    PEFT's VeRA makes for its projections (float32, on the CPU, from `generator`)."""
    bound = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(shape[1]))
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class VeraProjections(nn.Module):
    """The pair every VeRA layer of a model shares: A (r, max in) and B (max out, r), frozen,
    drawn in that order from one CPU generator seeded with `projection_prng_key` (PEFT's draw, so a
    key reproduces PEFT's matrices bit for bit). Non-persistent buffers: they never enter the
    model's state_dict; the adapter file holds them as `base_model.vera_A` / `base_model.vera_B`."""

    ROLE = "vera"

    def __init__(
        self, r: int, max_in: int, max_out: int, key: int, save: bool = True, device=None, dtype=None
    ):
        super().__init__()
        gen = torch.Generator(device="cpu").manual_seed(key)
        self.key, self.save = key, save
        a = kaiming_uniform((r, max_in), gen)  # (r, max_in)
        b = kaiming_uniform((max_out, r), gen)  # (max_out, r)
        self.register_buffer("vera_A", a.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("vera_B", b.to(device=device, dtype=dtype), persistent=False)

    def check_fits(self, in_features: int, out_features: int, r: int, where: str) -> None:
        """Raise unless a layer (out_features, in_features) of rank r can use slices of A and B."""
        (ra, max_in), (max_out, rb) = self.vera_A.shape, self.vera_B.shape
        if in_features > max_in or out_features > max_out or r != ra or r != rb:
            raise ValueError(
                f"{where}: VeRA layer (out={out_features}, in={in_features}, r={r}) cannot share "
                f"vera_A {tuple(self.vera_A.shape)} / vera_B {tuple(self.vera_B.shape)}, which must be at "
                "least (r, in) / (out, r) with the same r. Inject VeRA once, on all targets together, or "
                "load projections made for this model"
            )

    def extra_repr(self) -> str:
        return f"vera_A={tuple(self.vera_A.shape)}, vera_B={tuple(self.vera_B.shape)}, key={self.key}"


class VeRALinear(nn.Module):
    """A frozen linear layer plus a VeRA update through the shared frozen projections A, B:

        y = x Wᵀ + b + λ_b ⊙ (B[:out] (λ_d ⊙ (A[:, :in] dropout(x))))

    i.e. ΔW = diag(λ_b) B[:out] diag(λ_d) A[:, :in]. Only λ_d (r,) (init d_initial, 0.1) and
    λ_b (out,) (init 0, so the layer starts equal to its base) train. The shared VeraProjections
    module is registered in every layer (named_modules lists it once, under the first path).
    """

    ROLE = "vera"
    ADAPTER_PARAMS = ("vera_lambda_b", "vera_lambda_d")
    ADAPTER_BUFFERS = ("vera.vera_A", "vera.vera_B")  # the shared frozen pair
    PEFT_TYPE = "VERA"
    PEFT_MARKERS = {}
    PEFT_REQUIRED = ("r", "target_modules")
    PEFT_OPTIONAL = ("vera_dropout", "d_initial", "projection_prng_key", "save_projection", "init_weights")

    def __init__(
        self,
        base: nn.Linear,
        projections: VeraProjections,
        r: int,
        dropout: float = 0.0,
        d_initial: float = 0.1,
        fused: bool = True,
    ):
        super().__init__()
        adopt_linear(self, base)
        projections.check_fits(self.in_features, self.out_features, r, type(base).__name__)
        self.r, self.fused, self.disabled = r, fused, False
        self.vera = projections
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_features, **like))  # (out,)
        self.vera_lambda_d = nn.Parameter(torch.full((r,), float(d_initial), **like))  # (r,)
        self.vera_dropout = nn.Dropout(dropout)

    @classmethod
    def from_targets(cls, bases: dict[str, nn.Linear], config: VeraConfig) -> dict[str, VeRALinear]:
        """One layer per target path, all sharing one VeraProjections sized (r, max in) / (max out, r)
        over the targets (PEFT's rule: each layer uses the leading slices)."""
        first = next(iter(bases.values())).weight
        shared = VeraProjections(
            config.r,
            max(b.in_features for b in bases.values()),
            max(b.out_features for b in bases.values()),
            config.projection_prng_key,
            config.save_projection,
            device=first.device,
            dtype=first.dtype,
        )
        return {
            p: cls(b, shared, config.r, config.dropout, config.d_initial, config.fused)
            for p, b in bases.items()
        }

    @classmethod
    def from_config(cls, base: nn.Linear, path: str, config: VeraConfig) -> VeRALinear:
        return cls.from_targets({path: base}, config)[path]

    def projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A[:, :in] (r, in), B[:out] (out, r)): this layer's slices of the shared pair."""
        return self.vera.vera_A[:, : self.in_features], self.vera.vera_B[: self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.disabled:
            return F.linear(x, self.weight, self.bias)
        A, B = self.projections()
        if self.fused:
            lora_A = A * self.vera_lambda_d[:, None]  # (r, in): diag(λ_d) A, through autograd
            lora_B = B * self.vera_lambda_b[:, None]  # (out, r): diag(λ_b) B
            return ops.lora_linear(
                x, self.weight, self.bias, lora_A, lora_B, 1.0, self.vera_dropout.p, self.training
            )
        h = self.vera_lambda_d * F.linear(self.vera_dropout(x), A)  # (..., r)
        return F.linear(x, self.weight, self.bias) + self.vera_lambda_b * F.linear(h, B)  # (..., out)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """ΔW = diag(λ_b) B[:out] diag(λ_d) A[:, :in], (out, in), in fp32."""
        A, B = (t.float() for t in self.projections())
        return (self.vera_lambda_b.float()[:, None] * B) @ (self.vera_lambda_d.float()[:, None] * A)

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W + ΔW, b): in fp32, cast back to W's dtype; the bias is unchanged."""
        return (self.weight.float() + self.delta_weight()).to(self.weight.dtype), self.bias

    def peft_tensors(self) -> dict[str, torch.Tensor]:
        return {"vera_lambda_b": self.vera_lambda_b, "vera_lambda_d": self.vera_lambda_d}  # (out,), (r,)

    @torch.no_grad()
    def load_peft_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.vera_lambda_b.copy_(tensors["vera_lambda_b"])
        self.vera_lambda_d.copy_(tensors["vera_lambda_d"])

    def peft_shared_tensors(self) -> dict[str, torch.Tensor]:
        """{full file key: tensor} of the shared pair (empty with save_projection=False)."""
        return dict(zip(SHARED_KEYS, (self.vera.vera_A, self.vera.vera_B))) if self.vera.save else {}

    @torch.no_grad()
    def load_peft_shared(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy the file's pair in (shapes already checked); PEFT draws them as here, so they match
        a pair drawn from the same key unless the file was edited."""
        self.vera.vera_A.copy_(tensors[SHARED_KEYS[0]])
        self.vera.vera_B.copy_(tensors[SHARED_KEYS[1]])

    @staticmethod
    def peft_config(config: VeraConfig) -> dict:
        return {
            "r": config.r,
            "vera_dropout": config.dropout,
            "d_initial": config.d_initial,
            "projection_prng_key": config.projection_prng_key,
            "save_projection": config.save_projection,
            "init_weights": True,
            "bias": "none",
            "layers_to_transform": None,
            "layers_pattern": None,
        }

    @staticmethod
    def config_from_peft(d: dict, file: Path, modules_to_save: tuple[str, ...]) -> VeraConfig:
        return VeraConfig(
            r=d["r"],
            targets=d["target_modules"],
            dropout=d.get("vera_dropout", 0.0),
            d_initial=d.get("d_initial", 0.1),
            projection_prng_key=d.get("projection_prng_key", 0),
            save_projection=bool(d.get("save_projection", True)),
            modules_to_save=modules_to_save,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"dropout={self.vera_dropout.p}, fused={self.fused}"
        )
