"""Adapter ops: the one place the fused paths live.

Both ops are `torch.autograd.Function`s built from `addmm`, so the same code maps onto cuBLAS on a
GPU and oneDNN/BLAS on a CPU. What they keep for backward is the point:

* `lora_linear` saves the input tensor object itself (never a copy: query, key and value read the
  same hidden states, so the three share one saved x), A, B, W, and, when dropout is active, the
  keep-mask as uint8 0/1 (1 byte per element). It never saves x·Aᵀ (recomputed, N·in·r flops)
  nor the dropped copy of x.
* `ia3_linear` with input scaling saves x (∂l needs it, as the plain path). With output scaling,
  ∂l needs y_base = x Wᵀ + b: the op keeps its own output y (which its consumer, attention, keeps
  anyway, so the storage is shared) and uses ∂l = Σ dy ⊙ y / l in backward: no extra GEMM, no
  extra (N, out) tensor. Entries with l = 0 exactly are recomputed from x, which is then kept too.
  (Recomputing y_base from x instead would cost one more GEMM per backward: measured slower.)
  Input scaling puts l on whichever of x or W is smaller. Output scaling multiplies the GEMM's
  fresh output in place, and backward forms dy ⊙ y (for ∂l) and then dy ⊙ l in one (N, out)
  buffer: the same two elementwise passes as the plain path, one temporary fewer. (Scaling W
  instead, an (out, in) copy in forward and again in backward, measured no faster.)

Dropout mask (fused path), see `dropout_mask`: 16 random bits per element, four elements per
64-bit draw of the default generator of x's device (about 10× cheaper on a CPU than `rand`), so
`torch.manual_seed` reproduces it. The drop probability is p rounded to a multiple of 2⁻¹⁶
(0.1 → 0.1000061) and the kept values are scaled by the matching 1/(1-p'). This is a different
random stream from `nn.Dropout`; compare runs of the same path.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def dropout_mask(shape, p: float, device=None, generator=None):
    """(keep, keep_scale): a uint8 0/1 tensor, 0 with probability p' = round(p·2¹⁶)/2¹⁶, and 1/(1-p').

    Each element compares 16 bits of a full-range int64 draw (four elements per draw). Kept as
    uint8 (1 byte per element); the op turns it into x's dtype before multiplying by it."""
    t = min(round(p * 65536), 65535)
    n = 1
    for d in shape:
        n *= d
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(
        -(2**63), None, generator=generator
    )
    lanes = bits.view(torch.int16)[:n].view(shape)  # (*shape) int16
    # compared straight into uint8: the same 0/1 bytes as a bool result, by a faster CPU kernel
    # (benchmarks.ops)
    keep = torch.ge(lanes, t - 32768, out=torch.empty(shape, dtype=torch.uint8, device=lanes.device))
    return keep, 65536.0 / (65536 - t)


