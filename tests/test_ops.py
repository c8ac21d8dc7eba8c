"""Fused adapter ops (minipeft/ops.py) against composed references written here, gradcheck, and the
bytes they keep for backward."""

import pytest
import torch
import torch.nn.functional as F

from minipeft import ops


# ---- references written independently of the ops -------------------------------------------------
def ref_lora(x, W, b, A, B, s, keep=None, p=0.0):
    dropped = x if keep is None else x * keep / (1 - p)
    return F.linear(x, W, b) + s * F.linear(F.linear(dropped, A), B)


def ref_ia3(x, W, b, l, feedforward):
    return F.linear(x * l, W, b) if feedforward else F.linear(x, W, b) * l


def saved_bytes(fn, exclude=()):
    """Bytes of the unique storages autograd keeps for backward while `fn` runs, minus `exclude`."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def make(n_lead=(2, 3), d_in=6, d_out=5, r=3, dtype=torch.float32, bias=True, gen_seed=1):
    g = torch.Generator().manual_seed(gen_seed)
    x = torch.randn(*n_lead, d_in, generator=g, dtype=dtype)
    W = torch.randn(d_out, d_in, generator=g, dtype=dtype)
    b = torch.randn(d_out, generator=g, dtype=dtype) if bias else None
    A = torch.randn(r, d_in, generator=g, dtype=dtype)
    B = torch.randn(d_out, r, generator=g, dtype=dtype)
    return x, W, b, A, B


def grads(out_fn, tensors, dy):
    ts = [t.detach().clone().requires_grad_(True) if t is not None else None for t in tensors]
    y = out_fn(*ts)
    y.backward(dy)
    return y.detach(), [t.grad if t is not None else None for t in ts]


# ---- LoRA ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(7,), (2, 3), (2, 1, 4)])
def test_lora_equals_reference_no_dropout(bias, lead):
    x, W, b, A, B = make(lead, bias=bias)
    dy = torch.randn(*lead, W.shape[0])
    tensors = [x, W, b, A, B]
    y1, g1 = grads(lambda *t: ops.lora_linear(*t, 0.7, 0.1, False), tensors, dy)
    y2, g2 = grads(lambda *t: ref_lora(*t, 0.7), tensors, dy)
    torch.testing.assert_close(y1, y2)
    for a, c in zip(g1, g2):
        if c is not None:
            torch.testing.assert_close(a, c)


def documented_drop(shape, p):
    """The mask recipe of minipeft.ops' docstring, written out: 16 bits per element from full-range
    int64 draws of the default generator, dropped when below round(p·2¹⁶) (as unsigned)."""
    t = round(p * 65536)
    n = torch.Size(shape).numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    return bits.view(torch.int16)[:n].view(shape) < t - 32768, 65536 / (65536 - t)


@pytest.mark.parametrize("lead", [(4, 5), (3,)])  # 3·8 = 24 and 4·5·8 elements; odd counts covered below
def test_lora_dropout_reproduces_documented_mask(lead):
    x, W, b, A, B = make(lead, d_in=8, d_out=6)
    dy = torch.randn(*lead, 6)
    p = 0.3
    torch.manual_seed(123)
    y1, g1 = grads(lambda *t: ops.lora_linear(*t, 2.0, p, True), [x, W, b, A, B], dy)
    torch.manual_seed(123)
    drop, keep_scale = documented_drop(x.shape, p)
    assert 0 < drop.sum() < drop.numel()
    keep = (~drop).float() * keep_scale * (1 - p)  # ref_lora divides by (1 - p)
    y2, g2 = grads(lambda *t: ref_lora(*t, 2.0, keep, p), [x, W, b, A, B], dy)
    torch.testing.assert_close(y1, y2)
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a, c)
    # and a different mask really changes the result (the check above can fail)
    y3 = ref_lora(x, W, b, A, B, 2.0, 1 - keep, p)
    assert not torch.allclose(y1, y3)


@pytest.mark.parametrize("shape", [(7, 3), (5,)])
def test_dropout_mask_odd_sizes_match_recipe(shape):
    torch.manual_seed(9)
    keep, s = ops.dropout_mask(shape, 0.5)
    torch.manual_seed(9)
    drop, s2 = documented_drop(shape, 0.5)
    assert keep.shape == shape and keep.dtype == torch.uint8
    assert torch.equal(keep.bool(), ~drop) and s == s2


def test_dropout_mask_every_lane_has_rate_p():
    """Each of the four 16-bit lanes of a draw drops with probability p (a biased high lane would not)."""
    p, n = 0.1, 400_000
    keep, keep_scale = ops.dropout_mask((n,), p)
    rates = 1 - keep.view(-1, 4).float().mean(0)
    sigma = (p * (1 - p) / (n / 4)) ** 0.5
    assert (rates - p).abs().max() < 5 * sigma
    assert keep_scale == pytest.approx(1 / (1 - p), rel=1e-4)


def test_lora_dropout_statistics():
    """With W=0, A=B=I, s=1 and x=1 the op returns the dropped-out ones: fraction p zero, rest 1/(1-p')."""
    n, d, p = 4000, 16, 0.1
    x = torch.ones(n, d)
    y = ops.lora_linear(x, torch.zeros(d, d), None, torch.eye(d), torch.eye(d), 1.0, p, True)
    zero = (y == 0).float().mean().item()
    sigma = (p * (1 - p) / y.numel()) ** 0.5
    assert abs(zero - p) < 5 * sigma
    p_rounded = round(p * 2**16) / 2**16
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p_rounded)))


