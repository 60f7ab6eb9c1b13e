"""The decode GEMVs (mxfp4.kernels.gemv) against float64 math, and their determinism.

Without a GPU these run in the Triton interpreter (tests/conftest.py); with one, on CUDA.
"""

import os

import torch

if not torch.cuda.is_available():  # before any kernel module is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import mxfp4  # noqa: E402
from linear_oracle import linear_rel_err  # noqa: E402
from mxfp4.kernels import linear as kl  # noqa: E402
from mxfp4.kernels.gemv import gemv_config  # noqa: E402
from mxfp4.layouts import prepack  # noqa: E402


DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _case(m, n, k, dtype, bias, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    w = mxfp4.quantize(torch.randn(n, k, generator=g) * scale)
    x = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    return w, x, b


def _gemv(x, w, b, bn=16, bk=64, split=1, lanes_k=True):
    cfg = dict(GEMV=True, BN=bn, BM=max(1, 1 << (x.shape[0] - 1).bit_length()), BK=bk,
               SPLIT_K=split, LANES_K=lanes_k, num_warps=4, num_stages=1)
    return kl.linear(x.to(DEV), prepack(w).to(DEV), None if b is None else b.to(DEV), cfg)


@pytest.mark.parametrize("m,n,k,dtype,bias,split,lanes_k", [
    (1, 37, 160, torch.bfloat16, True, 1, True),   # odd N, K not a multiple of the 64-element tile
    (3, 20, 96, torch.float16, False, 2, False),   # split-K with a ragged last chunk
    (8, 33, 224, torch.bfloat16, False, 3, True),
    (5, 16, 64, torch.float32, True, 1, False),
    (2, 21, 128, torch.bfloat16, True, 2, False),
    (1, 40, 192, torch.bfloat16, True, 1, True),   # BK = 128 over K = 192: a half last step
])
def test_gemv_matches_float64(m, n, k, dtype, bias, split, lanes_k):
    w, x, b = _case(m, n, k, dtype, bias, seed=m * 100 + n)
    y = _gemv(x, w, b, bk=128 if k == 192 else 64, split=split, lanes_k=lanes_k)
    assert y.shape == (m, n) and y.dtype == dtype and torch.isfinite(y).all()
    assert linear_rel_err(y, x, w, b) <= 1e-2
    assert torch.equal(_gemv(x, w, b, bk=128 if k == 192 else 64, split=split, lanes_k=lanes_k), y)


def test_gemv_wide_scales_and_default_dispatch():
    # scale bytes > 128 (|W| > 12) and < 127 both come out exact; M = 1 takes the GEMV by default
    w, x, b = _case(1, 24, 128, torch.bfloat16, True, seed=7, scale=300.0)
    assert prepack(w).max_scale > 128
    y = _gemv(x, w, b, bk=128)
    assert linear_rel_err(y, x, w, b) <= 1e-2
    d = mxfp4.linear(x.to(DEV), prepack(w).to(DEV), b.to(DEV), backend="triton")
    assert torch.equal(d, _gemv(x, w, b, **_default_tiles(1, 24, 128)))
    assert kl.GEMV_MAX_M == 1 and gemv_config(1, 5760, 2880, 132)["SPLIT_K"] == 8
    # measured dispatch: 2880x2880 on the GEMV, 2880x5760 and larger on the tensor cores
    assert kl.use_gemv(1, 2880, 2880) and not kl.use_gemv(1, 5760, 2880)
    assert not kl.use_gemv(2, 2880, 2880)


def _default_tiles(m, n, k):
    c = gemv_config(m, n, -(-k // 64) * 64, kl._sm_count(torch.device(DEV)))
    return dict(bn=c["BN"], bk=c["BK"], split=c["SPLIT_K"])


def test_gemv_rejects_tiles_that_do_not_fit():
    w, x, b = _case(4, 16, 64, torch.bfloat16, False, seed=8)
    with pytest.raises(ValueError, match="GEMV needs"):
        _gemv(x, w, b, bk=96)  # BK must be a multiple of the 64-element group
    with pytest.raises(ValueError, match="GEMV needs"):
        kl.linear(x.to(DEV), w.to(DEV), None, dict(GEMV=True, BN=16, BM=4, BK=64, SPLIT_K=1, LANES_K=True))
