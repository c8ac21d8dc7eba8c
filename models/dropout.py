"""Dropout with a 1-byte mask, a drop-in for `nn.Dropout` in the encoders.

    y = x ⊙ m / (1 − p'),   m_i ~ Bernoulli(1 − p'),   p' = round(p·2¹⁶) / 2¹⁶

`nn.Dropout` on a CPU draws a float mask with `bernoulli_` and keeps it (4 bytes per element) for
backward. This one compares 16-bit lanes of full-range int64 draws of the default generator (four
elements per draw, about 10× cheaper on a CPU) and keeps the mask as uint8 0/1 (1 byte per element).
It multiplies by the mask only after turning it into x's dtype: on a CPU, a mixed uint8 × float
multiply runs a slow casting loop; converting first and multiplying in one dtype is much cheaper.
The drop probability is rounded to a multiple of 2⁻¹⁶ (0.1 → 0.1000061). Same `p` attribute and
`train()`/`eval()` behaviour as `nn.Dropout`; a different random stream.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable


@torch.compiler.disable  # eager under torch.compile: a dtype-changing view of a fresh tensor is returned
def random_lanes(shape, p: float, device=None, generator=None):
    """(lanes, threshold, keep_scale): one signed 16-bit random lane per element of `shape` (four
    per full-range int64 draw), the threshold round(p·2¹⁶) − 2¹⁵ below which an element is dropped,
    and 1/(1 − p') with p' = round(p·2¹⁶)/2¹⁶."""
    t = min(round(p * 65536), 65535)
    n = 1
    for d in shape:
        n *= d
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(
        -(2**63), None, generator=generator
    )
    return bits.view(torch.int16)[:n].view(shape), t - 32768, 65536.0 / (65536 - t)  # (*shape) int16


def keep_mask(shape, p: float, device=None, generator=None):
    """(keep as uint8 0/1, keep_scale = 1/(1 − p')): 0 where a 16-bit lane of `random_lanes` falls
    below its threshold."""
    lanes, threshold, keep_scale = random_lanes(shape, p, device, generator)
    # written straight into uint8: the same 0/1 bytes as a bool result, by a faster CPU kernel
    # (benchmarks.ops)
    keep = torch.ge(lanes, threshold, out=torch.empty(lanes.shape, dtype=torch.uint8, device=lanes.device))
    return keep, keep_scale  # (*shape) uint8 0/1


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, keep, keep_scale):
        ctx.save_for_backward(keep)
        ctx.keep_scale = keep_scale
        return keep.to(x.dtype, copy=True).mul_(x).mul_(keep_scale)  # (*x.shape), one temporary

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (keep,) = ctx.saved_tensors
        return keep.to(dy.dtype, copy=True).mul_(dy).mul_(ctx.keep_scale), None, None


class Dropout(nn.Module):
    """y = x ⊙ m / (1 − p') in training, x in eval; the mask kept as 1 byte per element."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), found {p}; use a probability such as 0.1")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep, keep_scale = keep_mask(x.shape, self.p, x.device)  # (*x.shape) uint8
        return _Dropout.apply(x, keep, keep_scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"
