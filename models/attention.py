"""Multi-head scaled dot-product attention with a padding mask.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,   M = 0 where the key is a token, -inf at padding

The math runs in `torch.nn.functional.scaled_dot_product_attention`; this file only splits and merges
heads and turns the (batch, seq) 0/1 padding mask into the boolean key mask SDPA expects.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, t, h = x.shape                                                      # (batch, seq, hidden)
    return x.view(b, t, num_heads, h // num_heads).transpose(1, 2)         # (batch, heads, seq, head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, t, d = x.shape                                                   # (batch, heads, seq, head_dim)
    return x.transpose(1, 2).reshape(b, t, n * d)                          # (batch, seq, hidden)


def key_mask(attention_mask: Optional[torch.Tensor], prefix_len: int = 0) -> Optional[torch.Tensor]:
    """(batch, keys) 0/1 mask -> (batch, 1, 1, prefix + keys) boolean mask, True = attend.

    `prefix_len` extra always-visible keys are prepended (learned key/value prefixes)."""
    if attention_mask is None:
        return None
    keep = attention_mask.bool()                                           # (batch, keys)
    if prefix_len:
        ones = keep.new_ones(keep.shape[0], prefix_len)
        keep = torch.cat([ones, keep], dim=1)                              # (batch, prefix + keys)
    return keep[:, None, None, :]                                          # (batch, 1, 1, keys)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
              dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v over heads; q (b, n, tq, d), k and v (b, n, tk, d), mask bool
    broadcastable to (b, n, tq, tk) or None. `dropout_p` is applied to the probabilities (pass 0 in eval)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (b, n, tq, d)
