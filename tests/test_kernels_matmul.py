"""The MX x MX Triton matmul (mxfp4.matmul, backend="triton") against float64 math.

Without a GPU these run in the Triton interpreter (tests/conftest.py); with one, on CUDA.
"""

import pytest
import torch

import mxfp4

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _mx(rows, k, block_size, seed, spread=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g) * torch.exp2(torch.randint(-spread, spread, (rows, k), generator=g).float())
    return mxfp4.quantize(x, block_size=block_size)


@pytest.mark.parametrize("m,n,k,block", [(1, 70, 96, 32), (5, 33, 160, 32), (67, 130, 64, 32),
                                         (9, 17, 48, 16), (4, 6, 6, 2), (3, 5, 2048, 1024)])
def test_matmul_matches_float64(m, n, k, block):
    a, b = _mx(m, k, block, seed=m), _mx(n, k, block, seed=n + 100)
    y = mxfp4.matmul(a.to(DEV), b.to(DEV), backend="triton")
    assert y.shape == (m, n) and y.dtype == torch.float32
    ref = a.dequantize().double() @ b.dequantize().double().T
    # products are exact; only fp32 accumulation rounds
    assert ((y.cpu().double() - ref).norm() / ref.norm()).item() <= 1e-5


def test_matmul_equals_reference_and_nan_blocks():
    a, b = _mx(12, 64, 32, seed=1), _mx(20, 64, 32, seed=2)
    a.scales[3, 1] = 255
    y = mxfp4.matmul(a.to(DEV), b.to(DEV), backend="triton").cpu()
    ref = mxfp4.matmul(a, b, backend="reference")
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(y), nan) and nan[3].all() and nan.sum() == 20
    assert torch.allclose(y[~nan], ref[~nan], rtol=1e-5, atol=1e-5 * ref[~nan].abs().max().item())
