"""The W4A16 Triton GEMM (mxfp4.linear, backend="triton") against float64 math.

Without a GPU these run in the Triton interpreter (tests/conftest.py); with one, on CUDA.
"""

import pytest
import torch

import mxfp4
from mxfp4.kernels import linear as kl
from mxfp4.layouts import HopperWeight, prepack

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _weight(n, k, seed, block_size=32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return mxfp4.quantize(torch.randn(n, k, generator=g) * scale, block_size=block_size)


def _rel_err(y, x, w, bias):
    ref = x.double() @ w.dequantize().double().T
    if bias is not None:
        ref = ref + bias.double()
    return ((y.cpu().double() - ref).norm() / ref.norm()).item()


def _run(m, n, k, dtype, bias, packed, config=None, block_size=32, seed=0, lead=()):
    g = torch.Generator().manual_seed(seed + 1)
    w = _weight(n, k, seed, block_size)
    x = torch.randn(*lead, m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    wd = prepack(w).to(DEV) if packed else w.to(DEV)
    if config is None:
        y = mxfp4.linear(x.to(DEV), wd, None if b is None else b.to(DEV), backend="triton")
    else:
        y = kl.linear(x.to(DEV), wd, None if b is None else b.to(DEV), config)
    assert y.shape == (*lead, m, n) and y.dtype == dtype
    assert torch.isfinite(y).all()  # every element written (torch.empty is not zeroed)
    return y, x, w, b


# M, N, K that do not divide the tiles (BN 64/128, BM 16..256, BK 64..256), M = 1, K % 64 == 32
SHAPES = [(1, 70, 96), (5, 33, 160), (17, 130, 64), (67, 40, 320), (300, 72, 128),
          (100, 72, 1344)]  # the last: mid-M tiles with two K splits ending in a 64-wide step


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("packed", [False, True], ids=["mxtensor", "hopper"])
def test_linear_bf16(m, n, k, packed):
    y, x, w, b = _run(m, n, k, torch.bfloat16, bias=(m % 2 == 1), packed=packed)
    assert _rel_err(y, x, w, b) <= 1e-2


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_fp16_fp32(dtype, bias):
    y, x, w, b = _run(6, 40, 192, dtype, bias=bias, packed=True)
    # x is split into two bf16 terms: about fp32-accumulation accuracy before the output cast
    assert _rel_err(y, x, w, b) <= (2e-3 if dtype == torch.float16 else 1e-4)


def test_linear_leading_dims_and_block_sizes():
    y, x, w, b = _run(3, 24, 64, torch.bfloat16, bias=True, packed=False, lead=(2,))
    assert _rel_err(y, x, w, b) <= 1e-2
    for bs, k in ((16, 48), (8, 24), (64, 128)):
        y, x, w, b = _run(4, 20, k, torch.bfloat16, bias=False, packed=False, block_size=bs)
        assert _rel_err(y, x, w, b) <= 1e-2


@pytest.mark.parametrize("split", [2, 4])
@pytest.mark.parametrize("packed", [False, True], ids=["mxtensor", "hopper"])
def test_linear_split_k_deterministic(split, packed):
    cfg = dict(BN=64, BM=16, BK=64, SPLIT_K=split, GROUP_N=1, num_warps=4, num_stages=2)
    y1, x, w, b = _run(3, 70, 320, torch.bfloat16, bias=True, packed=packed, config=cfg)
    y2, *_ = _run(3, 70, 320, torch.bfloat16, bias=True, packed=packed, config=cfg)
    assert _rel_err(y1, x, w, b) <= 1e-2
    assert torch.equal(y1, y2)  # fixed reduction order; counters reset by the last split


@pytest.mark.parametrize("split", [1, 2])
def test_hopper_k_steps_not_dividing_k(split):
    # K = 320: one 256-wide step and a 64-wide one (or 64-group splits of 192 and 128)
    cfg = dict(BN=64, BM=16, BK=256, SPLIT_K=split, GROUP_N=1, num_warps=4, num_stages=2)
    y, x, w, b = _run(3, 70, 320, torch.bfloat16, bias=True, packed=True, config=cfg)
    assert _rel_err(y, x, w, b) <= 1e-2


@pytest.mark.parametrize("packed", [False, True], ids=["mxtensor", "hopper"])
def test_linear_unswapped_tiles(packed):
    # x as the MMA's A operand and the decoded weights as B (a prefill tile option)
    cfg = dict(BN=64, BM=64, BK=64, SPLIT_K=1, GROUP_N=2, SWAP=False, num_warps=4, num_stages=2)
    for m in (3, 70):
        y, x, w, b = _run(m, 130, 192, torch.bfloat16, bias=True, packed=packed, config=cfg)
        assert _rel_err(y, x, w, b) <= 1e-2
    y, x, w, b = _run(5, 40, 128, torch.float16, bias=False, packed=packed, config=cfg)
    assert _rel_err(y, x, w, b) <= 2e-3


def test_hopper_layout_roundtrip_and_large_scales():
    for n, k in ((70, 96), (3, 32), (130, 320)):
        w = _weight(n, k, seed=n)
        h = prepack(w)
        assert h.to_mx() == w
        assert h.codes.shape[0] % 128 == 0 and h.scales.shape == (h.codes.shape[1] // 16, h.codes.shape[0])
    # scale bytes above 128 (|W| > 12) take the two-multiply decode; results stay exact
    w = _weight(40, 128, seed=5, scale=2.0**20)
    h = prepack(w)
    assert h.max_scale > 128
    x = torch.randn(3, 128).bfloat16()
    y = mxfp4.linear(x.to(DEV), h.to(DEV), backend="triton")
    assert _rel_err(y, x, w, None) <= 1e-2


def test_linear_nan_block_propagates():
    w = _weight(8, 64, seed=3)
    w.scales[2, 1] = 255  # row 2 has a NaN block
    x = torch.randn(2, 64).bfloat16()
    for wd in (w, prepack(w)):
        y = mxfp4.linear(x.to(DEV), wd.to(DEV), backend="triton").cpu()
        ref = mxfp4.linear(x, w, backend="reference")
        assert torch.equal(torch.isnan(y), torch.isnan(ref)) and torch.isnan(y[:, 2]).all()


def test_hopper_weight_checks():
    w = _weight(8, 64, seed=0)
    h = prepack(w)
    with pytest.raises(ValueError, match="needs codes"):
        HopperWeight(h.codes[:, :-1].contiguous(), h.scales, h.shape)
    with pytest.raises(TypeError, match="expects an MXTensor"):
        prepack(torch.zeros(8, 64))
    with pytest.raises(ValueError, match="last axis"):
        prepack(mxfp4.quantize(torch.randn(64, 8), axis=0))


def test_split_k_counters_are_per_device_and_stream():
    dev = torch.device(DEV)
    a = kl.arrival_counters(dev)
    assert a is kl.arrival_counters(dev) and a.dtype == torch.int32 and not a.any()
    if dev.type == "cuda":  # a second stream gets its own counters, also while capturing
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            b = kl.arrival_counters(dev)
            assert b is not a and b.data_ptr() != a.data_ptr() and not b.any()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            c = kl.arrival_counters(dev)  # a row of the arena: made before the capture
        assert c.data_ptr() not in (a.data_ptr(), b.data_ptr())
        assert c.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()


def test_mid_m_tiles_are_one_warpgroup_per_64_rows():
    # 64 < M < 512: 64-row 4-warp tiles (H100 sweep, benchmarks/mid_m_sweep.py); 64 tokens
    # with two K splits up to M = 128 and on long K, 128 tokens above; M >= 512 unchanged
    small, long_k = kl.pick_config(96, 14336, 4096, 132), kl.pick_config(256, 4096, 14336, 132)
    for cfg in (small, long_k):
        assert (cfg["BN"], cfg["BM"], cfg["BK"], cfg["SPLIT_K"], cfg["num_warps"]) == (64, 64, 256, 2, 4)
    mid = kl.pick_config(256, 5760, 2880, 132)
    assert (mid["BN"], mid["BM"], mid["BK"], mid["num_warps"]) == (64, 128, 64, 4)
    assert mid["SPLIT_K"] == 2  # 90 x 2 tiles: two splits fit in ~1.4 waves of 4-warp CTAs
    assert kl.pick_config(512, 5760, 2880, 132)["num_warps"] == 8
    assert kl.pick_config(256, 5760, 2880, 132, hopper=False)["num_warps"] == 8
