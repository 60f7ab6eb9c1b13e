"""Prefill path of mxfp4.linear (bf16 x, M >= PREFILL_MIN_M): one decode kernel, then cuBLAS.

Without a GPU the decode kernel runs in the Triton interpreter (tests/conftest.py).
"""

import pytest
import torch

import mxfp4
from mxfp4.kernels import prefill
from mxfp4.layouts import prepack

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _weight(n, k, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g) * scale
    x *= torch.exp2(torch.randint(-6, 7, (n, 1), generator=g).float())  # spread the scales
    return mxfp4.quantize(x)


@pytest.mark.parametrize("n,k", [(40, 96), (130, 64), (7, 200)])
@pytest.mark.parametrize("scale", [1.0, 1e4])  # 1e4: scale bytes above 128
@pytest.mark.parametrize("tile", [prefill.HOPPER_TILE, (8, 2, 4, True), (16, 2, 4, False)])
def test_hopper_weight_decodes_to_the_exact_bf16_matrix(n, k, scale, tile):
    w = _weight(n, k, seed=n + k, scale=scale)
    got = prefill.weight_bf16(prepack(w).to(DEV), tile).cpu()
    assert torch.equal(got, w.dequantize(torch.bfloat16))
    assert torch.equal(prefill.weight_bf16(w.to(DEV)).cpu(), w.dequantize(torch.bfloat16))


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_prefill_linear_matches_float64(packed, bias):
    n, k, m = 72, 160, prefill.PREFILL_MIN_M + 3
    g = torch.Generator().manual_seed(5)
    w = _weight(n, k, seed=3)
    x = torch.randn(2, m, k, generator=g).to(torch.bfloat16)
    b = torch.randn(n, generator=g).to(torch.bfloat16) if bias else None
    wd = prepack(w) if packed else w
    y = mxfp4.linear(x.to(DEV), wd.to(DEV), None if b is None else b.to(DEV), backend="triton")
    assert y.shape == (2, m, n) and y.dtype == torch.bfloat16
    ref = x.double() @ w.dequantize().double().T + (0 if b is None else b.double())
    err = ((y.cpu().double() - ref).norm() / ref.norm()).item()
    assert err < 1e-2, err


def test_dispatch_rule():
    assert prefill.use_prefill(prefill.PREFILL_MIN_M, torch.bfloat16)
    assert not prefill.use_prefill(prefill.PREFILL_MIN_M - 1, torch.bfloat16)
    assert not prefill.use_prefill(4096, torch.float16)  # fp16 W may not fit: the fused kernel
    assert not prefill.use_prefill(4096, torch.float32)