def test_lora_eval_mode_has_no_dropout():
    x, W, b, A, B = make()
    torch.testing.assert_close(ops.lora_linear(x, W, b, A, B, 0.5, 0.9, False), ref_lora(x, W, b, A, B, 0.5))


def test_lora_gradcheck_float64():
    x, W, b, A, B = (t.double().requires_grad_(True) for t in make((2, 3), d_in=4, d_out=3, r=2))
    assert torch.autograd.gradcheck(lambda *t: ops.lora_linear(*t, 0.8, 0.0, True), (x, W, b, A, B))
    keep = (torch.rand(x.shape) >= 0.4).to(torch.uint8)
    f = lambda *t: ops._LoRALinear.apply(*t, 0.8, keep, 1 / 0.6)  # fixed mask: gradcheck calls it often
    assert torch.autograd.gradcheck(f, (x, W, b, A, B))
    assert torch.autograd.gradcheck(f, (x, W, None, A, B))


def test_lora_skips_dx_when_input_needs_no_grad():
    x, W, b, A, B = make()
    A.requires_grad_(True)
    B.requires_grad_(True)
    y = ops.lora_linear(x, W, b, A, B, 1.0, 0.0, True)
    y.sum().backward()
    assert x.grad is None and A.grad is not None and B.grad is not None


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
def test_lora_half_dtypes(dtype, tol):
    x, W, b, A, B = make((4, 8), d_in=32, d_out=16, r=4)
    dy = torch.randn(4, 8, 16)
    y1, g1 = grads(
        lambda *t: ops.lora_linear(*t, 0.5, 0.0, True), [t.to(dtype) for t in (x, W, b, A, B)], dy.to(dtype)
    )
    y2, g2 = grads(lambda *t: ref_lora(*t, 0.5), [x, W, b, A, B], dy)
    assert y1.dtype == dtype and all(g.dtype == dtype for g in g1)
    for a, c in zip([y1] + g1, [y2] + g2):
        torch.testing.assert_close(a.float(), c, rtol=tol, atol=tol * c.abs().max().item())


def test_lora_adapter_dtype_differs_from_input():
    x, W, b, A, B = make()
    A32, B32 = A.clone().requires_grad_(True), B.clone().requires_grad_(True)
    y = ops.lora_linear(x.double(), W.double(), b.double(), A32, B32, 1.0, 0.0, True)
    assert y.dtype == torch.float64
    y.sum().backward()
    assert A32.grad.dtype == torch.float32 and B32.grad.dtype == torch.float32


def test_lora_rejects_bad_dropout():
    x, W, b, A, B = make()
    with pytest.raises(ValueError, match="dropout"):
        ops.lora_linear(x, W, b, A, B, 1.0, 1.0, True)


def _qkv(fn, x, params):
    return sum(fn(x, *p).sum() for p in params)


def _qkv_params(d, r):
    out = []
    for _ in range(3):
        W = torch.nn.Parameter(torch.randn(d, d), requires_grad=False)
        b = torch.nn.Parameter(torch.randn(d), requires_grad=False)
        A = torch.nn.Parameter(torch.randn(r, d) * 0.1)
        B = torch.nn.Parameter(torch.randn(d, r) * 0.1)
        out.append((W, b, A, B))
    return out


