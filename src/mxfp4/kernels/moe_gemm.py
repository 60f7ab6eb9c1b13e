"""Triton grouped W4A16 GEMMs for the MoE layer (MXFP4 expert weights, bf16 activations).

Reference twin: `mxfp4.nn.moe.moe_reference` (fp32, loop over experts). Expert weights are
stacks of the HopperWeight layout (`mxfp4.layouts.pack` with leading dim E): codes
[E, Np, Kp/2] and transposed scales [E, Kp/32, Np]. Like `mxfp4.linear`, the kernels compute
the transposed product ("swap AB"): the decoded weight tile [BN, BK] is the MMA's A operand,
straight from registers, and the expert's BM token rows are the B operand, so one row block
can be as small as 16 tokens while the tensor cores see 64-row weight tiles.

- `_w1_kernel`: h = x @ W1[e].T + b1[e], SwiGLU on interleaved (gate, linear) rows in the
  epilogue, a stored as bf16. Rows come either from the expert-sorted block table (batch) or
  one (token, slot) pair per program with top-k done in the prologue (decode).
- `_w2_kernel`: y = a @ W2[e].T + b2[e], times the routing weight, written back by pair
  index (token order), rows again from the block table or one pair per program (decode);
  `_combine_kernel` sums a token's k rows in slot order.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .moe_routing import round_to, swiglu
from .pdl import release_dependents, wait_for_inputs
from .unpack import grouped_tile, hopper_dot


@triton.jit
def _block_coords(NB, NP, BN: tl.constexpr, GROUP_M: tl.constexpr, DECODE: tl.constexpr):
    """(row block, column tile) of this program. Decode puts the pairs innermost, so that
    pairs sharing an expert read its weight tile at about the same time (one DRAM read, the
    rest from L2); batch groups GROUP_M row blocks per column sweep, as in a plain GEMM."""
    pid = tl.program_id(0)
    if DECODE:
        return pid % NB, pid // NB
    return grouped_tile(pid, NB, NP // BN, GROUP_M)


@triton.jit
def _expert_dot(x_ptrs, rows_ok, codes_ptr, scales_ptr, e64, pid_n, K, KP, NP, k_end,
                BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                FUSED: tl.constexpr, X_SPLIT: tl.constexpr, RAGGED_K: tl.constexpr):
    """acc [BN, BM] = W[e][tile rows] @ x rows.T over k < k_end (K, or 0 to skip the block)."""
    rn = pid_n * BN + tl.arange(0, BN)
    w_rows = codes_ptr + e64 * NP * (KP // 2) + rn.to(tl.int64)[:, None] * (KP // 2)
    s_cols = scales_ptr + e64 * (KP // 32) * NP + rn[None, :]
    acc = tl.zeros((BN, BM), dtype=tl.float32)
    return hopper_dot(acc, w_rows, s_cols, x_ptrs[None, :], rows_ok, 0, k_end, K, NP,
                      FUSED, X_SPLIT, True, BN, BK, RAGGED_K), rn


@triton.jit
def _w1_kernel(x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr,
               sorted_pair_ptr, block_expert_ptr, block_start_ptr, block_rows_ptr,
               ids_ptr, H, KP, N2, NP, NB, stride_x, alpha, limit,
               K: tl.constexpr, DECODE: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
               FUSED: tl.constexpr, X_SPLIT: tl.constexpr, RAGGED_K: tl.constexpr,
               INTERPRET: tl.constexpr):
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid_b, pid_n = _block_coords(NB, NP, BN, GROUP_M, DECODE)
    offs_m = tl.arange(0, BM)
    if DECODE:  # row block = one (token, slot) pair, routed by the logits kernel
        e = tl.load(ids_ptr + pid_b)
        rows_ok = offs_m < 1
        tok = pid_b // K + offs_m * 0
        out_row = pid_b + offs_m * 0
        k_end = KP
    else:
        e = tl.load(block_expert_ptr + pid_b)
        start = tl.load(block_start_ptr + pid_b)
        rows_ok = offs_m < tl.load(block_rows_ptr + pid_b)
        pair = tl.load(sorted_pair_ptr + start + offs_m, mask=rows_ok, other=0)
        tok = pair // K
        out_row = start + offs_m
        k_end = tl.where(e >= 0, KP, 0)  # unused blocks of the worst-case grid do no work
        e = tl.maximum(e, 0)
    e64 = e.to(tl.int64)
    acc, rn = _expert_dot(x_ptr + tok.to(tl.int64) * stride_x, rows_ok, codes_ptr, scales_ptr,
                          e64, pid_n, H, KP, NP, k_end, BM, BN, BK, FUSED, X_SPLIT, RAGGED_K)
    release_dependents()  # the next kernel's programs may be placed during the epilogue
    bias = tl.load(bias_ptr + e64 * N2 + rn, mask=rn < N2, other=0.0).to(tl.float32)
    h = tl.trans(acc + bias[:, None])  # [BM, BN]: rows 2i (gate) and 2i + 1 (linear) side by side
    gate, lin = tl.split(tl.reshape(h, (BM, BN // 2, 2)))
    act = swiglu(gate, lin, alpha, limit)
    I = N2 // 2
    offs_c = pid_n * (BN // 2) + tl.arange(0, BN // 2)
    tl.store(a_ptr + out_row.to(tl.int64)[:, None] * I + offs_c[None, :],
             round_to(act, tl.bfloat16, INTERPRET), mask=rows_ok[:, None] & (offs_c < I)[None, :])


@triton.jit
def _w2_kernel(a_ptr, codes_ptr, scales_ptr, bias_ptr, ids_ptr, wts_ptr, y_ptr,
               sorted_pair_ptr, block_expert_ptr, block_start_ptr, block_rows_ptr,
               I, KP, H, NP, NB, DECODE: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
               FUSED: tl.constexpr, RAGGED_K: tl.constexpr, INTERPRET: tl.constexpr):
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid_b, pid_n = _block_coords(NB, NP, BN, GROUP_M, DECODE)
    offs_m = tl.arange(0, BM)
    if DECODE:  # row block = one pair, whose expert the W1 prologue stored
        e = tl.load(ids_ptr + pid_b)
        start = pid_b
        rows_ok = offs_m < 1
        pair = pid_b + offs_m * 0
    else:
        e = tl.load(block_expert_ptr + pid_b)
        start = tl.load(block_start_ptr + pid_b)
        rows_ok = offs_m < tl.load(block_rows_ptr + pid_b)
        pair = tl.load(sorted_pair_ptr + start + offs_m, mask=rows_ok, other=0)
    k_end = tl.where(e >= 0, KP, 0)
    e64 = tl.maximum(e, 0).to(tl.int64)
    acc, rn = _expert_dot(a_ptr + (start + offs_m).to(tl.int64) * I, rows_ok, codes_ptr,
                          scales_ptr, e64, pid_n, I, KP, NP, k_end, BM, BN, BK, FUSED, False,
                          RAGGED_K)
    release_dependents()
    bias = tl.load(bias_ptr + e64 * H + rn, mask=rn < H, other=0.0).to(tl.float32)
    wt = tl.load(wts_ptr + pair, mask=rows_ok, other=0.0)
    y = (acc + bias[:, None]) * wt[None, :]
    tl.store(y_ptr + pair.to(tl.int64)[None, :] * H + rn[:, None], round_to(y, tl.bfloat16, INTERPRET),
             mask=rows_ok[None, :] & (rn < H)[:, None])


@triton.jit
def _combine_kernel(y_ptr, out_ptr, done_ptr, H, stride_out, K: tl.constexpr, BH: tl.constexpr,
                    RESET: tl.constexpr, INTERPRET: tl.constexpr):
    """out[t] = sum over the token's k rows of y, in slot order (deterministic). RESET: zero
    the token's pair counters in done_ptr (the one-launch decode GEMVs', kernels/moe_gemv.py),
    which that kernel has finished with, so that they are zero again for the next user."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    t = tl.program_id(0)
    if RESET:
        if tl.program_id(1) == 0:
            for j in tl.static_range(K):
                tl.store(done_ptr + t * K + j, 0)
    offs = tl.program_id(1) * BH + tl.arange(0, BH)
    ok = offs < H
    total = tl.zeros((BH,), dtype=tl.float32)
    for j in tl.static_range(K):
        total += tl.load(y_ptr + (t * K + j).to(tl.int64) * H + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + t.to(tl.int64) * stride_out + offs, round_to(total, out_ptr.dtype.element_ty, INTERPRET), mask=ok)