def _autocast(x, *tensors):
    """(device type or None, tensors): under autocast, every floating tensor cast to the autocast
    dtype (outside the Function, so autograd casts the gradients back), as F.linear would."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return None, (x,) + tensors
    dt = torch.get_autocast_dtype(dev)
    return dev, tuple(t.to(dt) if t is not None and t.is_floating_point() else t for t in (x,) + tensors)


def _apply(fn, dev, *args):
    if dev is None:
        return fn.apply(*args)
    with torch.autocast(dev, enabled=False):  # inputs already cast; backward then sees one dtype
        return fn.apply(*args)


def _mm_into(shape, a, b):
    """a @ b written into a fresh tensor of `shape` (returned as that base tensor, not a view, so
    that autograd can accumulate gradients into it in place) and the 2-D view of it."""
    out = torch.empty(shape, dtype=a.dtype, device=a.device)
    out2 = out.view(-1, b.shape[-1])
    torch.mm(a, b, out=out2)
    return out, out2


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"lora_linear: dropout must be in [0, 1), found {dropout}; use a probability such as 0.1"
        )


class _LoRALinear(torch.autograd.Function):
    """y = x Wᵀ + b + s · keep_scale · (x ⊙ keep) Aᵀ Bᵀ; `keep` a 0/1 uint8 tensor or None.

    The rank-r products are computed r-major, e.g. A (x ⊙ keep)ᵀ of shape (r, N) rather than
    (x ⊙ keep) Aᵀ of shape (N, r), and used through transposed views: the same numbers, but BLAS
    runs a skinny product with r output rows faster than one with r output columns."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_A, lora_B, scaling, keep, keep_scale):
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        out = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()  # (N, out)
        # x ⊙ m as one (N, in) temporary: the mask turned into x's dtype, multiplied by x in place
        xd = x2 if keep is None else keep.view(x2.shape).to(x2.dtype, copy=True).mul_(x2)
        xa_t = lora_A @ xd.t()  # (r, N)
        out.addmm_(xa_t.t(), lora_B.t(), alpha=scaling * keep_scale)  # += c (N, r)(r, out)
        ctx.save_for_backward(x, weight, lora_A, lora_B, keep)
        ctx.c = scaling * keep_scale
        ctx.has_bias = bias is not None
        return out.reshape(*x.shape[:-1], weight.shape[0])  # (..., out)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, A, B, keep = ctx.saved_tensors
        c = ctx.c
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        dy2 = dy.reshape(-1, dy.shape[-1])  # (N, out)
        # the saved uint8 mask in x's dtype: a mixed uint8 × float multiply is a slow casting loop on a CPU
        mask2 = None if keep is None else keep.view(x2.shape).to(x2.dtype, copy=True)  # (N, in) 0/1
        gb_t = B.t() @ dy2.t()  # (r, N) = (dy B)ᵀ
        dx = dw = db = dA = dB = None
        if ctx.needs_input_grad[0]:  # dx = dy W + c ((dy B) A) ⊙ m
            if mask2 is None:
                dx, dx2 = _mm_into(x.shape, dy2, weight)  # (..., in), (N, in)
                dx2.addmm_(gb_t.t(), A, alpha=c)
            else:  # the masked rank-r term first, in dx's own storage, then dy W added by BLAS: no temporary
                dx, dx2 = _mm_into(x.shape, gb_t.t(), A)
                dx2.mul_(mask2).addmm_(dy2, weight, beta=c)
        if ctx.needs_input_grad[1]:
            dw = dy2.t() @ x2  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)  # (out,)
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            xd = x2 if mask2 is None else mask2.mul_(x2)  # x ⊙ m in the mask's storage (last use)
            if ctx.needs_input_grad[3]:
                dA = torch.addmm(A, gb_t, xd, beta=0, alpha=c)  # (r, in)
            if ctx.needs_input_grad[4]:
                dB = (A @ xd.t() @ dy2).mul_(c).t().contiguous()  # (out, r) = c ((x⊙m) Aᵀ)ᵀ dy, transposed
        return dx, dw, db, dA, dB, None, None, None


def lora_linear(x, weight, bias, lora_A, lora_B, scaling: float, dropout: float, training: bool):
    """y = x Wᵀ + b + scaling · dropout(x) Aᵀ Bᵀ.  x (..., in), W (out, in), A (r, in), B (out, r).

    Dropout acts on the LoRA branch only. Adapters in another dtype than x are cast to x's dtype
    (outside the Function, so autograd casts their gradients back); under autocast, everything is
    cast to the autocast dtype first, as F.linear would be."""
    _check_dropout(dropout)
    dev, (x, weight, bias, lora_A, lora_B) = _autocast(x, weight, bias, lora_A, lora_B)
    if lora_A.dtype != x.dtype:
        lora_A, lora_B = lora_A.to(x.dtype), lora_B.to(x.dtype)
    keep, keep_scale = None, 1.0
    if training and dropout > 0:
        keep, keep_scale = dropout_mask(x.shape, dropout, x.device)  # (..., in) uint8 0/1
    return _apply(_LoRALinear, dev, x, weight, bias, lora_A, lora_B, float(scaling), keep, keep_scale)


