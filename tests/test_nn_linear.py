"""MXLinear and MXEmbedding: forward semantics, dtypes, errors, Hadamard rotation."""

import pytest
import torch
from torch import nn

import mxfp4
from mxfp4.algorithms.hadamard import hadamard_matrix, rotate
from mxfp4.nn import MXEmbedding, MXLinear


def _linear(n=48, k=96, bias=True, seed=0):
    torch.manual_seed(seed)
    layer = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(1 + 4 * torch.rand(n, 1))
    return layer


def test_forward_is_mxfp4_linear_of_the_quantized_weight():
    layer = _linear()
    q = MXLinear.from_linear(layer, scale_rule="ceil")
    x = torch.randn(3, 5, 96)
    w = mxfp4.quantize(layer.weight, axis=1, scale_rule="ceil")
    assert q.weight_mx == w
    torch.testing.assert_close(q(x), mxfp4.linear(x, w, layer.bias), rtol=0, atol=0)
    assert q.bias.dtype == torch.float32 and torch.equal(q.bias, layer.bias)
    assert q.weight_codes.dtype == torch.uint8 and q.weight_codes.shape == (48, 48)
    assert q.weight_scales.shape == (48, 3)


def test_output_dtype_follows_input_and_module_to_keeps_codes():
    q = MXLinear.from_linear(_linear(bias=False))
    x = torch.randn(4, 96, dtype=torch.bfloat16)
    assert q(x).dtype == torch.bfloat16
    codes = q.weight_codes.clone()
    q.to(torch.bfloat16)
    assert q.weight_codes.dtype == torch.uint8 and torch.equal(q.weight_codes, codes)


def test_close_to_float_layer():
    layer = _linear()
    x = torch.randn(64, 96)
    ref = layer(x)
    err = (MXLinear.from_linear(layer)(x) - ref).norm() / ref.norm()
    assert 0 < err < 0.15


@pytest.mark.parametrize("bad, match", [
    (lambda: MXLinear(torch.zeros(4, 32)), "MXTensor"),
    (lambda: MXLinear(mxfp4.quantize(torch.randn(4, 32), axis=0)), "axis 1"),
    (lambda: MXLinear(mxfp4.quantize(torch.randn(4, 40))), "multiple of the block size"),
    (lambda: MXLinear(mxfp4.quantize(torch.randn(4, 32)), torch.zeros(3)), "bias"),
    (lambda: MXLinear(mxfp4.quantize(torch.randn(4, 32)), method="awq"), "method"),
    (lambda: MXLinear.from_linear(nn.Conv1d(3, 3, 1)), "nn.Linear"),
])
def test_bad_construction(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        bad()


def test_nan_weight_is_refused():
    layer = _linear()
    with torch.no_grad():
        layer.weight[3, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        MXLinear.from_linear(layer)


def test_wrong_input_size_gives_clear_error():
    with pytest.raises(ValueError, match="does not match"):
        MXLinear.from_linear(_linear())(torch.randn(2, 64))


# -- Hadamard -----------------------------------------------------------------------------

def test_hadamard_matrix_is_orthonormal_and_symmetric():
    h = hadamard_matrix(32, dtype=torch.float64)
    torch.testing.assert_close(h @ h, torch.eye(32, dtype=torch.float64))
    assert torch.equal(h, h.T)
    x = torch.randn(5, 64)
    torch.testing.assert_close(rotate(rotate(x)), x, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="multiple"):
        rotate(torch.randn(3, 40))


def test_hadamard_layer_matches_float_layer_within_quantization_error():
    layer = _linear(seed=1)
    x = torch.randn(128, 96)
    ref = layer(x)
    had = MXLinear.from_linear(layer, hadamard=True)
    # the exact identity before rounding: rotated input times rotated float weight
    exact = rotate(x) @ rotate(layer.weight.detach()).T + layer.bias
    torch.testing.assert_close(exact, ref, atol=1e-4, rtol=1e-4)
    err = (had(x) - ref).norm() / ref.norm()
    assert err < 0.15
    torch.testing.assert_close(had.dequantized_weight(), layer.weight.detach(), atol=0.5, rtol=0.3)


def test_hadamard_beats_rtn_with_outliers():
    layer = _linear(n=64, k=128, seed=2)
    with torch.no_grad():  # one large outlier in every fourth block of every row
        w = layer.weight
        idx = torch.arange(0, 128, 32 * 4)
        w[:, idx] = 40 * w.abs().max()
    x = torch.randn(256, 128)
    ref = layer(x)
    rtn = (MXLinear.from_linear(layer)(x) - ref).norm()
    had = (MXLinear.from_linear(layer, hadamard=True)(x) - ref).norm()
    assert had < 0.7 * rtn


# -- MXEmbedding --------------------------------------------------------------------------

def test_embedding_lookup_equals_dequantized_rows():
    torch.manual_seed(0)
    emb = nn.Embedding(100, 64, padding_idx=0)
    q = MXEmbedding.from_embedding(emb, scale_rule="even")
    ids = torch.tensor([[1, 5, 99], [0, 5, 7]])
    table = mxfp4.quantize(emb.weight, axis=1, scale_rule="even").dequantize()
    assert torch.equal(q(ids), table[ids])
    assert q(ids).shape == (2, 3, 64) and q.padding_idx == 0


def test_embedding_keeps_embed_scale_and_dtype():
    class Scaled(nn.Embedding):
        def __init__(self):
            super().__init__(50, 32)
            self.register_buffer("embed_scale", torch.tensor(8.0), persistent=False)

        def forward(self, ids):
            return super().forward(ids) * self.embed_scale

    emb = Scaled()
    q = MXEmbedding.from_embedding(emb)
    ids = torch.tensor([3, 4])
    table = mxfp4.quantize(emb.weight, axis=1).dequantize()
    assert torch.equal(q(ids), table[ids] * 8.0)
    q.to(torch.bfloat16)
    assert q(ids).dtype == torch.bfloat16


def test_embedding_bad_ids():
    q = MXEmbedding.from_embedding(nn.Embedding(10, 32))
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        q(torch.tensor([10]))
    with pytest.raises(TypeError, match="integer"):
        q(torch.tensor([1.0]))
