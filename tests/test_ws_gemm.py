"""CPU checks of the warp-specialized GEMM's host side (mxfp4.kernels.ws_gemm): who may run it,
the argument errors, and the tile rules. The Gluon kernel itself runs only on an sm_90 GPU
with triton 3.6: benchmarks/ws_gemm_device.py checks it there against float64 math, and
scripts/compile_sm90.py compiles it offline for its resource report."""

import importlib
import sys

import pytest
import torch

from mxfp4 import quantize
from mxfp4.kernels import ws_gemm
from mxfp4.layouts import prepack

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880), (2912, 2920)]  # (K, N)


def _weight(n=64, k=96):
    return quantize(torch.randn(n, k))


def test_hopper_with_triton_36_is_supported():
    assert ws_gemm.unsupported_reason((9, 0), "3.6.0", torch.bfloat16, 32, 2880, 16) is None
    assert ws_gemm.unsupported_reason((9, 0), "3.6.1", torch.bfloat16, 32, 32, 1) is None


@pytest.mark.parametrize("args, words", [
    ((None, "3.6.0", torch.bfloat16, 32, 2880, 16), "CUDA tensors"),
    (((8, 0), "3.6.0", torch.bfloat16, 32, 2880, 16), "sm_80"),
    (((10, 0), "3.6.0", torch.bfloat16, 32, 2880, 16), "sm_100"),
    (((9, 0), "3.9.0", torch.bfloat16, 32, 2880, 16), "found triton 3.9.0"),
    (((9, 0), "3.5.1", torch.bfloat16, 32, 2880, 16), "written for triton 3.6"),
    (((9, 0), "3.6.0", torch.float16, 32, 2880, 16), "bfloat16 activations"),
    (((9, 0), "3.6.0", torch.bfloat16, 16, 2880, 16), "blocks of 16"),
    (((9, 0), "3.6.0", torch.bfloat16, 32, 2890, 16), "multiple of 32"),
    (((9, 0), "3.6.0", torch.bfloat16, 32, 0, 16), "positive multiple"),
    (((9, 0), "3.6.0", torch.bfloat16, 32, 2880, 0), "no rows"),
])
def test_unsupported_reason_names_the_problem(args, words):
    why = ws_gemm.unsupported_reason(*args)
    assert why is not None and words in why


def test_dispatch_keeps_v1_off_hopper():
    w = _weight()
    x = torch.randn(32, 96).to(torch.bfloat16)
    assert not ws_gemm.use_ws_gemm(x, w)  # CPU tensors
    assert not ws_gemm.use_ws_gemm(x, prepack(w))  # the kernel reads plain MXTensors only
    assert not ws_gemm.use_ws_gemm(x, quantize(torch.randn(96, 64), axis=0))  # blocks along N


def test_dispatch_rule_on_a_hopper(monkeypatch):
    """On sm_90 with triton 3.6 the rule picks the kernel from MIN_M rows of bf16 on."""
    monkeypatch.setattr(ws_gemm, "_capability", lambda device: (9, 0))
    monkeypatch.setattr(ws_gemm.triton, "__version__", "3.6.0")
    w = _weight()
    for m, want in ((1, False), (ws_gemm.MIN_M - 1, False), (ws_gemm.MIN_M, True), (4096, True)):
        assert ws_gemm.use_ws_gemm(torch.zeros(m, 96, dtype=torch.bfloat16), w) is want, m
    assert not ws_gemm.use_ws_gemm(torch.zeros(64, 96, dtype=torch.float16), w)
    assert ws_gemm.use_ws_gemm(torch.zeros(2, 8, 96, dtype=torch.bfloat16), w)  # 16 rows
    assert not ws_gemm.use_ws_gemm(torch.zeros(64, 96, dtype=torch.bfloat16),
                                   quantize(torch.randn(64, 96), block_size=16))
    monkeypatch.setattr(ws_gemm.triton, "__version__", "3.9.0")
    assert not ws_gemm.use_ws_gemm(torch.zeros(64, 96, dtype=torch.bfloat16), w)


