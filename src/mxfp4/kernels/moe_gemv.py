"""The MoE's two expert GEMMs on the tensor-core GEMV (kernels/mma_gemv.py), for few pairs
per expert.

Reference twin: `mxfp4.nn.moe.moe_reference`. Same jobs as kernels/moe_gemm.py (SwiGLU in
W1's epilogue; bias and routing weight in W2's), for bf16 x and weights whose scale bytes
are all <= 128. A program is 16 weight rows of one expert against either
- decode: one (token, slot) pair, MMA column 0 only, or
- batch: one row block of the expert-sorted pairs (the align kernel's table, 8 rows, or 16
  with a second MMA per fragment), pair j of the block being MMA column j;
its K_WARPS warps split K = 2880 into 128-wide steps.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .mma_gemv import column0_rows, k_loop, sum_warps
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
        g < 1, pid_n * 16 + g, 0, (KP + 127) // 128, K, KP, NP, L, K_WARPS, 1, False)
    return column0_rows(c0, c2, K_WARPS)


@triton.jit
def _w1_gemv_kernel(x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr, ids_ptr,
                    H, KP, N2, NP, NB, stride_x, alpha, limit,
                    K: tl.constexpr, K_WARPS: tl.constexpr, INTERPRET: tl.constexpr):
    """a[pair] = SwiGLU(x[token] @ W1[e].T + b1[e]) for 8 of its columns (16 W1 rows)."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    pid_b = pid % NB  # pairs innermost: a token's slots read their experts side by side
    pid_n = pid // NB
    tok = pid_b // K
    e = tl.load(ids_ptr + pid_b)  # routed by the logits kernel
    top, bot = _expert_rows(x_ptr + tok.to(tl.int64) * stride_x, codes_ptr, scales_ptr, e, pid_n,
                            H, KP, NP, K_WARPS)
    release_dependents()  # the next kernel's programs may be placed during the epilogue
    a_row = a_ptr + pid_b.to(tl.int64) * (N2 // 2)
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
def _w2_gemv_kernel(a_ptr, codes_ptr, scales_ptr, bias_ptr, ids_ptr, wts_ptr, y_ptr,
                    I, KP, H, NP, NB, K_WARPS: tl.constexpr, INTERPRET: tl.constexpr):
    """y[pair] = (a[pair] @ W2[e].T + b2[e]) x the pair's routing weight, for 16 rows."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    pid_b = pid % NB
    pid_n = pid // NB
    e = tl.maximum(tl.load(ids_ptr + pid_b), 0)
    top, bot = _expert_rows(a_ptr + pid_b.to(tl.int64) * I, codes_ptr, scales_ptr, e, pid_n,
                            I, KP, NP, K_WARPS)
    release_dependents()
    wt = tl.load(wts_ptr + pid_b)
    b_row = bias_ptr + e.to(tl.int64) * H
    y_row = y_ptr + pid_b.to(tl.int64) * H
    _weighted_out(top, pid_n * 16, b_row, y_row, wt, H, INTERPRET)
    _weighted_out(bot, pid_n * 16 + 8, b_row, y_row, wt, H, INTERPRET)


@triton.jit
def _weighted_out(v, row0, b_row, y_row, wt, H, INTERPRET: tl.constexpr):
    """y rows row0 .. + 7 = (v + bias) x the routing weight, in bf16."""
    rows = row0 + tl.arange(0, 8)
    v += tl.load(b_row + rows, mask=rows < H, other=0.0).to(tl.float32)
    tl.store(y_row + rows, round_to(v * wt, tl.bfloat16, INTERPRET), mask=rows < H)


@triton.jit
def _block_x(x32, sorted_pair_ptr, start, rows, g, stride_x, K: tl.constexpr):
    """Per-lane x pointers of MMA columns g and g + 8 of a row block and whether they exist:
    the tokens of the block's sorted pairs (K = slots per token), or with K = 0 the sorted
    rows themselves (W2 reads a in sorted order)."""
    ok0 = g < rows
    ok1 = g + 8 < rows
    r0 = start + g
    r1 = start + g + 8
    if K > 0:
        r0 = tl.load(sorted_pair_ptr + r0, mask=ok0, other=0) // K
        r1 = tl.load(sorted_pair_ptr + r1, mask=ok1, other=0) // K
    return (x32 + r0.to(tl.int64) * (stride_x // 2), ok0,
            x32 + r1.to(tl.int64) * (stride_x // 2), ok1)


@triton.jit
def _block_dot(x_ptr, codes_ptr, scales_ptr, sorted_pair_ptr, block_expert_ptr,
               block_start_ptr, block_rows_ptr, pid_b, pid_n, K, KP, NP, stride_x,
               SLOTS: tl.constexpr, K_WARPS: tl.constexpr, TWO_N: tl.constexpr):
    """16 rows of W[e] @ the x rows of row block pid_b: the C fragments of MMA columns 0-7
    (c) and 8-15 (d), summed over the K warps ([32] lane tensors), and the block's expert,
    first sorted row and row count. Unused blocks of the worst-case grid (expert -1) run
    no K steps and have no rows."""
    L: tl.constexpr = 32 * K_WARPS
    g = (tl.arange(0, L) % 32) // 4
    e = tl.load(block_expert_ptr + pid_b)
    start = tl.load(block_start_ptr + pid_b)
    rows = tl.load(block_rows_ptr + pid_b)
    steps = tl.where(e >= 0, (KP + 127) // 128, 0)
    e64 = tl.maximum(e, 0).to(tl.int64)
    x_row0, ok0, x_row1, ok1 = _block_x(x_ptr.to(tl.pointer_type(tl.int32)), sorted_pair_ptr,
                                        start, rows, g, stride_x, SLOTS)
    c0, c1, c2, c3, d0, d1, d2, d3 = k_loop(
        codes_ptr + e64 * NP * (KP // 2), scales_ptr + e64 * (KP // 32) * NP, x_row0, ok0,
        x_row1, ok1, pid_n * 16 + g, 0, steps, K, KP, NP, L, K_WARPS, 1, TWO_N)
    release_dependents()  # the next kernel's programs may be placed during the epilogue
    c = sum_warps(c0, c1, c2, c3, K_WARPS, 32)
    d = c
    if TWO_N:
        d = sum_warps(d0, d1, d2, d3, K_WARPS, 32)
    return c, d, e64, start, rows


@triton.jit
def _w1_blocks_kernel(x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr, sorted_pair_ptr,
                      block_expert_ptr, block_start_ptr, block_rows_ptr,
                      H, KP, N2, NP, NB, stride_x, alpha, limit,
                      K: tl.constexpr, K_WARPS: tl.constexpr, TWO_N: tl.constexpr,
                      INTERPRET: tl.constexpr):
    """a[sorted rows of block pid_b] = SwiGLU(x[their tokens] @ W1[e].T + b1[e]), 8 columns
    of a (16 W1 rows) per program."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    pid_b = pid % NB  # blocks innermost: an expert's blocks read its rows side by side
    pid_n = pid // NB
    c, d, e64, start, rows = _block_dot(x_ptr, codes_ptr, scales_ptr, sorted_pair_ptr,
                                        block_expert_ptr, block_start_ptr, block_rows_ptr,
                                        pid_b, pid_n, H, KP, NP, stride_x, K, K_WARPS, TWO_N)
    b_row = bias_ptr + e64 * N2
    _swiglu_block(c, 0, pid_n * 16, start, rows, b_row, a_ptr, N2, alpha, limit, INTERPRET)
    if TWO_N:
        _swiglu_block(d, 8, pid_n * 16, start, rows, b_row, a_ptr, N2, alpha, limit, INTERPRET)


@triton.jit
def _swiglu_block(c, col0, row0, start, rows, b_row, a_ptr, N2, alpha, limit,
                  INTERPRET: tl.constexpr):
    """One C fragment (16 W1 rows x MMA columns col0 .. + 7) + bias -> SwiGLU -> a rows
    start + column: lane (g, t) holds rows g, g + 8 at columns 2t, 2t + 1."""
    I = N2 // 2
    g = tl.arange(0, 32) // 4
    for half in tl.static_range(2):
        lo = c[2 * half]  # rows row0 + 8 half + g, columns 2t (lo) and 2t + 1 (hi)
        hi = c[2 * half + 1]
        r = row0 + 8 * half + g
        bias = tl.load(b_row + r, mask=r < N2, other=0.0).to(tl.float32)
        h = tl.reshape(tl.join(lo + bias, hi + bias), (4, 2, 8))  # [i, gate / linear, column]
        gate, lin = tl.split(tl.permute(h, (0, 2, 1)))
        a_col = (row0 + 8 * half) // 2 + tl.arange(0, 4)[:, None]
        col = col0 + tl.arange(0, 8)[None, :]
        tl.store(a_ptr + (start + col).to(tl.int64) * I + a_col,
                 round_to(swiglu(gate, lin, alpha, limit), tl.bfloat16, INTERPRET),
                 mask=(col < rows) & (a_col < I))


@triton.jit
def _w2_blocks_kernel(a_ptr, codes_ptr, scales_ptr, bias_ptr, wts_ptr, y_ptr, sorted_pair_ptr,
                      block_expert_ptr, block_start_ptr, block_rows_ptr, I, KP, H, NP, NB,
                      K_WARPS: tl.constexpr, TWO_N: tl.constexpr, INTERPRET: tl.constexpr):
    """y[pair] = (a[its sorted row] @ W2[e].T + b2[e]) x its routing weight, for the pairs
    of block pid_b and 16 rows of W2."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid = tl.program_id(0)
    pid_b = pid % NB
    pid_n = pid // NB
    c, d, e64, start, rows = _block_dot(a_ptr, codes_ptr, scales_ptr, sorted_pair_ptr,
                                        block_expert_ptr, block_start_ptr, block_rows_ptr,
                                        pid_b, pid_n, I, KP, NP, I, 0, K_WARPS, TWO_N)
    b_row = bias_ptr + e64 * H
    _weighted_block(c, 0, pid_n * 16, start, rows, sorted_pair_ptr, wts_ptr, b_row, y_ptr, H,
                    INTERPRET)
    if TWO_N:
        _weighted_block(d, 8, pid_n * 16, start, rows, sorted_pair_ptr, wts_ptr, b_row, y_ptr,
                        H, INTERPRET)


@triton.jit
def _weighted_block(c, col0, row0, start, rows, sorted_pair_ptr, wts_ptr, b_row, y_ptr, H,
                    INTERPRET: tl.constexpr):
    """One C fragment (16 W2 rows x MMA columns col0 .. + 7): y[pair] rows = (C + bias) x
    the pair's routing weight, in bf16."""
    lane = tl.arange(0, 32)
    for q in tl.static_range(4):  # c[q]: row g + 8 (q // 2), column 2t + q % 2
        r = row0 + lane // 4 + 8 * (q // 2)
        col = col0 + 2 * (lane % 4) + q % 2
        ok = (col < rows) & (r < H)
        pair = tl.load(sorted_pair_ptr + start + col, mask=ok, other=0)
        wt = tl.load(wts_ptr + pair, mask=ok, other=0.0)
        v = c[q] + tl.load(b_row + r, mask=ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + pair.to(tl.int64) * H + r, round_to(v * wt, tl.bfloat16, INTERPRET),
                 mask=ok)


def launch(x, w1_codes, w1_scales, b1, a, ids, wts, w2_codes, w2_scales, b2, y,
           k: int, alpha: float, limit: float, interp: bool,
           pdl: dict, w1_warps: int, w2_warps: int) -> None:
    """W1 and W2 of the decode path (kernels/moe.py) for P = T * k pairs."""
    P, I = a.shape
    H = x.shape[1]
    np1, np2 = w1_codes.shape[1], w2_codes.shape[1]
    kp1, kp2 = w1_codes.shape[2] * 2, w2_codes.shape[2] * 2
    _w1_gemv_kernel[(P * (np1 // 16),)](
        x, w1_codes, w1_scales, b1, a, ids, H, kp1, 2 * I, np1, P, x.stride(0),
        alpha, limit, K=k, K_WARPS=w1_warps, INTERPRET=interp,
        num_warps=w1_warps, num_stages=1, **pdl)
    _w2_gemv_kernel[(P * (np2 // 16),)](
        a, w2_codes, w2_scales, b2, ids, wts, y, I, kp2, H, np2, P, K_WARPS=w2_warps,
        INTERPRET=interp, num_warps=w2_warps, num_stages=1, **pdl)


def launch_blocks(x, w1_codes, w1_scales, b1, a, tables, wts, w2_codes, w2_scales, b2, y,
                  k: int, alpha: float, limit: float, interp: bool, pdl: dict, bm: int,
                  w1_warps: int, w2_warps: int) -> None:
    """W1 and W2 of the batch path (kernels/moe.py) over nb row blocks of bm = 8 or 16 sorted
    pairs (tables: sorted pairs, block expert, first row, rows)."""
    if bm not in (8, 16):
        raise ValueError(f"the GEMV's row blocks hold 8 or 16 pairs, got bm = {bm}")
    nb = tables[1].shape[0]
    I = a.shape[1]
    H = x.shape[1]
    np1, np2 = w1_codes.shape[1], w2_codes.shape[1]
    kp1, kp2 = w1_codes.shape[2] * 2, w2_codes.shape[2] * 2
    two_n = bm == 16
    _w1_blocks_kernel[(nb * (np1 // 16),)](
        x, w1_codes, w1_scales, b1, a, *tables, H, kp1, 2 * I, np1, nb, x.stride(0), alpha,
        limit, K=k, K_WARPS=w1_warps, TWO_N=two_n, INTERPRET=interp, num_warps=w1_warps,
        num_stages=1, **pdl)
    _w2_blocks_kernel[(nb * (np2 // 16),)](
        a, w2_codes, w2_scales, b2, wts, y, *tables, I, kp2, H, np2, nb, K_WARPS=w2_warps,
        TWO_N=two_n, INTERPRET=interp, num_warps=w2_warps, num_stages=1, **pdl)


def usable(x: torch.Tensor, intermediate: int, fused: bool) -> bool:
    """Whether the decode may take these kernels: every scale byte <= 128 and bf16 x and
    activations, both read as 4-byte words."""
    return (fused and x.dtype == torch.bfloat16 and x.stride(0) % 2 == 0
            and x.data_ptr() % 4 == 0 and intermediate % 2 == 0)
