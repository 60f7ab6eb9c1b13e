"""Every bad input to the codec API raises a clear error."""

import pytest
import torch

import mxfp4


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.uint8, torch.bool, torch.complex64])
def test_wrong_dtype(dtype):
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        mxfp4.quantize(torch.zeros(32, dtype=dtype))


@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, None, "x"])
def test_not_a_tensor(bad):
    with pytest.raises(TypeError, match="torch.Tensor"):
        mxfp4.quantize(bad)


@pytest.mark.parametrize("bs", [0, 1, 3, 48, 2048, 32.0, True, "32"])
def test_bad_block_size(bs):
    with pytest.raises(ValueError, match="block_size must be a power of two"):
        mxfp4.quantize(torch.zeros(64), block_size=bs)


@pytest.mark.parametrize("axis", [2, -3, 1.0, None])
def test_bad_axis(axis):
    with pytest.raises(IndexError, match="axis"):
        mxfp4.quantize(torch.zeros(4, 64), axis=axis)


def test_scalar_input():
    with pytest.raises(ValueError, match="at least one dimension"):
        mxfp4.quantize(torch.tensor(1.0))


def test_bad_rule_rounding_backend():
    x = torch.zeros(64)
    with pytest.raises(ValueError, match="scale_rule must be one of"):
        mxfp4.quantize(x, scale_rule="round")
    with pytest.raises(ValueError, match="rounding must be one of"):
        mxfp4.quantize(x, rounding="down")
    with pytest.raises(ValueError, match="backend must be one of"):
        mxfp4.quantize(x, backend="cuda")


def test_dequantize_checks():
    q = mxfp4.quantize(torch.ones(64))
    with pytest.raises(TypeError, match="expects an MXTensor"):
        mxfp4.dequantize(torch.ones(64))
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        q.dequantize(torch.int8)


def test_error_stats_checks():
    x = torch.ones(64)
    q = mxfp4.quantize(x)
    with pytest.raises(ValueError, match="shapes differ"):
        mxfp4.error_stats(torch.ones(32), q)
    with pytest.raises(TypeError, match="MXTensor"):
        mxfp4.error_stats(x, x)
    with pytest.raises(ValueError, match="not both"):
        mxfp4.error_stats(x, q, scale_rule="ceil")


def test_empty_axis_is_fine():
    q = mxfp4.quantize(torch.zeros(3, 0))
    assert q.codes.shape == (3, 0) and q.dequantize().shape == (3, 0)
