"""The bf16 decode GEMV (mxfp4.kernels.dense_gemv) against its float32 twin, its determinism
and its input checks.

Without a GPU these run in the Triton interpreter (tests/conftest.py); with one, on CUDA.
"""

import os

import torch

if not torch.cuda.is_available():  # before any kernel module is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from mxfp4.kernels.dense_gemv import (  # noqa: E402
    dense_config, dense_linear, dense_linear_reference, use_dense_gemv)

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _case(m, n, k, bias, residual, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).bfloat16().to(DEV)
    w = (torch.randn(n, k, generator=g) / k ** 0.5).bfloat16().to(DEV)
    b = torch.randn(n, generator=g).bfloat16().to(DEV) if bias else None
    r = torch.randn(m, n, generator=g).bfloat16().to(DEV) if residual else None
    return x, w, b, r


def _cfg(dot, bn, bk, split):
    return dict(DOT=dot, BN=bn, BK=bk, SPLIT_K=split, num_warps=4, num_stages=2 if dot else 1)


def _assert_close(y, x, w, b, r):
    """Within fp32 summation-order noise and one bf16 rounding of the twin's result."""
    ref = dense_linear_reference(x, w, b, r)
    exact = dense_linear_reference(x.double(), w.double(),
                                   None if b is None else b.double(),
                                   None if r is None else r.double())
    assert y.shape == ref.shape and y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    # one bf16 rounding: |err| <= 2^-7 |exact|, one ulp (the interpreter truncates fp32 to
    # bf16 where the GPU rounds to nearest), plus fp32 summation noise for values near 0
    tol = exact.abs() * 2.0 ** -7 + 1e-5
    assert ((y.double() - exact).abs() <= tol).all()
    assert ((y.double() - ref.double()).abs() <= 2 * tol).all()


@pytest.mark.parametrize("m,n,k,bias,residual,dot,bn,bk,split", [
    (1, 37, 160, True, True, False, 16, 64, 1),    # N, K not multiples of the tile
    (1, 20, 200, False, False, False, 16, 64, 3),  # split-K with a ragged and an empty split
    (1, 33, 96, True, False, True, 16, 32, 2),     # M = 1 on the tensor-core path
    (3, 40, 136, False, True, True, 32, 64, 1),    # K = 136: a part step, M padded to 16
    (3, 17, 128, True, True, True, 16, 32, 3),
    (16, 24, 64, True, False, True, 16, 16, 2),    # M = 16: every x row used
])
def test_dense_gemv_matches_twin(m, n, k, bias, residual, dot, bn, bk, split):
    x, w, b, r = _case(m, n, k, bias, residual, seed=m * 1000 + n + k)
    cfg = _cfg(dot, bn, bk, split)
    y = dense_linear(x, w, b, r, config=cfg)
    _assert_close(y, x, w, b, r)
    assert torch.equal(dense_linear(x, w, b, r, config=cfg), y)  # deterministic


def test_early_weight_read_and_default_configs():
    # weight_ready only moves the first weight load before the PDL wait: same numbers
    x, w, b, r = _case(1, 24, 136, True, True, seed=5)
    cfg = _cfg(False, 16, 64, 2)
    y = dense_linear(x, w, b, r, config=cfg)
    assert torch.equal(dense_linear(x, w, b, r, config=dict(cfg, EARLY_W=True),
                                   weight_ready=True), y)
    # the default config per M, with leading batch dims
    for m in (1, 2, 5):
        x, w, b, r = _case(m, 19, 48, True, True, seed=m)
        y = dense_linear(x.reshape(m, 1, 48), w, b, r.reshape(m, 1, 19))
        assert y.shape == (m, 1, 19)
        _assert_close(y.reshape(m, 19), x, w, b, r)


def test_default_configs_cover_the_gpt_oss_shapes():
    for m in (1, 2, 8, 16):
        for n, k in ((5120, 2880), (2880, 4096), (201088, 2880)):
            cfg = dense_config(m, n, k, 132)
            assert cfg["DOT"] == (m > 1) and cfg["SPLIT_K"] >= 1
            assert cfg["SPLIT_K"] <= -(-k // cfg["BK"])  # no split without a step


def test_use_dense_gemv():
    x, w, _, _ = _case(2, 16, 32, False, False, seed=1)
    assert use_dense_gemv(x, w)
    assert not use_dense_gemv(x.float(), w)                      # fp32 x
    assert not use_dense_gemv(x, w.half())                       # fp16 weight
    assert not use_dense_gemv(torch.zeros(17, 32, dtype=torch.bfloat16, device=DEV), w)
    assert not use_dense_gemv(x[:, :12], w[:, :12])              # K = 12: not a multiple of 8
    assert not use_dense_gemv(x, w.t().contiguous().t())         # strided weight
    assert not use_dense_gemv(x[:, :16], w)                      # K mismatch


def test_bad_inputs_raise_clear_errors():
    x, w, b, r = _case(2, 16, 32, True, True, seed=2)
    with pytest.raises(ValueError, match="bf16 x"):
        dense_linear(x.float(), w)
    with pytest.raises(ValueError, match="1..16 rows"):
        dense_linear(torch.zeros(17, 32, dtype=torch.bfloat16, device=DEV), w)
    with pytest.raises(ValueError, match="multiple of 8"):
        dense_linear(x[:, :12].contiguous(), w[:, :12].contiguous())
    with pytest.raises(ValueError, match="bias must be"):
        dense_linear(x, w, b[:8])
    with pytest.raises(ValueError, match="bias must be"):
        dense_linear(x, w, b.float())
    with pytest.raises(ValueError, match="residual must be"):
        dense_linear(x, w, b, r[:1])
    with pytest.raises(ValueError, match="residual must be"):
        dense_linear(x, w, b, r.float())
    with pytest.raises(ValueError, match="FMA path takes one row"):
        dense_linear(x, w, config=_cfg(False, 16, 32, 1))
    with pytest.raises(TypeError, match="tensors"):
        dense_linear(x.tolist(), w)
