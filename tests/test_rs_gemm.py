"""CPU checks of the register-operand GEMM's host side (mxfp4.kernels.rs_gemm): argument
errors, who may run it, and the tile rules. The Gluon kernel runs only on an sm_90 GPU with
triton 3.6 (benchmarks/ws_gemm_device.py checks it there against float64 math); its decode is
run on the CPU by tests/test_ws_decode_asm.py and it compiles offline with
scripts/compile_sm90.py."""

import importlib
import sys

import pytest
import torch

from mxfp4 import quantize
from mxfp4.kernels import rs_gemm, ws_gemm
from mxfp4.layouts import prepack

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880), (2912, 2920)]  # (K, N)


def _packed(n=64, k=96):
    return prepack(quantize(torch.randn(n, k)))


def test_rs_linear_argument_errors():
    w = _packed()
    x = torch.randn(16, 96).to(torch.bfloat16)
    with pytest.raises(TypeError, match="HopperWeight"):
        rs_gemm.rs_linear(x, quantize(torch.randn(64, 96)))
    with pytest.raises(ValueError, match="does not match"):
        rs_gemm.rs_linear(torch.randn(16, 64).to(torch.bfloat16), w)
    with pytest.raises(ValueError, match="bias"):
        rs_gemm.rs_linear(x, w, torch.zeros(63, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError, match="CUDA tensors on an sm_90"):
        rs_gemm.rs_linear(x, w)  # CPU tensors: never a silent fallback
    with pytest.raises(ValueError, match="num_warps"):
        rs_gemm.rs_linear(x, w, config=dict(rs_gemm.rs_config(16, 64, 96), num_warps=2))


@pytest.mark.parametrize("k, n", SHAPES)
@pytest.mark.parametrize("m", [1, 16, 17, 64, 65, 256, 300, 4096])
def test_config_fits_the_hardware(k, n, m):
    cfg = rs_gemm.rs_config(m, n, k, 132)
    assert rs_gemm.config_problem(cfg) is None, cfg
    assert cfg["BN"] == 16 * cfg["num_warps"]
    assert cfg["BM"] >= min(m, 128) or cfg["BM"] == 128
    steps = -(-k // rs_gemm.BK)
    assert steps // cfg["SPLIT_K"] >= 4  # every split keeps some K steps


def test_small_batches_take_one_warpgroup_and_few_registers():
    """M <= 64: 64 weight rows a CTA at <= 104 registers, so two or three CTAs share an SM;
    from 65 on, two warpgroups x 128 tokens without the loader warp at 128 registers (two
    CTAs an SM), at every larger M too (four warpgroups measured slower)."""
    for m, warps, regs, loader in ((16, 4, 80, True), (64, 4, 104, True), (65, 8, 128, False),
                                   (2048, 8, 128, False), (4096, 8, 128, False)):
        cfg = rs_gemm.rs_config(m, 14336, 4096)
        assert (cfg["num_warps"], cfg["maxnreg"], cfg["LOADER"]) == (warps, regs, loader), cfg
    assert rs_gemm.rs_config(16, 2880, 2880)["SPLIT_K"] > 1  # 45 tiles: split K


@pytest.mark.parametrize("change, words", [
    (dict(num_warps=8), "BN = 16 a warp"),
    (dict(num_warps=16, BN=256, BM=128, maxnreg=128), "register file"),  # + the loader warp
    (dict(BM=48), "power of two"),
    (dict(BM=256, maxnreg=168), "registers a thread"),
    (dict(STAGES=12, BM=128, num_warps=8, BN=128, maxnreg=168), "shared memory"),
    (dict(maxnreg=256, num_warps=8, BN=128), "register file"),
    (dict(STAGES=1), "STAGES"),
])
def test_config_problem_names_what_does_not_fit(change, words):
    cfg = dict(rs_gemm.rs_config(16, 14336, 4096), **change)
    why = rs_gemm.config_problem(cfg)
    assert why is not None and words in why, (cfg, why)
    assert "keys" in rs_gemm.config_problem({"BN": 64})


def test_module_loads_without_gluon(monkeypatch):
    """Importing the host module compiles nothing and imports no Gluon (CI's triton has a
    different Gluon API)."""
    for name in [n for n in sys.modules if n.startswith("mxfp4.kernels.rs_gemm")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.import_module("mxfp4.kernels.rs_gemm")
    assert "mxfp4.kernels.rs_gemm_kernel" not in sys.modules


def test_rs_shares_the_hardware_rule():
    assert rs_gemm.ws_gemm.unsupported_reason is ws_gemm.unsupported_reason


@pytest.mark.parametrize("m, k, n, bias", [(1, 96, 64, False), (16, 2880, 200, True),
                                           (100, 2912, 2920, False), (300, 640, 130, True)])
def test_rs_linear_matches_float64_or_says_why_not(m, k, n, bias):
    """On an sm_90 GPU with triton 3.6: ragged M, N, K, bias and split K against float64
    math on the dequantized weight; anywhere else the reason, and no fallback."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(m)
    w = quantize(torch.randn(n, k, generator=g) * 0.02)
    x = torch.randn(m, k, generator=g).bfloat16()
    b = torch.randn(n, generator=g).bfloat16() if bias else None
    ref = x.double() @ w.dequantize(torch.float32).double().T + (b.double() if bias else 0)
    packed = prepack(w).to(dev)
    xd, bd = x.to(dev), (b.to(dev) if bias else None)
    cap = ws_gemm._capability(xd.device)
    why = ws_gemm.unsupported_reason(cap, ws_gemm.triton.__version__, x.dtype, 32, k, m)
    if why:
        with pytest.raises(RuntimeError, match="cannot run here"):
            rs_gemm.rs_linear(xd, packed, bd)
        return
    y = rs_gemm.rs_linear(xd, packed, bd).double().cpu()
    assert ((y - ref).norm() / ref.norm()).item() <= 1e-2