def test_saved_bytes_fused_keeps_x_once_across_qkv():
    """Invariant: fused q,k,v save x once plus three 1-byte masks; the composed path saves more than 2×."""
    n, d, r, p = 64, 32, 4, 0.1
    x = torch.randn(n, d, requires_grad=True)
    params = _qkv_params(d, r)
    flat = [t for ps in params for t in ps]
    fused, _ = saved_bytes(
        lambda: _qkv(lambda x, W, b, A, B: ops.lora_linear(x, W, b, A, B, 2.0, p, True), x, params), flat
    )
    plain, _ = saved_bytes(
        lambda: _qkv(
            lambda x, W, b, A, B: F.linear(x, W, b) + 2.0 * F.linear(F.linear(F.dropout(x, p, True), A), B),
            x,
            params,
        ),
        flat,
    )
    assert fused == x.numel() * x.element_size() + 3 * x.numel()
    no_drop, _ = saved_bytes(
        lambda: _qkv(lambda x, W, b, A, B: ops.lora_linear(x, W, b, A, B, 2.0, p, False), x, params), flat
    )
    assert no_drop == x.numel() * x.element_size()
    assert fused / plain <= 0.5


# ---- IA3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("feedforward", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(3,), (2, 4), (9,)])  # N > in: input scaling scales W instead of x
def test_ia3_equals_reference(feedforward, bias, lead):
    x, W, b, _, _ = make(lead, d_in=6, d_out=5, bias=bias)
    l = torch.rand(6 if feedforward else 5) + 0.5
    dy = torch.randn(*lead, 5)
    ts = [x, W, b, l]
    W.requires_grad_(True)
    y1, g1 = grads(lambda *t: ops.ia3_linear(*t, feedforward), ts, dy)
    y2, g2 = grads(lambda *t: ref_ia3(*t, feedforward), ts, dy)
    torch.testing.assert_close(y1, y2)
    for a, c in zip(g1, g2):
        if c is not None:
            torch.testing.assert_close(a, c)


@pytest.mark.parametrize("feedforward", [True, False])
@pytest.mark.parametrize("needs", [m for m in range(1, 16)])  # bit k: the k-th of x, W, b, l requires grad
def test_ia3_gradients_for_every_subset_of_inputs(feedforward, needs):
    """Backward computes only what is asked (one buffer serves ∂l, then ∂y_base, under output
    scaling); every gradient asked for equals the composed reference's."""
    x, W, b, _, _ = make((4, 3), d_in=6, d_out=5)
    l = torch.rand(6 if feedforward else 5) + 0.5
    dy = torch.randn(4, 3, 5)
    want = [bool(needs >> k & 1) for k in range(4)]
    results = []
    for fn in (lambda *t: ops.ia3_linear(*t, feedforward), lambda *t: ref_ia3(*t, feedforward)):
        ts = [t.detach().clone().requires_grad_(w) for t, w in zip((x, W, b, l), want)]
        y = fn(*ts)
        y.backward(dy)
        results.append((y.detach(), [t.grad for t in ts]))
    (y1, g1), (y2, g2) = results
    torch.testing.assert_close(y1, y2)
    for w, a, c in zip(want, g1, g2):
        assert (a is not None) == w
        if w:
            torch.testing.assert_close(a, c)


@pytest.mark.parametrize("feedforward", [True, False])
def test_ia3_gradcheck_float64(feedforward):
    x, W, b, _, _ = (t.double().requires_grad_(True) for t in make((2, 3), d_in=4, d_out=3))
    l = (torch.rand(4 if feedforward else 3, dtype=torch.float64) + 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *t: ops.ia3_linear(*t, feedforward), (x, W, b, l))
    assert torch.autograd.gradcheck(lambda x, W, l: ops.ia3_linear(x, W, None, l, feedforward), (x, W, l))


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
@pytest.mark.parametrize("feedforward", [True, False])
def test_ia3_half_dtypes(dtype, tol, feedforward):
    x, W, b, _, _ = make((4, 8), d_in=32, d_out=16)
    l = torch.rand(32 if feedforward else 16) + 0.5
    dy = torch.randn(4, 8, 16)
    y1, g1 = grads(
        lambda *t: ops.ia3_linear(*t, feedforward), [t.to(dtype) for t in (x, W, b, l)], dy.to(dtype)
    )
    y2, g2 = grads(lambda *t: ref_ia3(*t, feedforward), [x, W, b, l], dy)
    for a, c in zip([y1] + g1, [y2] + g2):
        torch.testing.assert_close(a.float(), c, rtol=tol, atol=tol * c.abs().max().item())