class _IA3Linear(torch.autograd.Function):
    """feedforward: y = (x ⊙ l) Wᵀ + b ;  otherwise: y = (x Wᵀ + b) ⊙ l."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, feedforward):
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        if feedforward:
            # scale whichever of x or W is smaller: (x ⊙ l) Wᵀ == x (W ⊙ l)ᵀ
            xs, w = (x2, weight * scale) if x2.shape[0] > weight.shape[0] else (x2 * scale, weight)
            out = torch.addmm(bias, xs, w.t()) if bias is not None else xs @ w.t()  # (N, out)
        else:
            out = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
            out.mul_(scale)  # (N, out), in place: the GEMM's fresh output, still in cache
        y = out.view(*x.shape[:-1], weight.shape[0])  # (..., out)
        # output scaling keeps y itself (its consumer, e.g. attention, keeps it anyway) and
        # recovers y_base = y / l in backward; x only for a trainable W or an exact zero in l
        ctx.has_zero = (not feedforward) and not bool(scale.all())
        keep_x = feedforward or ctx.needs_input_grad[1] or ctx.has_zero
        ctx.save_for_backward(x if keep_x else None, weight, bias, scale, None if feedforward else y)
        ctx.feedforward = feedforward
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, bias, scale, y = ctx.saved_tensors
        need_x, need_w, need_b, need_l = ctx.needs_input_grad[:4]
        dy2 = dy.reshape(-1, dy.shape[-1])  # (N, out)
        x2 = None if x is None else x.reshape(-1, x.shape[-1])  # (N, in)
        dx = dw = db = dl = None
        if ctx.feedforward:
            if need_x or need_l:
                g, g2 = _mm_into(dy.shape[:-1] + x.shape[-1:], dy2, weight)  # (..., in), (N, in)
                dl = (g2 * x2).sum(0) if need_l else None  # (in,)
                dx = g.mul_(scale) if need_x else None
            dw = dy2.t() @ (x2 * scale) if need_w else None  # (out, in)
            db = dy2.sum(0) if need_b else None
        else:
            # one (N, out) buffer: first dy ⊙ y for ∂l, then, overwritten, ∂y_base = dy ⊙ l
            t = None
            if need_l:
                t = dy2 * y.reshape(dy2.shape)  # (N, out)
                dl = _scale_grad(t, dy2, x2, weight, bias, scale, ctx.has_zero)
            if need_x or need_w or need_b:
                t = dy2 * scale if t is None else torch.mul(dy2, scale, out=t)  # (N, out) ∂y_base
                dx = _mm_into(dy.shape[:-1] + weight.shape[1:], t, weight)[0] if need_x else None  # (..., in)
                dw = t.t() @ x2 if need_w else None  # (out, in)
                db = t.sum(0) if need_b else None  # (out,)
        return dx, dw, db, dl, None


def _scale_grad(dy_y, dy, x2, weight, bias, scale, has_zero):
    """∂l = Σ_n dy ⊙ y_base with y_base = y / l, from dy_y = dy ⊙ y: the division moves after the
    row sum (l is per column), so it costs (out,) divisions. Columns with l = 0 are recomputed from x."""
    dl = dy_y.sum(0).div_(scale)  # (out,)
    if has_zero:
        zero = (scale == 0).nonzero().flatten()
        yb = x2 @ weight[zero].t()  # (N, zeros)
        if bias is not None:
            yb += bias[zero]
        dl[zero] = (dy[:, zero] * yb).sum(0)
    return dl


def ia3_linear(x, weight, bias, scale, feedforward: bool):
    """IA³: feed-forward targets scale the input, (x ⊙ l) Wᵀ + b; others the output, (x Wᵀ + b) ⊙ l.

    `scale` is 1-D: (in,) when feedforward, else (out,)."""
    want = weight.shape[1] if feedforward else weight.shape[0]
    if scale.dim() != 1 or scale.shape[0] != want:
        raise ValueError(
            f"ia3_linear: scale must have shape ({want},) for feedforward={feedforward}, "
            f"found {tuple(scale.shape)}; feed-forward targets scale inputs, others outputs"
        )
    dev, (x, weight, bias, scale) = _autocast(x, weight, bias, scale)
    if scale.dtype != x.dtype:
        scale = scale.to(x.dtype)
    return _apply(_IA3Linear, dev, x, weight, bias, scale, bool(feedforward))
