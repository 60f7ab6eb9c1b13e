"""Host side of the MoE's grouped W1 and W2 GEMMs on the warp-specialized tile
(kernels/ws_moe_kernel.py, Gluon, issue 24). `moe_forward` uses them for the batch path when
its config says `MoEConfig(ws=True)`; reference twins: the Triton `_w1_kernel` / `_w2_kernel`
(kernels/moe_gemm.py), which compute the same rows from the same block table, and
`mxfp4.nn.moe.moe_reference`. W1's token rows are gathered into sorted-pair order first (TMA
cannot gather on Hopper): T * k * H * 2 bytes written and read again.

Like kernels/ws_gemm.py this module imports no Gluon until a kernel is compiled.
"""

from __future__ import annotations

import torch
import triton

from . import ws_gemm

BN = 64  # output columns a tile: divides the experts' rows, padded to multiples of 64


def tile_config(bm: int) -> dict:
    """ws_gemm's config keys for W1 or W2 row blocks of bm pairs: 64 weight rows (one m64
    wgmma) x bm tokens, a loader warp, four decoded tiles in flight."""
    return dict(BN=BN, BM=bm, SPLIT_K=1, GROUP_M=8, STAGES={16: 8, 32: 8, 64: 6}.get(bm, 4),
                DECODED=4, DECODERS=1, num_warps=4, maxnreg=168, DECODE_WARPS=4,
                DECODE_REGS=96, LOADER=True)


