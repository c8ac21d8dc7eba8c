"""AdamW over the trainable parameters, and the linear warm-up/decay schedule.

Weight decay goes to matrices only: parameters of normalisation modules (LayerNorm, RMSNorm,
GroupNorm, BatchNorm...) and every parameter with fewer than 2 dimensions (biases, IA³ vectors)
get none. The decision reads module types and tensor shapes, never parameter names. (HF Trainer
decays IA³ vectors; we do not, since decay would pull a scaling that starts at 1 towards 0.)

Schedule (HF `get_linear_schedule_with_warmup`), for optimiser step s of T with W warm-up steps:

    factor(s) = s / max(1, W)                   if s < W
              = max(0, (T - s) / max(1, T - W))  otherwise,   lr_s = lr · factor(s)

with W = ceil(warmup_ratio · T). The step counter is the only state, so it lives in the JSON
checkpoint; no LambdaLR (its state_dict would need pickle for the lambda).

The update runs in PyTorch's fused AdamW kernel (`fused=True`) when every trainable parameter is a
floating-point tensor on a CPU or CUDA device: the same update as the default multi-tensor one, up
to float rounding, and on a CPU about 6× faster (`python -m benchmarks.train_step --optimizer
foreach` measures the difference: a large share of a full fine-tuning step). HF Trainer's default
is the same kernel for torch >= 2.8.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_NORM_TYPES = tuple(
    t
    for t in (
        nn.LayerNorm,
        getattr(nn, "RMSNorm", None),
        nn.GroupNorm,
        nn.modules.batchnorm._NormBase,
        nn.LocalResponseNorm,
    )
    if t is not None
)


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) for every parameter with requires_grad, shared ones listed once."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def no_decay_ids(model: nn.Module) -> set[int]:
    """ids of the parameters that get no weight decay: 1-D (or 0-D) tensors and norm-layer params."""
    ids = {id(p) for p in model.parameters() if p.ndim < 2}
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            ids |= {id(p) for p in module.parameters(recurse=False)}
    return ids


def fused_supported(params) -> bool:
    """Whether torch's fused AdamW kernel takes these parameters: floating point, on CPU or CUDA."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def build_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only: group 0 decays, group 1 does not; fused when
    `fused_supported`."""
    params = named_trainable(model)
    if not params:
        raise ValueError(
            "the model has no parameter with requires_grad=True; inject an adapter "
            "or unfreeze a head before training"
        )
    skip = no_decay_ids(model)
    decay = [p for _, p in params if id(p) not in skip]
    plain = [p for _, p in params if id(p) in skip]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    fused = fused_supported(p for _, p in params) or None  # None: torch's default
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(warmup_ratio * total_steps)


def linear_warmup_factor(step: int, total_steps: int, warmup: int) -> float:
    """The multiplier of the base learning rate at optimiser step `step` (0-based)."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
