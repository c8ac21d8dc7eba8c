"""models.dropout.Dropout: the 1-byte-mask dropout of the encoders."""

import pytest
import torch

from models.dropout import Dropout, keep_mask


def test_equals_the_documented_mask_forward_and_backward():
    x = torch.randn(3, 5, 7, requires_grad=True)
    dy = torch.randn(3, 5, 7)
    torch.manual_seed(2)
    y = Dropout(0.25)(x)
    y.backward(dy)
    torch.manual_seed(2)
    t = round(0.25 * 65536)
    bits = torch.empty((105 + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    keep = (bits.view(torch.int16)[:105].view(3, 5, 7) >= t - 32768).float()
    scale = 65536 / (65536 - t)
    assert 0 < keep.sum() < keep.numel()
    torch.testing.assert_close(y, x.detach() * keep * scale)
    torch.testing.assert_close(x.grad, dy * keep * scale)


def test_rate_and_scale():
    p, n = 0.1, 200_000
    y = Dropout(p)(torch.ones(n))
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs((y == 0).float().mean().item() - p) < 5 * sigma
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - round(p * 2**16) / 2**16)))


def test_eval_and_zero_p_are_identity():
    x = torch.randn(4, 3)
    d = Dropout(0.5).eval()
    assert d(x) is x
    assert Dropout(0.0)(x) is x


def test_keeps_one_byte_per_element_for_backward():
    x = torch.randn(64, 32, requires_grad=True)
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        Dropout(0.1)(x)
    assert sum(seen.values()) == x.numel()
    seen.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.nn.functional.dropout(x, 0.1, True)
    assert sum(seen.values()) > x.numel()  # F.dropout keeps more (a float mask on CPU)


def test_keep_mask_odd_size_and_bad_p():
    keep, s = keep_mask((5,), 0.5)
    assert keep.shape == (5,) and keep.dtype == torch.uint8
    with pytest.raises(ValueError, match="p must be"):
        Dropout(1.0)
