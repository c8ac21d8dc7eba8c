"""The memory-saving attention of models/attention.py against SDPA and a composed reference."""

import pytest
import torch
import torch.nn.functional as F

from models import attention as att


def saved_bytes(fn, exclude=()):
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def qkv(b=2, n=3, t=7, d=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(5)
    return [torch.randn(b, n, t, d, generator=g, dtype=dtype, requires_grad=True) for _ in range(3)]


def padding_mask(b=2, t=7):
    am = torch.ones(b, t, dtype=torch.long)
    am[0, 5:] = 0
    return att.key_mask(am)  # (b, 1, 1, t) bool


def _state(seed):
    """A generator state: _RecomputeAttention then draws its dropout mask from it (fixed mask)."""
    return torch.Generator().manual_seed(seed).get_state()


def ref_attention(q, k, v, mask, p, keep):
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    probs = torch.softmax(s, -1)
    return (probs * keep / (1 - p) if keep is not None else probs) @ v


def run(fn, q, k, v, dout):
    qs = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out = fn(*qs)
    out.backward(dout)
    return [out.detach()] + [t.grad for t in qs]


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_no_dropout_equals_sdpa(mask_kind):
    q, k, v = qkv()
    mask = {"none": None, "bool": padding_mask()}.get(mask_kind)
    if mask_kind == "float":
        mask = torch.randn(2, 1, 7, 7)
    dout = torch.randn_like(q)
    got = run(lambda q, k, v: att.recompute_attention(q, k, v, mask, 0.0), q, k, v, dout)
    want = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), q, k, v, dout)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_dropout_equals_reference_with_the_regenerated_mask():
    """The mask comes from 16-bit lanes of full-range int64 draws of the default CPU generator,
    dropped below round(p·2¹⁶) (written out here)."""
    q, k, v = qkv()
    mask, p, dout = padding_mask(), 0.25, torch.randn(2, 3, 7, 4)
    torch.manual_seed(11)
    got = run(lambda q, k, v: att.attention(q, k, v, mask, p, recompute=True), q, k, v, dout)
    torch.manual_seed(11)
    t = round(p * 65536)
    bits = torch.empty(2 * 3 * 7 * 7 // 4 + 1, dtype=torch.int64).random_(-(2**63), None)
    drop = bits.view(torch.int16)[: 2 * 3 * 7 * 7].view(2, 3, 7, 7) < t - 32768
    keep = (~drop).float() * (65536 / (65536 - t)) * (1 - p)  # ref divides by (1 - p)
    assert 0 < drop.sum() < drop.numel()
    want = run(lambda q, k, v: ref_attention(q, k, v, mask, p, keep), q, k, v, dout)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    other = run(lambda q, k, v: ref_attention(q, k, v, mask, p, keep.flip(-1)), q, k, v, dout)
    assert not torch.allclose(got[0], other[0])


def test_same_seed_reproduces_and_other_seed_differs():
    q, k, v = qkv()
    dout = torch.randn_like(q)
    f = lambda q, k, v: att.recompute_attention(q, k, v, padding_mask(), 0.5)
    torch.manual_seed(3)
    a = run(f, q, k, v, dout)
    torch.manual_seed(3)
    b = run(f, q, k, v, dout)
    torch.manual_seed(4)
    c = run(f, q, k, v, dout)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_gradcheck_float64_with_dropout_and_mask():
    q, k, v = (t.detach().double().requires_grad_(True) for t in qkv(b=1, n=2, t=4, d=3))
    mask = padding_mask(b=1, t=4)
    state = torch.Generator().manual_seed(1234).get_state()  # one fixed mask for every evaluation
    f = lambda q, k, v: att._RecomputeAttention.apply(q, k, v, mask, 0.3, state)
    assert torch.autograd.gradcheck(f, (q, k, v))


def test_saves_no_square_tensor():
    """Invariant: only q, k, v and the mask are kept; SDPA with dropout keeps (b, n, t, t) tensors."""
    q, k, v = qkv(t=16)
    am = torch.ones(2, 16, dtype=torch.long)
    am[1, 12:] = 0
    mask = att.key_mask(am)
    ours, out = saved_bytes(lambda: att.attention(q, k, v, mask, 0.1, recompute=True), (q, k, v))
    assert "RecomputeAttention" in type(out.grad_fn).__name__
    assert ours == mask.untyped_storage().nbytes()
    sdpa, _ = saved_bytes(lambda: att.attention(q, k, v, mask, 0.1, recompute=False), (q, k, v))
    assert sdpa >= 2 * 16 * 16 * q.shape[0] * q.shape[1] * 4


def test_switch_routes_training_with_dropout_on_a_cpu_only():
    q, k, v = qkv()
    name = lambda out: type(out.grad_fn).__name__
    assert "RecomputeAttention" in name(att.attention(q, k, v, None, 0.1, recompute=True))
    assert "RecomputeAttention" not in name(att.attention(q, k, v, None, 0.1, recompute=False))
    assert "RecomputeAttention" not in name(att.attention(q, k, v, None, 0.0, recompute=True))
    with torch.no_grad():
        assert att.attention(q, k, v, None, 0.1, recompute=True).grad_fn is None


def test_recompute_reads_no_value_and_keeps_the_default_stream():
    """The mask comes from the default generator (manual_seed reproduces it) and backward redraws it
    from the saved state: drawing it advances the default stream once, backward not at all."""
    q, k, v = qkv()
    torch.manual_seed(7)
    out = att.recompute_attention(q, k, v, padding_mask(), 0.5)
    after_forward = torch.get_rng_state()
    out.sum().backward()
    assert torch.equal(torch.get_rng_state(), after_forward)
    torch.manual_seed(7)
    assert torch.equal(att.recompute_attention(q, k, v, padding_mask(), 0.5), out)


@pytest.mark.parametrize("block", [7 * 7, 2 * 7 * 7, 3 * 7 * 7, 4 * 7 * 7, 1 << 18])
@pytest.mark.parametrize("mask_kind", ["bool", "float-per-query", "float-per-head"])
def test_blocks_of_rows_give_the_same_values_and_mask(monkeypatch, block, mask_kind):
    """Any block size (one head, runs of heads within a batch element, several batch elements, all)
    gives the unblocked reference with the same regenerated dropout mask, whatever the mask's shape."""
    q, k, v = qkv(b=3, n=4)
    mask = {
        "bool": padding_mask(b=3),
        "float-per-query": torch.randn(3, 1, 7, 7),
        "float-per-head": torch.randn(1, 4, 7, 7),
    }[mask_kind]
    p, dout = 0.25, torch.randn(3, 4, 7, 4)
    monkeypatch.setattr(att, "BLOCK_ELEMENTS", block)
    state = torch.Generator().manual_seed(99).get_state()
    got = run(lambda q, k, v: att._RecomputeAttention.apply(q, k, v, mask, p, state), q, k, v, dout)
    t = round(p * 65536)
    bits = torch.empty(3 * 4 * 7 * 7 // 4 + 1, dtype=torch.int64).random_(
        -(2**63), None, generator=torch.Generator().manual_seed(99)
    )
    drop = bits.view(torch.int16)[: 3 * 4 * 7 * 7].view(3, 4, 7, 7) < t - 32768
    keep = (~drop).float() * (65536 / (65536 - t)) * (1 - p)
    want = run(lambda q, k, v: ref_attention(q, k, v, mask, p, keep), q, k, v, dout)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_mask_without_padding_is_kept_without_reading_it():
    """No `.all()` test (a host synchronisation): a padding mask becomes a key mask whatever it holds."""
    ones = torch.ones(2, 5, dtype=torch.long)
    assert att.key_mask(None) is None
    assert torch.equal(att.key_mask(ones), torch.ones(2, 1, 1, 5, dtype=torch.bool))
    assert torch.equal(att.key_mask(ones, prefix_len=3), torch.ones(2, 1, 1, 8, dtype=torch.bool))
    am = ones.clone()
    am[0, 4] = 0
    assert att.key_mask(am, prefix_len=3)[:, 0, 0].tolist() == [[True] * 7 + [False], [True] * 8]


def test_blocks_cover_every_row_once():
    for b, n, tq, tk in [(8, 12, 128, 128), (3, 4, 7, 7), (2, 12, 480, 480), (1, 1, 1, 1), (5, 3, 64, 80)]:
        rows = []
        for b0, b1, h0, h1 in att._blocks(b, n, tq, tk):
            assert (b1 - b0 == 1) or (h0, h1) == (0, n)  # within one element, or whole ones
            rows += [bi * n + h for bi in range(b0, b1) for h in range(h0, h1)]
        assert rows == list(range(b * n))


def test_only_the_inputs_that_need_a_gradient_get_one():
    q, k, v = qkv()
    q = q.detach()
    out = att._RecomputeAttention.apply(q, k, v, padding_mask(), 0.1, _state(5))
    out.sum().backward()
    assert q.grad is None and k.grad is not None and v.grad is not None
    k2, v2 = (t.detach().clone().requires_grad_(True) for t in (k, v))
    ref = att._RecomputeAttention.apply(
        q.clone().requires_grad_(True), k2, v2, padding_mask(), 0.1, _state(5)
    )
    ref.sum().backward()
    torch.testing.assert_close(k.grad, k2.grad)
    torch.testing.assert_close(v.grad, v2.grad)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
def test_half_dtypes_follow_the_float32_result(dtype, tol):
    q, k, v = qkv()
    mask, dout = padding_mask(), torch.randn(2, 3, 7, 4)
    f = lambda q, k, v: att._RecomputeAttention.apply(q, k, v, mask, 0.2, _state(7))
    want = run(f, q, k, v, dout)
    got = run(f, *(t.detach().to(dtype) for t in (q, k, v)), dout.to(dtype))
    for a, b in zip(got, want):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, rtol=tol, atol=tol)


