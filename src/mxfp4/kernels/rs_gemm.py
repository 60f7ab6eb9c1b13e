"""Host side of the register-operand MXFP4 x bf16 GEMM (kernels/rs_gemm_kernel.py, Gluon):
the weights are decoded by the warpgroup that multiplies, into wgmma's A registers.

`rs_linear(x, w, bias)` = x @ dequantize(w).T + bias for bf16 x [..., K] and a HopperWeight w
(layouts.prepack), fp32 accumulation, bf16 out. Reference twin: `mxfp4.ops.linear(x, w, bias,
backend="reference")`; on the device, float64 math on the dequantized weight
(benchmarks/ws_gemm_device.py). Same hardware and triton rules as kernels/ws_gemm.py
(`ws_gemm.unsupported_reason`); this module imports no Gluon until a kernel is compiled.
"""

from __future__ import annotations

import torch
import triton

from ..layouts import HopperWeight
from . import ws_gemm

BK = 64  # K per step: one HopperWeight group, two scale blocks


def tile_config(bm: int, num_warps: int) -> dict:
    """BN = 16 weight rows a warp x bm tokens; enough ring slots to keep ~32 KB of x and codes
    in flight; a register cap for the accumulator (bm / 2 a thread), two A sets (32) and the
    decode's scratch: fewer registers let more CTAs share an SM (4 warps + the loader at 80:
    three). One warpgroup keeps the loader warp; two or four go without it, at 128 registers
    (8 warps: two CTAs an SM), measured on an H100 (docs/kernels.md, fourth session: 54.0
    against 70.1 us with the loader at 4096->14336, M = 256)."""
    bn = 16 * num_warps
    step_bytes = bm * BK * 2 + bn * BK // 2 + 2 * bn
    stages = max(3, min(8, (32 * 1024) // step_bytes + 1))
    loader = num_warps == 4
    maxnreg = next(r for r in (80, 104, 128, 168, 232) if r >= bm // 2 + 72) if loader else 128
    return dict(BN=bn, BM=bm, SPLIT_K=1, GROUP_M=8, STAGES=stages, num_warps=num_warps,
                maxnreg=maxnreg, LOADER=loader)


def rs_config(m: int, n: int, k: int, sm_count: int = 132) -> dict:
    """Tile and launch parameters: one warpgroup (64 weight rows) x BM tokens, BM the batch
    rounded up to a power of two from 16; past 64 tokens two warpgroups (128 weight rows) x
    128 tokens without the loader warp: 20 KB of x and codes a K step for 1 M MACs, against
    34 KB for 64 x 256 (L2 traffic limits the big tiles). Four warpgroups (256 x 128) measured
    slower at M = 4096 (1020 against 825 us at 4096->14336) and stay a config, not a pick.
    Split K while the tiles are fewer than the SMs."""
    bm = 16
    while bm < min(m, 128):
        bm *= 2
    cfg = tile_config(bm, 8 if m > 64 else 4)
    tiles = triton.cdiv(n, cfg["BN"]) * triton.cdiv(m, bm)
    steps = triton.cdiv(k, BK)
    split = 1
    while tiles * split * 2 <= sm_count * 2 and steps // (split * 2) >= 8:
        split *= 2
    cfg["SPLIT_K"] = split
    return cfg


def config_problem(cfg: dict) -> str | None:
    """Why this config cannot compile or run on an H100, or None when it fits."""
    need = {"BN", "BM", "SPLIT_K", "GROUP_M", "STAGES", "num_warps", "maxnreg", "LOADER"}
    if set(cfg) != need:
        return f"config keys must be {sorted(need)}, got {sorted(cfg)}"
    bn, bm, nw = cfg["BN"], cfg["BM"], cfg["num_warps"]
    if nw not in (4, 8, 16) or bn != 16 * nw:
        return f"num_warps must be 4, 8 or 16 with BN = 16 a warp, got {nw}, BN {bn}"
    if bm not in (16, 32, 64, 128, 256):
        return f"BM must be a power of two in 16..256, got {bm}"
    warps = nw + (4 if cfg["LOADER"] else 0)  # the loader warp, padded to a warpgroup
    if cfg["maxnreg"] * warps * 32 > ws_gemm.REGISTERS:
        return f"{warps} warps x {cfg['maxnreg']} registers exceed the register file"
    # accumulator (BM / 2 a thread) + two sets of A registers (16 each) + the decode's
    # scratch (about 24: ptxas fit BM = 128 in 128 registers); the consumer is compiled
    # under the kernel's cap
    if bm // 2 + 32 + 24 > cfg["maxnreg"]:
        return f"BM = {bm} needs about {bm // 2 + 56} registers a thread, maxnreg is " \
               f"{cfg['maxnreg']}"
    smem = cfg["STAGES"] * (bm * BK * 2 + bn * BK // 2 + 2 * bn) + max(bn * bm, 8192) + 1024
    if smem > ws_gemm.SMEM_BYTES:
        return f"about {smem} bytes of shared memory, more than {ws_gemm.SMEM_BYTES}"
    if not 2 <= cfg["STAGES"] <= 12:
        return f"STAGES must be 2..12, got {cfg['STAGES']}"
    return None


def rs_linear(x: torch.Tensor, w: HopperWeight, bias: torch.Tensor | None = None,
              config: dict | None = None) -> torch.Tensor:
    """x @ dequantize(w).T + bias in bf16 (fp32 accumulation) on the register-operand kernel;
    w: a HopperWeight; config: rs_config's keys (default: rs_config for this product)."""
    if not isinstance(w, HopperWeight):
        raise TypeError(f"rs_linear takes a HopperWeight (mxfp4.layouts.prepack), got "
                        f"{type(w).__name__}")
    why = config_problem(config) if config is not None else None
    if why:
        raise ValueError(f"rs_linear config {config}: {why}")
    ws_gemm._check(x, w, bias)
    n, k = w.shape
    x2 = ws_gemm._tma_ready(x.reshape(-1, k))
    m = x2.shape[0]
    out = torch.empty(m, n, dtype=torch.bfloat16, device=x.device)
    if m == 0:
        return out.reshape(*x.shape[:-1], n)
    from .linear import _sm_count
    cfg = dict(config or rs_config(m, n, k, _sm_count(x.device)))
    kernel, args, kwargs, grid = launch_args(x2, w.codes, w.scales, bias, out, cfg,
                                             fused=w.max_scale <= 128)
    kernel[grid](*args, **kwargs)
    return out.reshape(*x.shape[:-1], n)


def descriptors(rows, codes, scales, bm: int, bn: int):
    """TMA descriptors: activation rows [P, K] (box bm x BK), codes [R, KP/2] (box bn x BK/2),
    scales [KS, NP] (box 2 x bn)."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    x_desc = TensorDescriptor.from_tensor(
        rows, [bm, BK], gl.NVMMASharedLayout.get_default_for([bm, BK], gl.bfloat16))
    q_desc = TensorDescriptor.from_tensor(
        codes, [bn, BK // 2], gl.NVMMASharedLayout.get_default_for([bn, BK // 2], gl.uint8))
    from .rs_gemm_kernel import scale_smem
    s_desc = TensorDescriptor.from_tensor(scales, [2, bn], scale_smem())
    return x_desc, q_desc, s_desc


def launch_args(x2, codes, scales, bias, out, cfg: dict, fused: bool):
    """(kernel, args, keyword args, grid) of one launch; also what scripts/compile_sm90.py
    compiles offline with CPU tensors."""
    from .rs_gemm_kernel import rs_gemm_kernel
    cfg = dict(cfg)
    bn, bm, split = cfg.pop("BN"), cfg.pop("BM"), cfg.pop("SPLIT_K")
    m, k = x2.shape
    n = out.shape[1]
    x_desc, q_desc, s_desc = descriptors(x2, ws_gemm._tma_ready(codes), scales.contiguous(),
                                         bm, bn)
    k_chunk, split, tiles, ws, locks = ws_gemm.split_k(m, n, k, bm, bn, split, out)
    args = (x_desc, q_desc, s_desc, bias if bias is not None else out, out, ws, locks, m, n, k,
            out.stride(0), k_chunk)
    kwargs = dict(HAS_BIAS=bias is not None, SPLIT_K=split, FUSED=fused, **cfg)
    return rs_gemm_kernel, args, kwargs, (tiles, split)


def compile_args(m: int, n: int, k: int, sm_count: int = 132, **overrides):
    """(kernel, args, keyword args) for an offline compile of the [m, k] x [n, k] product with
    CPU tensors standing in for CUDA ones (scripts/compile_sm90.py); overrides: config keys."""
    kp, np_ = -(-k // BK) * BK, -(-n // 128) * 128
    x2 = torch.empty(m, k, dtype=torch.bfloat16)
    codes = torch.empty(np_, kp // 2, dtype=torch.uint8)
    scales = torch.empty(kp // ws_gemm.BLOCK, np_, dtype=torch.uint8)
    out = torch.empty(m, n, dtype=torch.bfloat16)
    cfg = dict(rs_config(m, n, k, sm_count), **overrides)
    kernel, args, kwargs, _ = launch_args(x2, codes, scales, None, out, cfg, fused=True)
    return kernel, args, kwargs
