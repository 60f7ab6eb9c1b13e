"""The tensor-core GEMV (mxfp4.kernels.mma_gemv) against float64 math, and its dispatch.

Without a GPU these run in the Triton interpreter (tests/conftest.py), where the warp-level
MMA and the packed decode are emulated with whole-warp tensor math; with one, on CUDA.
"""

import os

import torch

if not torch.cuda.is_available():  # before any kernel module is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import mxfp4  # noqa: E402
from linear_oracle import linear_rel_err  # noqa: E402
from mxfp4.kernels import linear as kl  # noqa: E402
from mxfp4.kernels.mma_gemv import mma_gemv_config  # noqa: E402
from mxfp4.layouts import prepack  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _case(m, n, k, bias, seed, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    w = mxfp4.quantize(torch.randn(n, k, generator=g) * scale)
    x = torch.randn(m, k, generator=g).to(torch.bfloat16)
    b = torch.randn(n, generator=g).to(torch.bfloat16) if bias else None
    return w, x, b


def _run(x, w, b, k_warps=2, split=1):
    cfg = dict(MMA_GEMV=True, K_WARPS=k_warps, SPLIT_K=split, TWO_N=x.shape[0] > 8,
               num_warps=k_warps, num_stages=1)
    return kl.linear(x.to(DEV), prepack(w).to(DEV), None if b is None else b.to(DEV), cfg)


@pytest.mark.parametrize("m,n,k,bias,k_warps,split", [
    (1, 37, 160, True, 2, 1),    # odd N; K = 160: a half last 128-step, x past K masked
    (3, 130, 320, False, 2, 2),  # split-K with a ragged last chunk
    (8, 32, 2080, True, 16, 1),  # long rows: 16 K warps, all 8 MMA columns used
    (11, 48, 384, True, 2, 3),   # 9..16 rows: a second MMA per fragment
    (16, 20, 96, False, 4, 1),   # more K warps than steps: idle warps add zeros
])
def test_mma_gemv_matches_float64(m, n, k, bias, k_warps, split):
    w, x, b = _case(m, n, k, bias, seed=m * 100 + n)
    y = _run(x, w, b, k_warps, split)
    assert y.shape == (m, n) and y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    assert linear_rel_err(y, x, w, b) <= 1e-2
    assert torch.equal(_run(x, w, b, k_warps, split), y)  # deterministic split-K


def test_mma_gemv_dispatch():
    # bf16 x, up to 8 rows, scale bytes <= 128: the tensor-core GEMV; fp16 x, or weights
    # with larger scales, go elsewhere; 9-16 rows only on small weights
    assert kl.use_mma_gemv(1, 14336, 4096, torch.bfloat16, 128)
    assert kl.use_mma_gemv(8, 14336, 4096, torch.bfloat16, 120)
    assert not kl.use_mma_gemv(1, 14336, 4096, torch.float16, 120)
    assert not kl.use_mma_gemv(1, 14336, 4096, torch.bfloat16, 129)
    assert kl.use_mma_gemv(16, 5760, 2880, torch.bfloat16, 120)
    assert not kl.use_mma_gemv(16, 14336, 4096, torch.bfloat16, 120)
    assert not kl.use_mma_gemv(17, 2880, 2880, torch.bfloat16, 120)
    c = mma_gemv_config(1, 14336, 4096, 132)
    assert (c["K_WARPS"], c["SPLIT_K"], c["TWO_N"]) == (4, 1, False)
    c = mma_gemv_config(1, 4096, 14336, 132)  # long rows: 16 K warps, no split
    assert (c["K_WARPS"], c["SPLIT_K"], c["num_warps"]) == (16, 1, 16)
    c = mma_gemv_config(1, 5760, 2880, 132)
    assert (c["K_WARPS"], c["SPLIT_K"]) == (8, 1)
    # the default dispatch gives the same bits as the explicit configuration
    w, x, b = _case(2, 40, 128, True, seed=5)
    c = mma_gemv_config(2, 40, 128, kl._sm_count(torch.device(DEV)))
    d = mxfp4.linear(x.to(DEV), prepack(w).to(DEV), b.to(DEV), backend="triton")
    assert torch.equal(d, _run(x, w, b, c["K_WARPS"], c["SPLIT_K"]))


def test_mma_gemv_rejects_what_it_cannot_run():
    w, x, b = _case(4, 16, 64, False, seed=8)
    with pytest.raises(ValueError, match="MMA GEMV needs"):
        _run(x.to(torch.float16), w, b)  # fp16 x
    big, xb, _ = _case(1, 16, 64, False, seed=9, scale=300.0)
    assert prepack(big).max_scale > 128
    with pytest.raises(ValueError, match="MMA GEMV needs"):
        _run(xb, big, None)
    x12 = torch.randn(12, 64).to(torch.bfloat16).to(DEV)  # 12 rows need TWO_N
    with pytest.raises(ValueError, match="MMA GEMV needs"):
        kl.linear(x12, prepack(w).to(DEV), None,
                  dict(MMA_GEMV=True, K_WARPS=1, SPLIT_K=1, TWO_N=False))
