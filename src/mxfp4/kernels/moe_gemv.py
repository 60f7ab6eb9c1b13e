"""The MoE decode's two expert GEMMs on the tensor-core GEMV (kernels/mma_gemv.py).

Reference twin: `mxfp4.nn.moe.moe_reference`. Same jobs as the DECODE paths of
kernels/moe_gemm.py (SwiGLU in W1's epilogue; bias and routing weight in W2's), for bf16 x
and weights whose scale bytes are all <= 128: a program is one
(token, slot) pair x 16 weight rows, its K_WARPS warps split K = 2880 into 128-wide steps,
and only MMA column 0 (the pair's one x row) is used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .mma_gemv import column0_rows, k_loop
from .moe_routing import round_to, swiglu
from .pdl import release_dependents, wait_for_inputs


@triton.jit
def _expert_rows(x_row, codes_ptr, scales_ptr, e, pid_n, K, KP, NP, K_WARPS: tl.constexpr):
    """Rows 16 pid_n .. + 7 and + 8 .. + 15 of W[e] @ x_row ([8] fp32 each)."""
    L: tl.constexpr = 32 * K_WARPS
    lane = tl.arange(0, L)
    g = (lane % 32) // 4
    e64 = e.to(tl.int64)
    x32 = x_row.to(tl.pointer_type(tl.int32)) + lane * 0  # column 0 of the MMA: lanes g = 0
    c0, c1, c2, c3, d0, d1, d2, d3 = k_loop(
        codes_ptr + e64 * NP * (KP // 2), scales_ptr + e64 * (KP // 32) * NP, x32, g < 1, x32,
        g < 1, pid_n * 16 + g, 0, (KP + 127) // 128, K, KP, NP, L, K_WARPS, False)
    return column0_rows(c0, c2, K_WARPS)


@triton.jit
def _w1_gemv_kernel(x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr, ids_ptr,
                    H, KP, N2, NP, NB, stride_x, alpha, limit,
                    K: tl.constexpr, K_WARPS: tl.constexpr, INTERPRET: tl.constexpr):
    """a[pair] = SwiGLU(x[token] @ W1[e].T + b1[e]) for 8 of its columns (16 W1 rows)."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    # pairs innermost: a token's slots read their experts side by side
    _w1_rows(pid % NB, pid // NB, x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr, ids_ptr,
             H, KP, N2, NP, stride_x, alpha, limit, K, K_WARPS, INTERPRET)


