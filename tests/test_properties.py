"""Property tests (hypothesis): error bound, idempotence, monotonicity."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mxfp4
from mxfp4.format import e8m0_to_float32

RULES = st.sampled_from(["floor", "ceil", "even", "mse"])
# below 2^126 so that every dequantized value fits float32 (6 * 2^127 would not)
finite32 = st.floats(-2.0 ** 126, 2.0 ** 126, allow_nan=False, width=32)
blocks = st.lists(finite32, min_size=1, max_size=96)
block_sizes = st.sampled_from([2, 4, 32, 64])


def _scales_per_element(q, n):
    s = e8m0_to_float32(q.scales).double()
    return s.repeat_interleave(q.block_size)[:n]


@settings(max_examples=300, deadline=None)
@given(values=blocks, rule=RULES, bs=block_sizes)
def test_error_bound_per_element(values, rule, bs):
    x = torch.tensor(values, dtype=torch.float32)
    q = mxfp4.quantize(x, scale_rule=rule, block_size=bs)
    err = (q.dequantize().double() - x.double()).abs()
    scale = _scales_per_element(q, len(values))
    y = x.double().abs() / scale
    # half the grid step at |y|: 0.25 below 2, 0.5 below 4, 1 up to 6; clipped: |y| - 6
    half_step = torch.where(y < 2, 0.25, torch.where(y < 4, 0.5, 1.0))
    bound = torch.maximum(half_step, y - 6) * scale
    assert (err <= bound).all()
    assert (y < 8).all()  # every rule keeps the block max below 8 * scale


@settings(max_examples=300, deadline=None)
@given(values=blocks, rule=RULES, bs=block_sizes)
def test_requantizing_is_idempotent(values, rule, bs):
    x = torch.tensor(values, dtype=torch.float32)
    q1 = mxfp4.quantize(x, scale_rule=rule, block_size=bs)
    x1 = q1.dequantize()
    q2 = mxfp4.quantize(x1, scale_rule=rule, block_size=bs)
    assert torch.equal(q2.dequantize(), x1)
    assert torch.equal(torch.signbit(q2.dequantize()), torch.signbit(x1))
    if rule == "floor":  # the OCP rule even reproduces the same bytes
        assert q2 == q1


@settings(max_examples=300, deadline=None)
@given(values=st.lists(finite32, min_size=2, max_size=32), rule=RULES)
def test_monotone_within_a_block(values, rule):
    x = torch.tensor(sorted(values), dtype=torch.float32)
    out = mxfp4.quantize(x, scale_rule=rule).dequantize()
    assert (out[1:] >= out[:-1]).all()


@settings(max_examples=200, deadline=None)
@given(values=blocks, rule=RULES)
def test_negation_flips_only_the_sign_bits(values, rule):
    x = torch.tensor(values, dtype=torch.float32)
    a, b = mxfp4.quantize(x, scale_rule=rule), mxfp4.quantize(-x, scale_rule=rule)
    assert torch.equal(a.scales, b.scales)
    assert torch.equal(a.dequantize(), -b.dequantize())


@settings(max_examples=200, deadline=None)
@given(values=blocks, k=st.integers(-100, 100))
def test_power_of_two_scaling_commutes(values, k):
    x = np.asarray(values, np.float64)
    if np.abs(x).max() * 2.0 ** max(k, 0) >= 2 ** 120 or 0 < np.abs(x[x != 0]).min(initial=1) * 2.0 ** min(k, 0) < 2 ** -100:
        return  # stay away from the clamped exponent range
    t = torch.tensor(x, dtype=torch.float32)
    a = mxfp4.quantize(t).dequantize().double() * 2.0 ** k
    b = mxfp4.quantize(t * 2.0 ** k).dequantize().double()
    assert torch.equal(a, b)
