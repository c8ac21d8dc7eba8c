"""Multi-head scaled dot-product attention with a padding mask.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,   M = 0 where the key is a token, -inf at padding

The math runs in `torch.nn.functional.scaled_dot_product_attention`; this file only splits and merges
heads and turns the (batch, seq) 0/1 padding mask into the boolean key mask SDPA expects.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from models.dropout import keep_mask


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


def with_prefix(k: torch.Tensor, v: torch.Tensor, attention_mask: Optional[torch.Tensor], prefix_kv=None):
    """(k, v, boolean key mask) with a (key, value) pair of (batch, heads, prefix, head_dim) tensors
    prepended to the keys and values; the mask grows by as many always-visible positions.
    Without `prefix_kv` it is (k, v, key_mask(attention_mask))."""
    if prefix_kv is None:
        return k, v, key_mask(attention_mask)
    pk, pv = prefix_kv                                                     # (batch, heads, prefix, head_dim)
    if attention_mask is None:
        attention_mask = k.new_ones((k.shape[0], k.shape[2]), dtype=torch.long)  # (batch, seq)
    k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)            # (batch, heads, prefix + seq, head_dim)
    return k, v, key_mask(attention_mask, pk.shape[2])                     # mask (batch, 1, 1, prefix + seq)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
              dropout_p: float = 0.0, recompute: Optional[bool] = None) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v over heads; q (b, n, tq, d), k and v (b, n, tk, d), mask bool
    broadcastable to (b, n, tq, tk) or None. `dropout_p` is applied to the probabilities (pass 0 in eval).

    `recompute` (default `RECOMPUTE_BACKWARD` on CPU, False elsewhere) routes training with dropout to
    `recompute_attention`; SDPA's fused kernels already recompute without dropout, and with it on CUDA."""
    if recompute is None:
        recompute = RECOMPUTE_BACKWARD and q.device.type == "cpu"
    if recompute and dropout_p > 0 and torch.is_grad_enabled():
        return recompute_attention(q, k, v, mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (b, n, tq, d)


# ---- memory-saving variant: backward recomputes the probabilities (as flash attention does) ----------
# Plain attention with dropout keeps the probabilities, the dropout mask and the dropped probabilities
# for backward, three (b, n, tq, tk) tensors per layer, growing with the square of the length. This
# variant keeps q, k, v, the mask and one integer seed; backward recomputes softmax(q kᵀ/√d + M) and
# regenerates the dropout mask from the seed. Selected by `attention(..., recompute=...)`; the default
# `RECOMPUTE_BACKWARD` is set from benchmarks/train_step.py numbers (see that file's docstring).
RECOMPUTE_BACKWARD = True


def _probs(q, k, mask):
    """softmax(q kᵀ / √d + M) with M from a bool (True = attend) or an additive float mask."""
    s = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)                    # (b, n, tq, tk)
    if mask is not None:
        if mask.dtype == torch.bool:  # additive form: a broadcast add_ is ~5× cheaper than masked_fill_
            mask = torch.zeros(mask.shape, dtype=s.dtype, device=s.device).masked_fill_(~mask, float("-inf"))
        s.add_(mask)
    return torch.softmax(s, dim=-1)                                        # (b, n, tq, tk)


def _keep_mask(shape, p, seed, device):
    """(keep uint8 0/1, keep_scale), regenerated bit for bit from `seed` on a private generator
    (models.dropout.keep_mask: 16-bit lanes of int64 draws, p rounded to a multiple of 2⁻¹⁶)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return keep_mask(shape, p, device, generator=g)                        # (b, n, tq, tk)


class _RecomputeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, dropout_p, seed):
        probs = _probs(q, k, mask)                                         # (b, n, tq, tk)
        ctx.save_for_backward(q, k, v, mask)
        ctx.dropout_p, ctx.seed = dropout_p, seed
        if dropout_p == 0:
            return probs @ v                                               # (b, n, tq, d)
        keep, keep_scale = _keep_mask(probs.shape, dropout_p, seed, q.device)
        return (probs.mul_(keep) @ v).mul_(keep_scale)                     # 1/(1-p) on the small side

    @staticmethod
    def backward(ctx, dout):
        q, k, v, mask = ctx.saved_tensors
        p_drop, scale = ctx.dropout_p, q.shape[-1] ** -0.5
        probs = _probs(q, k, mask)                                         # (b, n, tq, tk)
        keep = None
        if p_drop > 0:
            keep, keep_scale = _keep_mask(probs.shape, p_drop, ctx.seed, q.device)
            dout = dout * keep_scale                                       # (b, n, tq, d)
        dp = dout @ v.transpose(-1, -2)                                    # (b, n, tq, tk) ∂/∂(dropped probs)
        dv = None
        if ctx.needs_input_grad[2]:
            dropped = probs if keep is None else probs * keep              # (b, n, tq, tk)
            dv = dropped.transpose(-1, -2) @ dout                          # (b, n, tk, d)
            del dropped
        if keep is not None:
            dp.mul_(keep)                                                  # ∂/∂probs
        del keep
        # softmax backward: ds = P ⊙ (dP − rowsum(dP ⊙ P)), then the 1/√d of the scores
        ds = dp.sub_((dp * probs).sum(-1, keepdim=True)).mul_(probs)      # (b, n, tq, tk)
        dq = (ds @ k).mul_(scale) if ctx.needs_input_grad[0] else None     # (b, n, tq, d)
        dk = (ds.transpose(-1, -2) @ q).mul_(scale) if ctx.needs_input_grad[1] else None  # (b, n, tk, d)
        return dq, dk, dv, None, None, None


def recompute_attention(q, k, v, mask, dropout_p: float = 0.0):
    """Same value as `attention`, keeping only q, k, v, the mask and a seed for backward.

    The dropout seed is drawn from the CPU default generator, so `torch.manual_seed`
    reproduces the mask (a different random stream from SDPA's)."""
    seed = int(torch.randint(0, 2**62, (), device="cpu").item()) if dropout_p > 0 else 0
    return _RecomputeAttention.apply(q, k, v, mask, float(dropout_p), seed)
