"""Codes and scales bit-identical to the independent oracle (float64 NumPy + ml_dtypes)."""

import zlib

import numpy as np
import pytest
import torch

import mxfp4
import mx_oracle

RULES = ["floor", "ceil", "even", "mse"]
F32 = np.float32


def check(x: torch.Tensor, rule: str, block_size: int = 32):
    q = mxfp4.quantize(x, scale_rule=rule, block_size=block_size)
    codes, scales = mx_oracle.quantize(x.float().numpy(), block_size, rule)
    np.testing.assert_array_equal(q.scales.numpy(), scales, err_msg=f"scales, rule={rule}")
    np.testing.assert_array_equal(q.codes.numpy(), codes, err_msg=f"codes, rule={rule}")
    return q


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("shape", [(1,), (31,), (32,), (33,), (7, 64), (3, 5, 100), (2, 2, 2, 96)])
@pytest.mark.parametrize("magnitude", [1e-40, 1e-30, 1e-5, 1.0, 3e4, 1e30, 1e38])
def test_random_tensors(rule, shape, magnitude):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((rule, shape, magnitude)).encode()))
    x = torch.randn(shape, generator=gen) * magnitude
    x = x * torch.exp(torch.randn(shape, generator=gen))  # spread magnitudes inside blocks
    check(x, rule)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block_size", [2, 8, 32, 128, 1024])
def test_half_precision_inputs_and_block_sizes(rule, dtype, block_size):
    gen = torch.Generator().manual_seed(block_size)
    x = (torch.randn(6, 1100, generator=gen) * 3).to(dtype)
    check(x, rule, block_size)


@pytest.mark.parametrize("rule", RULES)
def test_every_code(rule):
    values = torch.tensor(mxfp4.E2M1_VALUES, dtype=torch.float32)
    x = torch.cat([values, values.flip(0)])  # one block of 32 holding all 16 codes twice
    q = check(x, rule)
    assert q.scales.item() == 127
    assert torch.equal(q.dequantize(), x)


def _ties_block(points):
    """Blocks that hold 4.0 (so the floor scale is 1) plus the given points, with both signs."""
    pts = np.asarray(points, F32)
    body = np.concatenate([pts, -pts])
    body = np.concatenate([body, np.zeros(-len(body) % 31, F32)]).reshape(-1, 31)
    return torch.from_numpy(np.concatenate([np.full((len(body), 1), 4.0, F32), body], axis=1))


MIDPOINTS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]


@pytest.mark.parametrize("rule", RULES)
def test_ties_and_their_neighbours(rule):
    mids = np.array(MIDPOINTS, F32)
    near = np.concatenate([mids, np.nextafter(mids, F32(0)), np.nextafter(mids, F32(np.inf)),
                           mids * F32(1 - 2 ** -20), mids * F32(1 + 2 ** -20)])
    check(_ties_block(near), rule)


def test_ties_round_to_even_mantissa():
    q = mxfp4.quantize(_ties_block(MIDPOINTS)[:1])
    got = q.dequantize()[0, 1:8].tolist()
    assert got == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize("rule", RULES)
def test_float32_subnormals_and_extremes(rule):
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    fmax = np.finfo(np.float32).max
    rows = [
        np.arange(1, 33, dtype=F32) * tiny,  # all subnormal
        np.concatenate([[np.finfo(F32).tiny], np.arange(31, dtype=F32) * tiny]),  # smallest normal
        np.concatenate([[fmax, -fmax], np.linspace(-float(fmax), float(fmax), 30).astype(F32)]),  # near max
        np.concatenate([[fmax], np.full(31, 1.0, F32)]),  # huge with small neighbours
        np.concatenate([[2.0 ** 127 * 1.5, 2.0 ** 127 * 1.75], np.zeros(30, F32)]).astype(F32),
    ]
    check(torch.from_numpy(np.stack(rows)), rule)


@pytest.mark.parametrize("rule", RULES)
def test_zero_blocks_and_signed_zero(rule):
    x = torch.zeros(3, 32)
    x[1] = -0.0
    x[2, :16] = -1e-3
    x[2, 16] = 1.0  # the small negatives round to -0: code 0x8
    q = check(x, rule)
    assert q.scales[0].item() == 0 and q.scales[1].item() == 0
    assert (q.codes[1] == 0x88).all()
    assert torch.signbit(q.dequantize()[2, :16]).all()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_blocks(rule, bad):
    x = torch.randn(2, 64)
    x[0, 40] = bad
    q = check(x, rule)
    assert q.scales[0, 0].item() != 0xFF and q.scales[0, 1].item() == 0xFF
    out = q.dequantize()
    assert torch.isnan(out[0, 32:]).all() and torch.isfinite(out[0, :32]).all()
    assert torch.isfinite(out[1]).all()


@pytest.mark.parametrize("rule", RULES)
def test_mixed_sign_blocks(rule):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 32, generator=gen)
    x = x * torch.where(torch.rand(64, 32, generator=gen) < 0.5, 1.0, -1.0)
    check(x, rule)


def test_seed_example():
    from mxfp4.demo import example_block

    codes, scale, decoded = example_block()
    assert [format(c, "04b") for c in codes] == ["0100", "1010", "0010", "0110"]
    assert scale == 127 and decoded == [2.0, -1.0, 1.0, 4.0]