def test_ws_linear_argument_errors():
    w = _weight()
    x = torch.randn(16, 96).to(torch.bfloat16)
    with pytest.raises(TypeError, match="tensor x"):
        ws_gemm.ws_linear(x.tolist(), w)
    with pytest.raises(TypeError, match="MXTensor or HopperWeight"):
        ws_gemm.ws_linear(x, w.codes)
    with pytest.raises(RuntimeError, match="sm_90.*use mxfp4.linear"):  # the packed form runs too
        ws_gemm.ws_linear(x, prepack(w))
    with pytest.raises(ValueError, match="quantized along K"):
        ws_gemm.ws_linear(x, quantize(torch.randn(96, 64), axis=0))
    with pytest.raises(ValueError, match="K = 96"):
        ws_gemm.ws_linear(torch.randn(16, 64).to(torch.bfloat16), w)
    with pytest.raises(ValueError, match=r"bias must be a bf16 tensor of shape \(64,\)"):
        ws_gemm.ws_linear(x, w, torch.zeros(63, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="bias must be a bf16"):
        ws_gemm.ws_linear(x, w, torch.zeros(64))
    with pytest.raises(RuntimeError, match="sm_90.*use mxfp4.linear"):
        ws_gemm.ws_linear(x, w)
    with pytest.raises(RuntimeError, match="cannot run here"):
        ws_gemm.ws_dequantize(w)
    with pytest.raises(RuntimeError, match="cannot run here"):
        ws_gemm.ws_dequantize(prepack(w))
    with pytest.raises(TypeError, match="2-D MXTensor"):
        ws_gemm.ws_dequantize(w.codes)


@pytest.mark.parametrize("k, n", SHAPES)
@pytest.mark.parametrize("m", [1, 16, 17, 64, 100, 256, 1000, 4096, 16384])
def test_config_fits_the_hardware(k, n, m):
    c = ws_gemm.ws_config(m, n, k, sm_count=132)
    bm, bn, split = c["BM"], c["BN"], c["SPLIT_K"]
    assert bm >= 16 and bm & (bm - 1) == 0 and bm <= 256
    assert bm >= min(m, 128)  # one token tile up to 128 rows
    assert ws_gemm.config_problem(c) is None
    # the consumer's fp32 accumulator: at most 128 registers a thread, under the kernel's cap
    assert bn * bm // (32 * c["num_warps"]) <= min(128, c["maxnreg"] - 40)
    assert bn % 64 == 0 and bn // 16 >= c["DECODE_WARPS"]  # wgmma: 64-row groups; decoder rows
    assert ws_gemm.shared_bytes(c) <= 227 * 1024
    assert c["maxnreg"] * ws_gemm.total_warps(c) * 32 <= 65536
    steps = -(-k // ws_gemm.BK)
    tiles = -(-n // bn) * -(-m // bm)
    if split > 1:
        assert tiles * split <= 132 and steps // split >= 8
    else:
        assert tiles * 2 > 132 or steps // 2 < 8


def test_small_batches_split_k_when_tiles_are_few():
    assert ws_gemm.ws_config(16, 2880, 2880)["SPLIT_K"] == 4  # 23 weight tiles
    assert ws_gemm.ws_config(16, 14336, 4096)["SPLIT_K"] == 1  # 112 weight tiles
    assert ws_gemm.ws_config(64, 4096, 14336)["SPLIT_K"] == 4  # 32 tiles, 224 K steps


def test_module_loads_without_gluon():
    """The host module imports no Gluon (CI's triton has another Gluon API)."""
    for gluon_module in ("mxfp4.kernels.ws_gemm_kernel", "mxfp4.kernels.ws_decode"):
        sys.modules.pop(gluon_module, None)
    importlib.reload(ws_gemm)
    assert "mxfp4.kernels.ws_gemm_kernel" not in sys.modules
    assert "mxfp4.kernels.ws_decode" not in sys.modules


def test_tma_operands_are_contiguous_and_16_byte_aligned():
    from mxfp4.kernels.ws_gemm import _tma_ready

    base = torch.zeros(4, 72, dtype=torch.bfloat16)
    view = base.view(-1)[1:1 + 64].view(1, 64)  # contiguous, but 2 bytes past the start
    assert view.is_contiguous() and view.data_ptr() % 16
    fixed = _tma_ready(view)
    assert fixed.data_ptr() % 16 == 0 and fixed.is_contiguous() and torch.equal(fixed, view)
    assert _tma_ready(base) is base  # nothing to do: no copy
    strided = base[:, ::2]
    assert _tma_ready(strided).is_contiguous() and torch.equal(_tma_ready(strided), strided)


def test_large_batches_take_two_consumer_warpgroups_without_a_loader_warp():
    c = ws_gemm.ws_config(4096, 14336, 4096)
    assert (c["BN"], c["BM"], c["num_warps"], c["LOADER"]) == (128, 256, 8, False)
    assert ws_gemm.total_warps(c) == 12  # 8 consumer + 4 decoder: 168 registers fit
    assert ws_gemm.total_warps(dict(c, LOADER=True)) == 16  # a loader warp pads to 16
    assert "accumulator" in ws_gemm.config_problem(dict(c, LOADER=True, maxnreg=128))
    small = ws_gemm.ws_config(16, 14336, 4096)
    assert (small["num_warps"], small["LOADER"], ws_gemm.total_warps(small)) == (4, True, 12)


def test_two_decoder_partitions_and_a_deeper_decoded_ring_fit():
    c = dict(ws_gemm.ws_config(16, 14336, 4096), DECODERS=2, DECODED=4, maxnreg=128)
    assert ws_gemm.config_problem(c) is None
    assert ws_gemm.total_warps(c) == 16  # 4 consumer + 2 x 4 decoder + the loader, padded
    # 256 weight rows x 128 tokens: two m64n128 wgmmas a warpgroup fit maxnreg 128
    wide = dict(ws_gemm.ws_config(4096, 14336, 4096), BN=256, BM=128, DECODE_WARPS=8,
                maxnreg=128)
    assert ws_gemm.config_problem(wide) is None


def test_shared_memory_estimate_matches_the_offline_compiles():
    """scripts/compile_sm90.py (triton 3.6, sm_90a) reported these bytes for these configs."""
    base = ws_gemm.ws_config(16, 14336, 4096)
    for change, compiled in ((dict(BM=16, STAGES=8), 94504), (dict(BM=128, STAGES=4), 135336),
                             (dict(BN=64, BM=256, STAGES=3), 139432),
                             (dict(BM=256, STAGES=4, num_warps=8, LOADER=False), 217188),
                             (dict(BM=16, STAGES=4, LOADER=False, maxnreg=128), 69732),
                             (dict(BM=16, STAGES=8, DECODED=4), 127304),
                             (dict(BM=16, STAGES=8, DECODED=4, DECODERS=2, maxnreg=128), 131404),
                             (dict(BN=256, BM=128, STAGES=4, num_warps=8, LOADER=False),
                              204900)):
        est = ws_gemm.shared_bytes(dict(base, **change))
        assert compiled <= est <= compiled + 2048, (change, est)


@pytest.mark.parametrize("change, words", [
    (dict(BN=96), "BN must be"), (dict(BM=512), "BN must be"), (dict(DECODE_WARPS=6), "4 or 8"),
    (dict(BN=64, DECODE_WARPS=8), "BN >= 16"), (dict(maxnreg=200), "register file"),
    (dict(BM=256, maxnreg=128, num_warps=8, DECODE_WARPS=8, LOADER=False), "accumulator"),
    (dict(BM=256, STAGES=6, num_warps=8, LOADER=False), "shared memory"),
    (dict(extra=1), "config keys"),
    (dict(BM=16, STAGES=4, LOADER=False, maxnreg=128), "wrong results on the H100"),
    (dict(DECODERS=3), "DECODERS must be"), (dict(DECODED=7), "DECODERS must be"),
    (dict(DECODERS=2, DECODED=3), "DECODERS must be"),
    (dict(DECODERS=2, STAGES=5, DECODED=4, maxnreg=128), "DECODERS must be"),
    (dict(DECODERS=2, DECODED=4, LOADER=False), "loader warp"),
    (dict(DECODERS=2, DECODED=4), "register file"),  # 4 + 2 x 4 + 1 warps, padded to 16
])
def test_config_problem_names_what_does_not_fit(change, words):
    c = dict(ws_gemm.ws_config(16, 14336, 4096), **change)
    why = ws_gemm.config_problem(c)
    assert why is not None and words in why, why


def test_ws_linear_rejects_a_config_that_does_not_fit():
    w = _weight()
    x = torch.randn(16, 96).to(torch.bfloat16)
    bad = dict(ws_gemm.ws_config(16, 64, 96), maxnreg=255)
    with pytest.raises(ValueError, match="register file"):
        ws_gemm.ws_linear(x, w, config=bad)
    incomplete = ws_gemm.ws_config(16, 64, 96)
    del incomplete["LOADER"]
    with pytest.raises(ValueError, match="config keys"):
        ws_gemm.ws_linear(x, w, config=incomplete)
