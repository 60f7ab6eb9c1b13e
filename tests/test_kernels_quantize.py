"""Triton quantize/dequantize against the reference codec, bit for bit.

Without a GPU these run in the Triton interpreter (tests/conftest.py); with one, on CUDA.
"""

import pytest
import torch
import triton
import triton.language as tl

import mxfp4
from mxfp4 import codec
from mxfp4.kernels.quantize import rne_index

DEV = "cuda" if torch.cuda.is_available() else "cpu"
RULES = codec.SCALE_RULES
# fp16 dequantize of values past 65504 gives inf, as the reference does
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast")


def _special(shape, dtype, seed):
    """Random data over many binades with NaN, Inf, -0.0, a subnormal and exact midpoints."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * torch.exp2(torch.randint(-20, 20, shape, generator=g).float())
    flat = x.view(-1)
    n = flat.numel()
    for i, v in enumerate([float("nan"), float("inf"), -float("inf"), -0.0, 1e-40, 0.25, 0.75,
                           2.5, 3.5, 5.0, -1.25, 6.0, 7.0]):
        flat[(i * 37) % n] = v
    return x.to(dtype)


def _bits(t):
    t = t.contiguous()
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()])


def _check_quantize(x, **kw):
    got = mxfp4.quantize(x.to(DEV), backend="triton", **kw)
    ref = mxfp4.quantize(x, backend="reference", **kw)
    assert torch.equal(got.codes.cpu(), ref.codes), f"codes differ for {kw}"
    assert torch.equal(got.scales.cpu(), ref.scales), f"scales differ for {kw}"
    assert got.shape == ref.shape and got.axis == ref.axis
    return got, ref


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantize_bit_exact_last_axis(rule, dtype):
    # 7 rows (odd), K = 100: not a multiple of the block (padding) nor of the kernel tile
    _check_quantize(_special((7, 100), dtype, seed=1), scale_rule=rule)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("shape,axis,block", [((33, 5), 0, 32), ((3, 40, 5), 1, 16),
                                              ((2, 3, 70), -1, 8), ((130,), 0, 64),
                                              ((4, 9), 1, 2)])
def test_quantize_bit_exact_any_axis(rule, shape, axis, block):
    _check_quantize(_special(shape, torch.float32, seed=2), axis=axis, block_size=block,
                    scale_rule=rule)


def test_quantize_whole_blocks_special():
    x = torch.randn(6, 64)
    x[0, :32] = float("nan")  # a NaN block and a normal block in one row
    x[1] = -0.0  # negative zeros: code 8, scale byte 0
    x[2, 3] = float("inf")
    x[3] = 1e-42  # subnormal block
    x[4] = 3.0e38  # near the float32 limit: largest scale bytes
    x[5, :] = torch.linspace(-6, 6, 64)
    for rule in RULES:
        got, _ = _check_quantize(x, scale_rule=rule)
        assert got.scales[0, 0].item() == 255 and torch.all(got.codes[0, :16] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,axis,block", [((7, 100), -1, 32), ((33, 5), 0, 32),
                                              ((3, 40, 5), 1, 16), ((5, 96), -1, 8),
                                              ((6, 36), -1, 4), ((1, 10), -1, 2)])
def test_dequantize_bit_exact(dtype, shape, axis, block):
    q = mxfp4.quantize(_special(shape, torch.float32, seed=3), axis=axis, block_size=block)
    got = mxfp4.dequantize(q.to(DEV), dtype, backend="triton").cpu()
    ref = mxfp4.dequantize(q, dtype, backend="reference")
    assert got.shape == ref.shape and got.dtype == dtype
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(_bits(got)[~nan], _bits(ref)[~nan])  # -0.0, inf, subnormals included


@triton.jit
def _rne_kernel(y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    y = tl.load(y_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr + offs, rne_index(y), mask=offs < n)


def test_rne_index_matches_bucketize():
    bounds = torch.tensor(codec.RNE_BOUNDARIES + (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0))
    near, down, up = [bounds], bounds, bounds
    for _ in range(4):  # a few ulps either side of every boundary and grid value
        down, up = torch.nextafter(down, torch.tensor(0.0)), torch.nextafter(up, torch.tensor(9.0))
        near += [down, up]
    y = torch.cat(near + [torch.rand(4000) * 8, torch.rand(500) * 1e-3, torch.tensor([0.0, 1e-45])])
    y = y.abs().float()
    out = torch.empty(y.shape, dtype=torch.int32, device=DEV)
    _rne_kernel[(triton.cdiv(y.numel(), 1024),)](y.to(DEV), out, y.numel(), BLOCK=1024)
    assert torch.equal(out.cpu(), codec.round_nearest(y))


def test_stochastic_reproducible_and_unbiased():
    row = torch.linspace(-5.5, 5.5, 32)
    x = row.repeat(2048, 1)
    a = mxfp4.quantize(x.to(DEV), scale_rule="ceil", rounding="stochastic", seed=7, backend="triton")
    b = mxfp4.quantize(x.to(DEV), scale_rule="ceil", rounding="stochastic", seed=7, backend="triton")
    c = mxfp4.quantize(x.to(DEV), scale_rule="ceil", rounding="stochastic", seed=8, backend="triton")
    assert torch.equal(a.codes, b.codes) and torch.equal(a.scales, b.scales)
    assert not torch.equal(a.codes, c.codes)
    ref = mxfp4.quantize(x, scale_rule="ceil")  # same scales as the nearest mode
    assert torch.equal(a.scales.cpu(), ref.scales)
    deq = a.dequantize(backend="triton").cpu()
    scale = ref.dequantize().abs().amax() / 6  # one block scale for every row
    grid = torch.tensor(mxfp4.E2M1_VALUES) * scale
    lo = torch.where(grid[None, :] <= row[:, None], grid[None, :], -1e9).amax(1)
    hi = torch.where(grid[None, :] >= row[:, None], grid[None, :], 1e9).amin(1)
    assert torch.all((deq == lo) | (deq == hi))  # only the two neighbours
    mean = deq.mean(0)
    step = (hi - lo).clamp_min(1e-9)
    # 2048 draws: the mean's standard error is at most step / (2 * sqrt(2048)) ~ step / 90
    assert torch.all((mean - row).abs() <= step * 0.06)


@pytest.mark.parametrize("tile", [(1024, 4, True), (8192, 8, True), (16384, 8, False),
                                  (1024, 4, True, 1), (512, 4, False, 2),
                                  (1024, 4, False, 0, 128), (2048, 4, False, 1, 512),
                                  (2048, 4, False, 0), (1024, 4, False, -1, 128)])
def test_tile_options_bit_exact(tile):
    # the tuning knobs (tile size, warps, evict-first hint, walk) must not change a bit
    from mxfp4.kernels import quantize as kq

    x = _special((9, 300), torch.bfloat16, seed=4)
    for rule in ("floor", "mse"):
        ref = mxfp4.quantize(x, scale_rule=rule, backend="reference")
        codes, scales = kq.quantize(x.to(DEV), 1, 32, rule, "nearest", None, tile)
        assert torch.equal(codes.cpu(), ref.codes) and torch.equal(scales.cpu(), ref.scales)
    got = kq.dequantize(ref.codes.to(DEV), ref.scales.to(DEV), ref.shape, 1, 32,
                        torch.bfloat16, tile).cpu()
    want = ref.dequantize(torch.bfloat16, backend="reference")
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan) and torch.equal(_bits(got)[~nan], _bits(want)[~nan])