@pytest.mark.parametrize("block", [7 * 7, 3 * 7 * 7, 2 * 4 * 7 * 7, 1 << 18])
def test_head_split_views_work_in_place_and_merge_without_a_copy(monkeypatch, block):
    """q, k, v as the encoder makes them (split_heads views of (b, t, hidden) projections): the same
    values and gradients as contiguous copies, the output laid out so that merge_heads is a view,
    and the projections' gradients arriving contiguous."""
    monkeypatch.setattr(att, "BLOCK_ELEMENTS", block)
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(3, 7, 16, generator=g, requires_grad=True) for _ in range(3)]  # (b, t, hidden)
    mask, p, dout = padding_mask(b=3), 0.2, torch.randn(3, 7, 16, generator=g)
    views = [att.split_heads(x, 4) for x in xs]  # (b, n, t, d) views
    assert not views[0].is_contiguous()
    out = att._RecomputeAttention.apply(*views, mask, p, _state(11))
    merged = att.merge_heads(out)
    assert merged.data_ptr() == out.data_ptr() and merged.is_contiguous()  # a view, no copy
    merged.backward(dout)
    copies = [v.detach().contiguous().requires_grad_(True) for v in views]
    ref = att._RecomputeAttention.apply(*copies, mask, p, _state(11))
    ref.backward(dout.view(3, 7, 4, 4).transpose(1, 2))
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
    for x, c in zip(xs, copies):
        assert x.grad.is_contiguous()
        torch.testing.assert_close(x.grad, c.grad.transpose(1, 2).reshape(3, 7, 16), rtol=1e-6, atol=1e-7)