@triton.jit
def _w2_gemv_kernel(a_ptr, codes_ptr, scales_ptr, bias_ptr, ids_ptr, wts_ptr, y_ptr,
                    I, KP, H, NP, NB, K_WARPS: tl.constexpr, INTERPRET: tl.constexpr):
    """y[pair] = (a[pair] @ W2[e].T + b2[e]) x the pair's routing weight, for 16 rows."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    _w2_rows(pid % NB, pid // NB, a_ptr, codes_ptr, scales_ptr, bias_ptr, ids_ptr, wts_ptr,
             y_ptr, I, KP, H, NP, K_WARPS, INTERPRET)


@triton.jit
def _w1_w2_gemv_kernel(x_ptr, w1_codes, w1_scales, b1_ptr, a_ptr, w2_codes, w2_scales, b2_ptr,
                       ids_ptr, wts_ptr, y_ptr, done_ptr, H, I, KP1, KP2, NP1, NP2, NB,
                       stride_x, alpha, limit, K: tl.constexpr, K_WARPS: tl.constexpr,
                       INTERPRET: tl.constexpr):
    """W1 and W2 in one launch: the first NB * NP1 / 16 programs are _w1_gemv_kernel's, pair
    by pair; each counts itself done in done_ptr[pair] (zero on entry; the combine kernel
    zeroes them again). The rest are _w2_gemv_kernel's, pair by pair, each waiting until its
    pair's W1 programs are all done.

    No program waits on one placed after it (the GPU places programs in index order, and the
    interpreter runs them in that order), so W2 runs on the SMs that the first pairs' W1
    programs leave while the last pairs' are still running, instead of after a kernel
    boundary (H100, T = 2 / 4: 54.8 / 98.3 against 60.3 / 103.3 us; T = 1 unchanged)."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    tiles1 = NP1 // 16
    if pid < NB * tiles1:
        pair = pid // tiles1
        _w1_rows(pair, pid % tiles1, x_ptr, w1_codes, w1_scales, b1_ptr, a_ptr, ids_ptr,
                 H, KP1, 2 * I, NP1, stride_x, alpha, limit, K, K_WARPS, INTERPRET)
        tl.debug_barrier()  # every thread's part of a is stored before the program arrives
        tl.atomic_add(done_ptr + pair, 1, sem="release", scope="gpu")
    else:
        pid -= NB * tiles1
        pair = pid // (NP2 // 16)
        pid_n = pid % (NP2 // 16)
        seen = tl.atomic_add(done_ptr + pair, 0, sem="acquire", scope="gpu")
        while seen < tiles1:
            seen = tl.atomic_add(done_ptr + pair, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()  # the whole program reads a after the acquire
        _w2_rows(pair, pid_n, a_ptr, w2_codes, w2_scales, b2_ptr, ids_ptr, wts_ptr,
                 y_ptr, I, KP2, H, NP2, K_WARPS, INTERPRET)


@triton.jit
def _w1_rows(pair, pid_n, x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr, ids_ptr, H, KP, N2, NP,
             stride_x, alpha, limit, K: tl.constexpr, K_WARPS: tl.constexpr,
             INTERPRET: tl.constexpr):
    """W1 rows 16 pid_n .. + 15 of one (token, slot) pair, + b1, SwiGLU -> 8 columns of a."""
    e = tl.load(ids_ptr + pair)  # routed by the logits kernel
    top, bot = _expert_rows(x_ptr + (pair // K).to(tl.int64) * stride_x, codes_ptr, scales_ptr,
                            e, pid_n, H, KP, NP, K_WARPS)
    release_dependents()  # the next kernel's programs may be placed during the epilogue
    a_row = a_ptr + pair.to(tl.int64) * (N2 // 2)
    b_row = bias_ptr + e.to(tl.int64) * N2
    _swiglu_out(top, pid_n * 16, b_row, a_row, N2, alpha, limit, INTERPRET)
    _swiglu_out(bot, pid_n * 16 + 8, b_row, a_row, N2, alpha, limit, INTERPRET)


@triton.jit
def _swiglu_out(h, row0, b_row, a_row, N2, alpha, limit, INTERPRET: tl.constexpr):
    """W1 rows row0 .. + 7 (+ bias): interleaved gate (2i) and linear (2i + 1) -> a columns."""
    rows = row0 + tl.arange(0, 8)
    h += tl.load(b_row + rows, mask=rows < N2, other=0.0).to(tl.float32)
    gate, lin = tl.split(tl.reshape(h, (4, 2)))
    c = row0 // 2 + tl.arange(0, 4)
    tl.store(a_row + c, round_to(swiglu(gate, lin, alpha, limit), tl.bfloat16, INTERPRET),
             mask=c < N2 // 2)


@triton.jit
def _w2_rows(pair, pid_n, a_ptr, codes_ptr, scales_ptr, bias_ptr, ids_ptr, wts_ptr, y_ptr,
             I, KP, H, NP, K_WARPS: tl.constexpr, INTERPRET: tl.constexpr):
    """y rows 16 pid_n .. + 15 of one pair: (a[pair] @ W2[e].T + b2[e]) x its routing weight."""
    e = tl.maximum(tl.load(ids_ptr + pair), 0)
    top, bot = _expert_rows(a_ptr + pair.to(tl.int64) * I, codes_ptr, scales_ptr, e, pid_n,
                            I, KP, NP, K_WARPS)
    release_dependents()
    wt = tl.load(wts_ptr + pair)
    b_row = bias_ptr + e.to(tl.int64) * H
    y_row = y_ptr + pair.to(tl.int64) * H
    _weighted_out(top, pid_n * 16, b_row, y_row, wt, H, INTERPRET)
    _weighted_out(bot, pid_n * 16 + 8, b_row, y_row, wt, H, INTERPRET)


@triton.jit
def _weighted_out(v, row0, b_row, y_row, wt, H, INTERPRET: tl.constexpr):
    """y rows row0 .. + 7 = (v + bias) x the routing weight, in bf16."""
    rows = row0 + tl.arange(0, 8)
    v += tl.load(b_row + rows, mask=rows < H, other=0.0).to(tl.float32)
    tl.store(y_row + rows, round_to(v * wt, tl.bfloat16, INTERPRET), mask=rows < H)


def launch(x, w1_codes, w1_scales, b1, a, ids, wts, w2_codes, w2_scales, b2, y,
           k: int, alpha: float, limit: float, interp: bool,
           pdl: dict, w1_warps: int, w2_warps: int, done=None, maxnreg: int | None = None) -> None:
    """W1 and W2 of the decode path (kernels/moe.py) for P = T * k pairs; with done (P
    zeroed int32 counters), both in one launch on w1_warps warps (MoEConfig checks that
    w2_warps is the same), its registers capped at maxnreg (when given)."""
    P, I = a.shape
    H = x.shape[1]
    np1, np2 = w1_codes.shape[1], w2_codes.shape[1]
    kp1, kp2 = w1_codes.shape[2] * 2, w2_codes.shape[2] * 2
    if done is not None:
        cap = {"maxnreg": maxnreg} if maxnreg else {}
        _w1_w2_gemv_kernel[(P * (np1 // 16 + np2 // 16),)](
            x, w1_codes, w1_scales, b1, a, w2_codes, w2_scales, b2, ids, wts, y, done,
            H, I, kp1, kp2, np1, np2, P, x.stride(0), alpha, limit, K=k, K_WARPS=w1_warps,
            INTERPRET=interp, num_warps=w1_warps, num_stages=1, **pdl, **cap)
        return
    _w1_gemv_kernel[(P * (np1 // 16),)](
        x, w1_codes, w1_scales, b1, a, ids, H, kp1, 2 * I, np1, P, x.stride(0),
        alpha, limit, K=k, K_WARPS=w1_warps, INTERPRET=interp,
        num_warps=w1_warps, num_stages=1, **pdl)
    _w2_gemv_kernel[(P * (np2 // 16),)](
        a, w2_codes, w2_scales, b2, ids, wts, y, I, kp2, H, np2, P, K_WARPS=w2_warps,
        INTERPRET=interp, num_warps=w2_warps, num_stages=1, **pdl)


def usable(x: torch.Tensor, intermediate: int, fused: bool) -> bool:
    """Whether the decode may take these kernels: every scale byte <= 128 and bf16 x and
    activations, both read as 4-byte words."""
    return (fused and x.dtype == torch.bfloat16 and x.stride(0) % 2 == 0
            and x.data_ptr() % 4 == 0 and intermediate % 2 == 0)
