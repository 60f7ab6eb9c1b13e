"""Host side of the MoE's grouped W2 GEMM on the warp-specialized tile (kernels/ws_moe_kernel.py,
Gluon, issue 24). `moe_forward` uses it for the batch path's W2 when its config says
`MoEConfig(ws=True)`; reference twin: the Triton `_w2_kernel` (kernels/moe_gemm.py), which
computes the same rows from the same block table, and `mxfp4.nn.moe.moe_reference`.

Like kernels/ws_gemm.py this module imports no Gluon until a kernel is compiled.
"""

from __future__ import annotations

import torch
import triton

from . import ws_gemm

BN = 64  # output columns a tile: divides the experts' rows, padded to multiples of 64


def w2_config(bm: int) -> dict:
    """ws_gemm's config keys for W2 row blocks of bm pairs: 64 weight rows (one m64 wgmma) x
    bm tokens, a loader warp, four decoded tiles in flight."""
    return dict(BN=BN, BM=bm, SPLIT_K=1, GROUP_M=8, STAGES={16: 8, 32: 8, 64: 6}.get(bm, 4),
                DECODED=4, DECODERS=1, num_warps=4, maxnreg=168, DECODE_WARPS=4,
                DECODE_REGS=96, LOADER=True)


def unsupported_reason(a: torch.Tensor, fused: bool) -> str | None:
    """Why the kernel cannot run W2 for this input, or None."""
    cap = ws_gemm._capability(a.device)
    why = ws_gemm.unsupported_reason(cap, triton.__version__, a.dtype, ws_gemm.BLOCK,
                                     ws_gemm.BLOCK)
    if why is None and not fused:
        why = "it decodes with one fma a pair, which needs every scale byte <= 128"
    return why


def ws_w2(a, w2_codes, w2_scales, b2, wts, y, tables, nb: int, bm: int, fused: bool,
          config: dict | None = None) -> None:
    """y[pair] = (a[row] @ dequantize(W2[e]).T + b2[e]) * wts[pair] for every row of the block
    table `tables` (sorted pairs, block expert, block start, block rows; nb blocks of bm rows):
    a [P, I] bf16 in expert-sorted order, W2 in the packed expert layout (codes [E, NP, KP/2],
    scales [E, KP/32, NP]), y [P, H] bf16 by pair."""
    why = unsupported_reason(a, fused)
    if why:
        raise ValueError(f"MoEConfig(ws=True): the warp-specialized W2 cannot run here: {why}")
    cfg = dict(config or w2_config(bm))
    problem = ws_gemm.config_problem(cfg)
    if problem or cfg["BM"] != bm or cfg["BN"] != BN or not cfg["LOADER"]:
        raise ValueError(f"ws W2 config {cfg}: "
                         f"{problem or 'BM must be the blocks rows, BN 64, the loader warp on'}")
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from .ws_moe_kernel import ws_moe_w2_kernel
    experts, np_, half_kp = w2_codes.shape
    bk = ws_gemm.BK
    a = ws_gemm._tma_ready(a)
    a_desc = TensorDescriptor.from_tensor(
        a, [bm, bk], gl.NVMMASharedLayout.get_default_for([bm, bk], gl.bfloat16))
    q_desc = TensorDescriptor.from_tensor(
        w2_codes.reshape(experts * np_, half_kp), [BN, bk // 2],
        gl.NVMMASharedLayout.get_default_for([BN, bk // 2], gl.uint8))
    for key in ("BN", "BM", "SPLIT_K", "LOADER"):
        cfg.pop(key)
    ws_moe_w2_kernel[(nb * (np_ // BN),)](
        a_desc, q_desc, w2_scales, b2, wts, y, *tables, y.shape[1], a.shape[1], np_,
        half_kp * 2 // ws_gemm.BLOCK, nb, FUSED=True, **cfg)