def rs_tile_config(bm: int, bn: int = BN) -> dict:
    """rs_gemm's config keys for row blocks of bm pairs on the register-operand tile: bn = 64
    weight rows (one warpgroup and the loader warp) or 128 (two warpgroups without it, two CTAs
    an SM: the dense GEMM's better tile past 64 tokens)."""
    from . import rs_gemm
    return rs_gemm.tile_config(bm, bn // 16)


def unsupported_reason(a: torch.Tensor, fused: bool) -> str | None:
    """Why the kernels cannot run for these activations (x for W1, a for W2), or None."""
    cap = ws_gemm._capability(a.device)
    why = ws_gemm.unsupported_reason(cap, triton.__version__, a.dtype, ws_gemm.BLOCK,
                                     ws_gemm.BLOCK)
    if why is None and not fused:
        why = "it decodes with one fma a pair, which needs every scale byte <= 128"
    return why


def _descriptors(rows, codes, bm: int, scales=None, bn: int = BN):
    """TMA descriptors of the activation rows [P, K] (box bm x BK) and the stacked experts'
    codes [E * NP, KP/2] (box bn x BK/2); with scales [E, KS, NP] (the rs tile) also theirs,
    [E * KS, NP] (box 2 x bn); else the codes' descriptor stands in (unused)."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    bk = ws_gemm.BK
    experts, np_, half_kp = codes.shape
    x_desc = TensorDescriptor.from_tensor(
        ws_gemm._tma_ready(rows), [bm, bk],
        gl.NVMMASharedLayout.get_default_for([bm, bk], gl.bfloat16))
    q_desc = TensorDescriptor.from_tensor(
        codes.reshape(experts * np_, half_kp), [bn, bk // 2],
        gl.NVMMASharedLayout.get_default_for([bn, bk // 2], gl.uint8))
    if scales is None:
        return x_desc, q_desc, q_desc
    from .rs_gemm_kernel import scale_smem
    s_desc = TensorDescriptor.from_tensor(scales.reshape(-1, scales.shape[-1]), [2, bn],
                                          scale_smem())
    return x_desc, q_desc, s_desc


def _launch_config(rows, fused: bool, bm: int, config: dict | None, tile: str, np_: int,
                   bn: int = BN) -> dict:
    """The kernel's keyword arguments, after checking that it can run and the config fits;
    bn: weight rows a tile (the rs tile: 64 or 128, dividing the experts' padded rows np_;
    the ws tile: 64 always)."""
    why = unsupported_reason(rows, fused)
    if why:
        raise ValueError(f"MoEConfig(ws=True): the warp-specialized grouped GEMMs cannot run "
                         f"here: {why}")
    if tile not in ("ws", "rs"):
        raise ValueError(f"the Gluon MoE tile must be 'ws' or 'rs', got {tile!r}")
    from . import rs_gemm
    rs = tile == "rs"
    bn = bn if rs else BN
    if bn not in (64, 128) or np_ % bn:
        raise ValueError(f"{tile} MoE tile: {bn} weight rows a tile must be 64 or 128 and "
                         f"divide the experts' {np_} padded rows")
    cfg = dict(config or (rs_tile_config(bm, bn) if rs else tile_config(bm)))
    problem = (rs_gemm if rs else ws_gemm).config_problem(cfg)
    if problem is None and (cfg["BM"] != bm or cfg["BN"] != bn or not (rs or cfg["LOADER"])):
        problem = f"BM must be the blocks' {bm} rows, BN {bn}; the ws tile needs the loader warp"
    if problem:
        raise ValueError(f"{tile} MoE config {cfg}: {problem}")
    for key in ("BN", "BM", "SPLIT_K"):
        cfg.pop(key)
    return dict(FUSED=True, RS=rs, **cfg)


def _rs_keys(kwargs: dict) -> dict:
    """The ws tile's constexprs that the rs tile does not have, filled for the kernel's
    signature (unused under RS)."""
    if kwargs["RS"]:
        return dict(DECODED=2, DECODERS=1, DECODE_WARPS=4, DECODE_REGS=96, **kwargs)
    return kwargs


def gather_rows(x: torch.Tensor, sorted_pairs: torch.Tensor, k: int) -> torch.Tensor:
    """x's token rows in sorted-pair order (W1's input rows; the block tables of the main and
    the tail blocks share the sorted pairs, so one gather serves both)."""
    return x.index_select(0, sorted_pairs.long() // k)


def _prepare(rows, codes, scales, bm: int, fused: bool, config: dict | None, tile: str,
             bn: int):
    """(the kernel's keyword arguments, its three TMA descriptors, column tiles an expert) for
    activation rows `rows` against the stacked experts' codes [E, NP, KP/2]."""
    np_ = codes.shape[1]
    kwargs = _launch_config(rows, fused, bm, config, tile, np_, bn)
    bn = bn if kwargs["RS"] else BN
    descs = _descriptors(rows, codes, bm, scales if kwargs["RS"] else None, bn)
    return kwargs, descs, np_ // bn


def ws_w1(xs, w1_codes, w1_scales, b1, a, tables, nb: int, bm: int, alpha: float,
          limit: float, fused: bool, config: dict | None = None, tile: str = "ws",
          bn: int = BN) -> None:
    """a[row] = SwiGLU(xs[row] @ dequantize(W1[e]).T + b1[e]) for every row of the block table
    (as ws_w2); xs = gather_rows(x, ...) [P, H] bf16, a [P, I] bf16 in sorted-pair order."""
    kwargs, descs, tiles = _prepare(xs, w1_codes, w1_scales, bm, fused, config, tile, bn)
    from .ws_moe_kernel import ws_moe_w1_kernel
    np_, kp = w1_codes.shape[1], w1_codes.shape[2] * 2
    ws_moe_w1_kernel[(nb * tiles,)](
        *descs, w1_scales, b1, a, *tables[1:], b1.shape[-1], xs.shape[1], np_,
        kp // ws_gemm.BLOCK, nb, alpha, limit, **_rs_keys(kwargs))


def ws_w2(a, w2_codes, w2_scales, b2, wts, y, tables, nb: int, bm: int, fused: bool,
          config: dict | None = None, tile: str = "ws", bn: int = BN) -> None:
    """y[pair] = (a[row] @ dequantize(W2[e]).T + b2[e]) * wts[pair] for every row of the block
    table `tables` (sorted pairs, block expert, block start, block rows; nb blocks of bm rows):
    a [P, I] bf16 in expert-sorted order, W2 in the packed expert layout (codes [E, NP, KP/2],
    scales [E, KP/32, NP]), y [P, H] bf16 by pair."""
    kwargs, descs, tiles = _prepare(a, w2_codes, w2_scales, bm, fused, config, tile, bn)
    from .ws_moe_kernel import ws_moe_w2_kernel
    np_, half_kp = w2_codes.shape[1], w2_codes.shape[2]
    ws_moe_w2_kernel[(nb * tiles,)](
        *descs, w2_scales, b2, wts, y, *tables, y.shape[1], a.shape[1], np_,
        half_kp * 2 // ws_gemm.BLOCK, nb, **_rs_keys(kwargs))