def test_ia3_output_scaling_keeps_y_base_as_the_plain_path():
    """Output scaling keeps y_base = x Wᵀ (for ∂l) besides what its consumer keeps (k and v here),
    as the composed path does: 4 (n, d) tensors for k ⊙ v. Keeping y alone and dividing by l in
    backward would need a branch on whether l holds an exact zero (a host synchronisation)."""
    n, d = 64, 32
    x = torch.randn(n, d, requires_grad=True)
    Ws = [torch.nn.Parameter(torch.randn(d, d), requires_grad=False) for _ in range(2)]
    ls = [torch.nn.Parameter(torch.rand(d) + 0.5) for _ in range(2)]

    def kv_product(fn):
        k, v = (fn(x, W, None, l, False) for W, l in zip(Ws, ls))
        return (k * v).sum()  # mul keeps k and v

    fused = saved_bytes(lambda: kv_product(ops.ia3_linear), Ws + ls)[0]
    plain = saved_bytes(lambda: kv_product(ref_ia3), Ws + ls)[0]
    assert fused == plain == 4 * n * d * 4


@pytest.mark.parametrize("bias", [True, False])
def test_ia3_output_scaling_with_a_zero_in_the_scale(bias):
    """An exact zero in l: y is 0 there, and ∂l still comes from y_base (kept), as in the plain path."""
    x, W, b, _, _ = make((4, 3), d_in=6, d_out=5, bias=bias)
    l = torch.rand(5) + 0.5
    l[[1, 3]] = 0.0
    dy = torch.randn(4, 3, 5)
    y1, g1 = grads(lambda *t: ops.ia3_linear(*t, False), [x, W, b, l], dy)
    y2, g2 = grads(lambda *t: ref_ia3(*t, False), [x, W, b, l], dy)
    for a, c in zip([y1] + g1, [y2] + g2):
        if c is not None:
            torch.testing.assert_close(a, c)
    assert g1[3][1] != 0  # the gradient of a zero entry is not lost


def test_ia3_rejects_wrong_scale_shape():
    x, W, b, _, _ = make(d_in=6, d_out=5)
    with pytest.raises(ValueError, match=r"\(6,\)"):
        ops.ia3_linear(x, W, b, torch.ones(5), True)


def test_lora_and_ia3_under_cpu_autocast_match_composed():
    """Under autocast the ops run in the autocast dtype like F.linear; grads come back in fp32."""
    x, W, b, A, B = make((4, 8), d_in=32, d_out=16, r=4)
    l = torch.rand(16) + 0.5
    dy = torch.randn(4, 8, 16)
    for fused, ref in (
        (lambda *t: ops.lora_linear(*t, 0.5, 0.0, True), lambda *t: ref_lora(*t, 0.5)),
        (
            lambda x, W, b, A, B: ops.ia3_linear(x, W, b, l, False),
            lambda x, W, b, A, B: ref_ia3(x, W, b, l, False),
        ),
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y1, g1 = grads(fused, [x, W, b, A, B], dy)
        y2, g2 = grads(ref, [x, W, b, A, B], dy)
        assert y1.dtype == torch.bfloat16 and g1[0].dtype == torch.float32
        for a, c in zip([y1] + g1, [y2] + g2):
            if c is None:  # A, B unused by the IA3 pair
                assert a is None
                continue
            torch.testing.assert_close(a.float(), c, rtol=3e-2, atol=3e-2 * c.abs().max().item())


def test_lora_non_contiguous_input():
    x, W, b, A, B = make((6, 5), d_in=6, d_out=4)
    xt = x.transpose(0, 1)  # (5, 6, in), non-contiguous
    dy = torch.randn(5, 6, 4)
    y1, g1 = grads(lambda x, *t: ops.lora_linear(x.transpose(0, 1), *t, 0.7, 0.0, True), [x, W, b, A, B], dy)
    y2, g2 = grads(lambda x, *t: ref_lora(x.transpose(0, 1), *t, 0.7), [x, W, b, A, B], dy)
    assert not xt.is_contiguous()
    for a, c in zip([y1] + g1, [y2] + g2):
        torch.testing.assert_close(a, c)


def test_double_backward_is_refused():
    x, W, b, A, B = (t.requires_grad_(True) for t in make())
    y = ops.lora_linear(x, W, b, A, B, 1.0, 0.0, True)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()
