"""Stochastic rounding: unbiased inside the range, reproducible with a seed, random without."""

import torch

import mxfp4


def test_unbiased_for_in_range_elements():
    gen = torch.Generator().manual_seed(11)
    block = torch.randn(32, generator=gen) * 2.0
    draws = 20000
    x = block.repeat(draws, 1)  # each row is one independent draw of the same block
    out = mxfp4.quantize(x, scale_rule="ceil", rounding="stochastic", seed=5).dequantize().double()
    mean, std = out.mean(0), out.std(0)
    stderr = std / draws ** 0.5
    on_grid = std == 0
    assert torch.equal(mean[on_grid], block.double()[on_grid])
    z = (mean - block.double()).abs() / stderr.clamp_min(1e-30)
    assert (z[~on_grid] < 3).all(), z
    # the deviation over all elements together is unbiased as well
    total = (out - block.double()).mean() / ((out - block.double()).std() / out.numel() ** 0.5)
    assert abs(total) < 3


def test_rounds_only_to_the_two_neighbours():
    x = torch.linspace(-6, 6, 4096).reshape(-1, 32)
    x[:, 0] = 6.0  # pin the scale to 1
    out = mxfp4.quantize(x, scale_rule="ceil", rounding="stochastic", seed=1).dequantize()
    lo = mxfp4.quantize(x, scale_rule="ceil").dequantize()
    grid = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6.0])
    ax = x.abs()
    below = grid[torch.searchsorted(grid, ax, right=True) - 1]
    above = grid[torch.clamp(torch.searchsorted(grid, ax, right=False), max=7)]
    assert ((out.abs() == below) | (out.abs() == above)).all()
    assert (torch.sign(out) * torch.sign(x) >= 0).all()
    assert not torch.equal(out, lo)


def test_reproducible_with_seed_and_random_without():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    a = mxfp4.quantize(x, rounding="stochastic", seed=123)
    b = mxfp4.quantize(x, rounding="stochastic", seed=123)
    c = mxfp4.quantize(x, rounding="stochastic", seed=124)
    d = mxfp4.quantize(x, rounding="stochastic")
    e = mxfp4.quantize(x, rounding="stochastic")
    assert a == b
    assert a != c and d != e
    assert torch.equal(a.scales, d.scales)  # only the element rounding is random


def test_stochastic_saturates_clipped_elements():
    x = torch.tensor([7.5, -7.5] + [1.0] * 30)  # floor scale 1: 7.5 is beyond 6
    out = mxfp4.quantize(x, rounding="stochastic", seed=0).dequantize()
    assert out[:2].tolist() == [6.0, -6.0]
