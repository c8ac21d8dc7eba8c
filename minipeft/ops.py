"""Adapter ops: the one place the fused paths live.

Placeholder implementations by composition (correct, not yet memory-optimised); the fused
autograd Functions of issue 6 replace the bodies, keeping these signatures.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lora_linear(x, weight, bias, lora_A, lora_B, scaling: float, dropout: float, training: bool):
    """y = x Wᵀ + b + scaling · dropout(x) Aᵀ Bᵀ.  x (..., in), W (out, in), A (r, in), B (out, r)."""
    dropped = F.dropout(x, dropout, training) if dropout > 0 else x
    return F.linear(x, weight, bias) + scaling * F.linear(F.linear(dropped, lora_A), lora_B)


def ia3_linear(x, weight, bias, scale, feedforward: bool):
    """IA³: feed-forward targets scale the input, (x ⊙ l) Wᵀ + b; others the output, (x Wᵀ + b) ⊙ l.

    `scale` is 1-D: (in,) when feedforward, else (out,)."""
    if feedforward:
        return F.linear(x * scale, weight, bias)
    return F.linear(x, weight, bias) * scale
