"""The fused MoE forward on GPU (or under TRITON_INTERPRET=1): routing, grouping, two grouped
W4A16 GEMMs. Reference twin: `mxfp4.nn.moe.moe_reference`.

No host synchronisation: buffer sizes depend only on T, k and E (worst-case block counts),
so the forward can be captured in a CUDA graph. Two paths, chosen from T alone:

decode (T * k <= DECODE_MAX_PAIRS), 4 launches, one (token, slot) pair per row block:
    router logits -> W1 with top-k in its prologue (+bias, SwiGLU) -> W2 (+bias, x routing
    weight, by pair) -> sum of each token's k rows.
batch, 5 launches + one memset:
    router + top-k + softmax + rank -> align (sorted pairs, block table) -> W1 (+bias, SwiGLU)
    -> W2 (+bias, x routing weight, scattered back to token order) -> sum of each token's k rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton

from .gemv import _w1_gemv_kernel, _w2_gemv_kernel
from .moe_gemm import _combine_kernel, _w1_kernel, _w2_kernel
from .moe_routing import _align_kernel, _logits_kernel, _route_kernel, num_blocks_max, pad_pow2

DECODE_MAX_PAIRS = 16  # T <= 4 at k = 4: beyond, re-reading shared experts costs more
# How the GEMMs turn MXFP4 tiles into bf16 (moe_gemm._mx_dot): "fp16" bit placement in plain
# Triton, "ptx" the packed-PTX decode of mxfp4.kernels.unpack, "dot_scaled" tl.dot_scaled.
UPCASTS = ("fp16", "ptx", "dot_scaled")


@dataclass(frozen=True)
class GemmConfig:
    bm: int
    bn: int
    bk: int
    warps: int = 4
    stages: int = 3
    group_m: int = 8
    upcast: str = "ptx"  # see UPCASTS
    maxnreg: int | None = None  # register cap: 128 lets two 8-warp (or four 4-warp) CTAs share an SM
    gemv: bool = False  # decode only: the CUDA-core GEMV of kernels/gemv.py (bm unused)

    def launch(self) -> dict:
        opts = dict(num_warps=self.warps)
        if self.maxnreg:
            opts["maxnreg"] = self.maxnreg
        return opts

    @property
    def upcast_id(self) -> int:
        if self.upcast not in UPCASTS:
            raise ValueError(f"upcast must be one of {UPCASTS}, got {self.upcast!r}")
        return UPCASTS.index(self.upcast)


@dataclass(frozen=True)
class MoEConfig:
    decode: bool
    w1: GemmConfig
    w2: GemmConfig


def default_config(tokens: int, k: int, experts: int) -> MoEConfig:
    """Tile shapes by the number of (token, expert) pairs per expert, from `mxfp4 bench moe
    --sweep` on an H100 (docs/benchmarks/moe-sweep.md).

    Few pairs per expert: weight streaming and the in-register upcast dominate; 16-row tiles
    with a 128-register cap (four CTAs per SM) hide the most latency. Many pairs: wgmma tiles of
    128 x 128, capped at 128 registers so that two CTAs share an SM and one's upcast overlaps
    the other's matrix products.
    """
    if tokens * k <= DECODE_MAX_PAIRS:  # (the CUDA-core GEMV, gemv=True, measured slower)
        return MoEConfig(True, GemmConfig(16, 64, 128, 4, 4, maxnreg=128),
                         GemmConfig(16, 32, 128, 4, 4, maxnreg=128))
    per_expert = tokens * k / experts
    if per_expert <= 12:
        g = GemmConfig(16, 128, 128, 4, 4, maxnreg=128)
    elif per_expert <= 48:
        g = GemmConfig(64, 128, 64, 8, 3, maxnreg=128)
    else:
        g = GemmConfig(128, 128, 64, 8, 3, maxnreg=128)
    return MoEConfig(False, g, g)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_fits(x, w1_codes, w1_scales, w2_codes, w2_scales, router_w):
    E, H = router_w.shape
    I = w1_codes.shape[1] // 2
    if H % 32 or I % 32:
        raise ValueError(f"the Triton MoE needs H and I to be multiples of 32, got H={H}, I={I}")
    if (x.shape[-1] != H or w1_codes.shape != (E, 2 * I, H // 2) or w2_codes.shape != (E, H, I // 2)
            or w1_scales.shape != (E, 2 * I, H // 32) or w2_scales.shape != (E, H, I // 32)):
        raise ValueError(f"inconsistent MoE shapes: x {tuple(x.shape)}, router {tuple(router_w.shape)}, "
                         f"w1 codes/scales {tuple(w1_codes.shape)}/{tuple(w1_scales.shape)}, "
                         f"w2 codes/scales {tuple(w2_codes.shape)}/{tuple(w2_scales.shape)}")
    return E, H, I


def moe_forward(x: torch.Tensor, router_w, router_b, w1_codes, w1_scales, b1, w2_codes, w2_scales,
                b2, k: int, alpha: float = 1.702, limit: float = 7.0, fold: bool = True,
                config: MoEConfig | None = None) -> torch.Tensor:
    """GPT-OSS MoE on x [T, H]: returns [T, H] in x's dtype. Weights as in `mxfp4.nn.MoE`.

    fold: every scale byte of both weights is <= 240 (checked once by the module), so the
    upcast can use one multiply per element.
    """
    E, H, I = _check_fits(x, w1_codes, w1_scales, w2_codes, w2_scales, router_w)
    T = x.shape[0]
    dev = x.device
    out = torch.empty(T, H, dtype=x.dtype, device=dev)
    if T == 0:
        return out
    if x.stride(-1) != 1:
        x = x.contiguous()
    cfg = config or default_config(T, k, E)
    P = T * k
    k_pad, e_pad = pad_pow2(k), pad_pow2(E, 16)
    interp = _interpreting()
    ids = torch.empty(P, dtype=torch.int32, device=dev)
    wts = torch.empty(P, dtype=torch.float32, device=dev)
    a = torch.empty(P, I, dtype=torch.bfloat16, device=dev)
    y = torch.empty(P, H, dtype=torch.bfloat16, device=dev)
    g1, g2 = cfg.w1, cfg.w2
    if cfg.decode:  # one row block per pair; no grouping
        nb = P
        logits = torch.empty(T, e_pad, dtype=torch.float32, device=dev)
        _logits_kernel[(T, triton.cdiv(E, 4))](x, router_w, router_b, logits, H, E, x.stride(0),
                                               router_w.stride(0), E_PAD=e_pad, BE=4, BK=512,
                                               INTERPRET=interp)
        tables = (ids, ids, ids, ids)  # unused placeholders
    else:
        if g1.bm != g2.bm:
            raise ValueError("the batch path shares one block table: w1 and w2 need the same bm")
        nb = num_blocks_max(P, E, g1.bm)
        logits = wts  # unused placeholder
        counts = torch.zeros(e_pad, dtype=torch.int32, device=dev)
        rank = torch.empty(P, dtype=torch.int32, device=dev)
        tables = tuple(torch.empty(n, dtype=torch.int32, device=dev) for n in (P, nb, nb, nb))
        bt = 16 if T <= 256 else 64
        _route_kernel[(triton.cdiv(T, bt),)](x, router_w, router_b, ids, wts, rank, counts, T, H, E,
                                             x.stride(0), router_w.stride(0), K=k, K_PAD=k_pad,
                                             E_PAD=e_pad, BT=bt, BK=64, INTERPRET=interp,
                                             num_warps=4)
        chunk = 64  # the [chunk, E] selection matrices stay in registers
        _align_kernel[(triton.cdiv(max(P, nb), chunk),)](ids, rank, counts, *tables, P, nb, E,
                                                         E_PAD=e_pad, BM=g1.bm, CHUNK=chunk,
                                                         num_warps=4)
    if g1.gemv != g2.gemv or (g1.gemv and not cfg.decode) or (g1.gemv and g1.bn % 2):
        raise ValueError("the GEMV runs on the decode path only, for both GEMMs, with an even w1 bn")
    if g1.gemv:
        _w1_gemv_kernel[(P * triton.cdiv(2 * I, g1.bn),)](
            x, w1_codes, w1_scales, b1, a, logits, ids, wts, H, 2 * I, E, P, x.stride(0), alpha,
            limit, K=k, K_PAD=k_pad, E_PAD=e_pad, BN=g1.bn, BK=g1.bk, EVEN_N=(2 * I) % g1.bn == 0,
            INTERPRET=interp, **g1.launch())
        _w2_gemv_kernel[(P * triton.cdiv(H, g2.bn),)](
            a, w2_codes, w2_scales, b2, ids, wts, y, I, H, P, BN=g2.bn, BK=g2.bk,
            EVEN_N=H % g2.bn == 0, INTERPRET=interp, **g2.launch())
        bh = 1024
        _combine_kernel[(T, triton.cdiv(H, bh))](y, out, H, out.stride(0), K=k, BH=bh,
                                                 INTERPRET=interp, num_warps=4)
        return out
    _w1_kernel[(nb * triton.cdiv(2 * I, g1.bn),)](
        x, w1_codes, w1_scales, b1, a, *tables, logits, ids, wts,
        H, 2 * I, E, nb, x.stride(0), alpha, limit, K=k, K_PAD=k_pad, E_PAD=e_pad,
        DECODE=cfg.decode, BM=g1.bm, BN=g1.bn, BK=g1.bk, GROUP_M=g1.group_m,
        EVEN_N=(2 * I) % g1.bn == 0, FOLD=fold, UPCAST=g1.upcast_id, STAGES=g1.stages,
        INTERPRET=interp, **g1.launch())
    _w2_kernel[(nb * triton.cdiv(H, g2.bn),)](
        a, w2_codes, w2_scales, b2, ids, wts, y, *tables, I, H, nb, DECODE=cfg.decode,
        BM=g2.bm, BN=g2.bn, BK=g2.bk, GROUP_M=g2.group_m, EVEN_N=H % g2.bn == 0, FOLD=fold,
        UPCAST=g2.upcast_id, STAGES=g2.stages, INTERPRET=interp, **g2.launch())
    bh = 1024
    _combine_kernel[(T, triton.cdiv(H, bh))](y, out, H, out.stride(0), K=k, BH=bh,
                                             INTERPRET=interp, num_warps=4)
    return out
