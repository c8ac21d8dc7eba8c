"""Multi-head scaled dot-product attention with a padding mask.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,   M = 0 where the key is a token, -inf at padding

Inference, and training without attention dropout, run in `torch.nn.functional.scaled_dot_product_attention`:
this file splits and merges heads and turns the (batch, seq) 0/1 padding mask into the boolean key
mask SDPA expects. Training with dropout on a CPU runs `recompute_attention` (below) when the model
asks for it (`recompute_attention` in the model config, True by default), which keeps q, k, v and
the random generator's state for backward instead of the (b, n, tq, tk) probabilities.

Device rules (docs/cuda.md): nothing here reads a tensor's value into Python. The key mask is
always built when a padding mask is given (no `.all()` test for "no padding"), and the dropout
mask of the recompute path is regenerated from the saved generator state, not from a seed read
with `.item()`. Under `torch.compile` attention is always SDPA, which the compiler traces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.dropout import random_lanes


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, t, h = x.shape  # (batch, seq, hidden)
    return x.view(b, t, num_heads, h // num_heads).transpose(1, 2)  # (batch, heads, seq, head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, t, d = x.shape  # (batch, heads, seq, head_dim)
    return x.transpose(1, 2).reshape(b, t, n * d)  # (batch, seq, hidden)


def key_mask(attention_mask: torch.Tensor | None, prefix_len: int = 0) -> torch.Tensor | None:
    """(batch, keys) 0/1 mask -> (batch, 1, 1, prefix + keys) boolean mask, True = attend.

    `prefix_len` extra always-visible keys are prepended (learned key/value prefixes). A mask
    without padding is kept too: testing for that would read a value into Python (a host
    synchronisation on a GPU, a graph break under torch.compile); collate may pass None instead."""
    if attention_mask is None:
        return None
    keep = attention_mask.bool()  # (batch, keys)
    if prefix_len:
        ones = keep.new_ones(keep.shape[0], prefix_len)
        keep = torch.cat([ones, keep], dim=1)  # (batch, prefix + keys)
    return keep[:, None, None, :]  # (batch, 1, 1, keys)


def with_prefix(k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor | None, prefix_kv=None):
    """(k, v, boolean key mask) with a (key, value) pair of (batch, heads, prefix, head_dim) tensors
    prepended to the keys and values; the mask grows by as many always-visible positions.
    Without `prefix_kv` it is (k, v, key_mask(attention_mask))."""
    if prefix_kv is None:
        return k, v, key_mask(attention_mask)
    pk, pv = prefix_kv  # (batch, heads, prefix, head_dim)
    if attention_mask is None:
        attention_mask = k.new_ones((k.shape[0], k.shape[2]), dtype=torch.long)  # (batch, seq)
    k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)  # (batch, heads, prefix + seq, head_dim)
    return k, v, key_mask(attention_mask, pk.shape[2])  # mask (batch, 1, 1, prefix + seq)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float = 0.0,
    recompute: bool = False,
) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) v over heads; q (b, n, tq, d), k and v (b, n, tk, d), mask bool
    broadcastable to (b, n, tq, tk) or None. `dropout_p` is applied to the probabilities (pass 0 in eval).

    `recompute` routes training with dropout on a CPU to `recompute_attention` (the encoders pass
    their config's `recompute_attention`). Elsewhere SDPA runs: its fused kernels already recompute
    without dropout, and with it on CUDA; under torch.compile the compiler decides what to keep."""
    if (
        recompute
        and dropout_p > 0
        and torch.is_grad_enabled()
        and q.device.type == "cpu"
        and not torch.compiler.is_compiling()
    ):
        return recompute_attention(q, k, v, mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (b, n, tq, d)


# ---- memory-saving variant: backward recomputes the probabilities (as flash attention does) ----------
# Plain attention with dropout keeps the probabilities, the dropout mask and the dropped probabilities
# for backward, three (b, n, tq, tk) tensors per layer, growing with the square of the length. This
# variant keeps q, k, v, the mask and the random generator's state; backward recomputes
# softmax(q kᵀ/√d + M) and regenerates the dropout mask from the generator state. Selected by
# `attention(..., recompute=...)`; the encoders' default (config field `recompute_attention`, True)
# is set from benchmarks/train_step.py numbers (see that file's docstring).
#
# Both directions work through the (batch · heads) rows a block at a time, a block holding about
# BLOCK_ELEMENTS scores (1 MiB in fp32): the scores, probabilities, mask and their gradients of one
# block stay in a core's cache through the five or so elementwise passes over them, instead of
# streaming (b, n, tq, tk) tensors through main memory once per pass.
BLOCK_ELEMENTS = 1 << 18


def _blocks(b: int, n: int, tq: int, tk: int):
    """(b0, b1, h0, h1) blocks of (batch, head) rows covering (b, n), each about BLOCK_ELEMENTS
    scores: whole batch elements when a batch element's n·tq·tk scores fit, else runs of heads."""
    heads = max(1, BLOCK_ELEMENTS // (tq * tk))
    if heads >= n:
        per = heads // n
        return [(b0, min(b0 + per, b), 0, n) for b0 in range(0, b, per)]
    return [(b0, b0 + 1, h0, min(h0 + heads, n)) for b0 in range(b) for h0 in range(0, n, heads)]


def _additive(mask, dtype):
    """The mask as a 4-D additive float tensor (0 attend, -inf not), or None."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:  # a broadcast add_ is ~5× cheaper than masked_fill_
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    return mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # broadcastable to (b, n, tq, tk)


def _rows(x, blk):
    """The block's (rows, t, d) slice of a (b, n, t, d) tensor: a view when the block lies inside one
    batch element (whatever the head and sequence strides, e.g. the transposed view `split_heads`
    makes), else a block-sized copy (short sequences, several batch elements per block)."""
    b0, b1, h0, h1 = blk
    return x[b0:b1, h0:h1].reshape(-1, x.shape[2], x.shape[3])


def _put(dst, blk, src):
    """Write a block's (rows, t, d) result into its place in the (b, n, t, d) tensor `dst`."""
    b0, b1, h0, h1 = blk
    dst[b0:b1, h0:h1].copy_(src.view(b1 - b0, h1 - h0, *src.shape[1:]))


def _head_major(b, n, t, d, like):
    """A fresh (b, n, t, d) tensor laid out as (b, t, n, d) in memory, so that `merge_heads` of it, and
    the gradient `split_heads` hands back, are views rather than copies."""
    return torch.empty(b, t, n, d, dtype=like.dtype, device=like.device).transpose(1, 2)


def _block_probs(q, k, add, blk, scale):
    """softmax(q kᵀ·scale + M) for one block; (rows, tq, tk)."""
    b0, b1, h0, h1 = blk
    qb, kb = _rows(q, blk), _rows(k, blk)  # (rows, t, d)
    s = torch.empty(qb.shape[0], qb.shape[1], kb.shape[1], dtype=q.dtype, device=q.device)
    s.baddbmm_(qb, kb.transpose(1, 2), beta=0, alpha=scale)  # (rows, tq, tk)
    if add is not None:
        bs = slice(b0, b1) if add.shape[0] > 1 else slice(0, 1)
        hs = slice(h0, h1) if add.shape[1] > 1 else slice(0, 1)
        s.view(b1 - b0, h1 - h0, *s.shape[1:]).add_(add[bs, hs])
    return torch.softmax(s, dim=-1)


def _generator(device: torch.device, state=None) -> torch.Generator:
    """The default generator of `device` (state None), or a private one set to `state`."""
    if state is not None:
        g = torch.Generator(device=device)
        g.set_state(state)
        return g
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else 0]
    raise ValueError(
        f"recompute_attention: no default generator known for device {device.type!r}; "
        f"call attention(..., recompute=False) there (SDPA)"
    )


def _lanes(shape, p, generator, device):
    """models.dropout.random_lanes for the whole (b, n, tq, tk) tensor, drawn once from `generator`:
    (int16 lanes viewed as (b·n, tq, tk), threshold, keep_scale)."""
    lanes, threshold, keep_scale = random_lanes(shape, p, device, generator=generator)
    return lanes.view(-1, shape[2], shape[3]), threshold, keep_scale


def _keep(lanes, threshold, blk, n, like):
    """The 0/1 keep mask of one block in the probabilities' dtype (a mixed uint8 multiply is a slow
    casting loop)."""
    b0, b1, h0, h1 = blk
    return torch.ge(lanes[b0 * n + h0 : (b1 - 1) * n + h1], threshold, out=torch.empty_like(like))


class _RecomputeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, dropout_p, rng_state):
        """rng_state None: draw the dropout mask from the device's default generator and keep its
        state before the draw (a small CPU tensor) for backward; else draw from that state."""
        b, n, tq, d = q.shape
        tk = k.shape[2]
        add = _additive(mask, q.dtype)
        lanes = None
        if dropout_p > 0:
            gen = _generator(q.device, rng_state)
            rng_state = gen.get_state() if rng_state is None else rng_state
            lanes = _lanes((b, n, tq, tk), dropout_p, gen, q.device)
        keep_scale = 1.0 if lanes is None else lanes[2]
        out = _head_major(b, n, tq, d, q)  # (b, n, tq, d)
        for blk in _blocks(b, n, tq, tk):
            probs = _block_probs(q, k, add, blk, d**-0.5)  # (rows, tq, tk)
            if lanes is not None:
                probs.mul_(_keep(lanes[0], lanes[1], blk, n, probs))
            o = torch.empty(probs.shape[0], tq, d, dtype=q.dtype, device=q.device)
            _put(out, blk, o.baddbmm_(probs, _rows(v, blk), beta=0, alpha=keep_scale))
        ctx.save_for_backward(q, k, v, mask)
        ctx.dropout_p, ctx.rng_state = dropout_p, rng_state
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, mask = ctx.saved_tensors
        b, n, tq, d = q.shape
        tk = k.shape[2]
        scale = d**-0.5
        add = _additive(mask, q.dtype)
        lanes = None
        if ctx.dropout_p > 0:  # the forward's mask, redrawn from the generator state it started from
            lanes = _lanes((b, n, tq, tk), ctx.dropout_p, _generator(q.device, ctx.rng_state), q.device)
        keep_scale = 1.0 if lanes is None else lanes[2]
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dq = _head_major(b, n, tq, d, q) if need_q else None  # (b, n, tq, d)
        dk = _head_major(b, n, tk, d, k) if need_k else None  # (b, n, tk, d)
        dv = _head_major(b, n, tk, d, v) if need_v else None
        new = lambda rows, t: torch.empty(rows, t, d, dtype=q.dtype, device=q.device)
        for blk in _blocks(b, n, tq, tk):
            probs = _block_probs(q, k, add, blk, scale)  # (rows, tq, tk)
            keep = None if lanes is None else _keep(lanes[0], lanes[1], blk, n, probs)
            do = _rows(dout, blk)  # (rows, tq, d)
            rows = probs.shape[0]
            dp = torch.empty_like(probs).baddbmm_(do, _rows(v, blk).transpose(1, 2), beta=0, alpha=keep_scale)
            if need_v:  # dv = (P ⊙ m)ᵀ dout / (1-p')
                pd = probs if keep is None else probs * keep
                _put(dv, blk, new(rows, tk).baddbmm_(pd.transpose(1, 2), do, beta=0, alpha=keep_scale))
            if keep is not None:
                dp.mul_(keep)  # ∂/∂probs
            # softmax backward, ds = P ⊙ (dP − rowsum(dP ⊙ P)), in ATen's fused kernel (the one autograd
            # uses for softmax); the 1/√d of the scores goes into the products below
            ds = torch._softmax_backward_data(dp, probs, -1, probs.dtype)  # (rows, tq, tk)
            if need_q:
                _put(dq, blk, new(rows, tq).baddbmm_(ds, _rows(k, blk), beta=0, alpha=scale))
            if need_k:
                _put(dk, blk, new(rows, tk).baddbmm_(ds.transpose(1, 2), _rows(q, blk), beta=0, alpha=scale))
        return dq, dk, dv, None, None, None


def recompute_attention(q, k, v, mask, dropout_p: float = 0.0):
    """Same value as `attention`, keeping only q, k, v, the mask and a generator state for backward.

    The dropout mask is drawn from the default generator of q's device, so `torch.manual_seed`
    reproduces it (a different random stream from SDPA's); backward redraws it from a private
    generator set to the state the forward started from. No value is read into Python."""
    return _RecomputeAttention.apply(q, k, v, mask, float(dropout_p), None)
