"""Triton grouped W4A16 GEMMs for the MoE layer (MXFP4 expert weights, bf16 activations).

Reference twin: `mxfp4.nn.moe.moe_reference` (fp32, loop over experts). Weights are gpt-oss
blocks: codes [E, N, K/2] uint8 (element 2i in the low nibble) and E8M0 scales [E, N, K/32],
blocks of 32 along K. K must be a multiple of 32.

- `_w1_kernel`: h = x @ W1[e].T + b1[e], SwiGLU on interleaved (gate, linear) columns in the
  epilogue, a stored as bf16. Rows come either from the expert-sorted block table (batch) or
  one (token, slot) pair per program with top-k done in the prologue (decode).
- `_w2_kernel`: y = a @ W2[e].T + b2[e], times the routing weight, written back by pair
  index (token order), rows again from the block table or one pair per program (decode);
  `_combine_kernel` sums a token's k rows in slot order.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .moe_routing import as_bf16, bf16_dot, round_to, route_slot, swiglu
from .unpack import unpack_bf16


@triton.jit
def mx_tile(packed, scales, FOLD: tl.constexpr):
    """bf16 weights [R, 2C] from packed codes [R, C] (uint8) and scales [R, C/16] (uint8).

    Each nibble is placed in the bits of a float16 (sign -> bit 15, magnitude -> bits 11..9),
    which is the E2M1 value times 2^-14 exactly, fp16 subnormals included (no flush-to-zero
    on either CPU or GPU). The scale 2^(s-127) and the 2^14 are applied in fp32: with FOLD,
    as one factor 2^(s-113), valid for scale bytes <= 240; otherwise as two multiplies.
    Scale byte 255 gives NaN, as in the codec.
    """
    R: tl.constexpr = packed.shape[0]
    C: tl.constexpr = packed.shape[1]
    b = packed.to(tl.uint16)
    lo = (((b << 12) & 0x8000) | ((b << 9) & 0x0E00)).to(tl.float16, bitcast=True).to(tl.float32)
    hi = (((b << 8) & 0x8000) | ((b << 5) & 0x0E00)).to(tl.float16, bitcast=True).to(tl.float32)
    s = scales.to(tl.int32)
    if FOLD:
        f = ((s + 14) << 23).to(tl.float32, bitcast=True)
    else:
        f = (s << 23).to(tl.float32, bitcast=True)
        lo = lo * 16384.0
        hi = hi * 16384.0
    f = tl.where(s == 255, float("nan"), f)
    f = tl.reshape(tl.broadcast_to(f[:, :, None], (R, C // 16, 16)), (R, C))
    lo = (lo * f).to(tl.bfloat16)
    hi = (hi * f).to(tl.bfloat16)
    return tl.reshape(tl.join(lo, hi), (R, 2 * C))


@triton.jit
def mx_tile_ptx(packed, scales, INTERPRET: tl.constexpr):
    """Same as mx_tile, with the nibbles decoded by `mxfp4.kernels.unpack.unpack_bf16` (packed
    PTX on the GPU, four bytes per snippet) and the scale applied as a bf16 multiply (exact:
    both are powers of two times E2M1 values; the GPU does two per instruction). The
    interpreter cannot multiply bf16, so there the product is taken in fp32."""
    R: tl.constexpr = packed.shape[0]
    C: tl.constexpr = packed.shape[1]
    lo, hi = unpack_bf16(packed)
    s = scales.to(tl.int16)
    f = tl.where(s == 0, 0x0040, s << 7)  # 2^(s-127); byte 0 is the bf16 subnormal 2^-127
    f = tl.where(s == 255, 0x7FC0, f).to(tl.int16).to(tl.bfloat16, bitcast=True)
    f = tl.reshape(tl.broadcast_to(f[:, :, None], (R, C // 16, 16)), (R, C))
    if INTERPRET:
        lo = (lo.to(tl.float32) * f.to(tl.float32)).to(tl.bfloat16)
        hi = (hi.to(tl.float32) * f.to(tl.float32)).to(tl.bfloat16)
    else:
        lo = lo * f
        hi = hi * f
    return tl.reshape(tl.join(lo, hi), (R, 2 * C))


@triton.jit
def _mx_dot(acc, xk, wp, ws, FOLD: tl.constexpr, UPCAST: tl.constexpr, INTERPRET: tl.constexpr):
    """acc + xk [M, BK] @ W.T for the MXFP4 tile W (codes wp [N, BK/2], scales ws [N, BK/32]).

    UPCAST 0: mx_tile (fp16 bit placement), 1: mx_tile_ptx, 2: tl.dot_scaled (Triton's own
    upcast on Hopper)."""
    if UPCAST == 2:
        return tl.dot_scaled(xk, None, "bf16", tl.trans(wp), ws, "e2m1", acc)
    if UPCAST == 1:
        return bf16_dot(xk, tl.trans(mx_tile_ptx(wp, ws, INTERPRET)), acc, INTERPRET)
    return bf16_dot(xk, tl.trans(mx_tile(wp, ws, FOLD)), acc, INTERPRET)


@triton.jit
def _block_coords(NB, N, BN: tl.constexpr, GROUP_M: tl.constexpr, DECODE: tl.constexpr):
    """(row block, column tile) of this program. Decode puts the pairs innermost, so that
    pairs sharing an expert read its weight tile at about the same time (one DRAM read, the
    rest from L2); batch groups GROUP_M row blocks per column sweep, as in a plain GEMM."""
    pid = tl.program_id(0)
    if DECODE:
        return pid % NB, pid // NB
    num_n = tl.cdiv(N, BN)
    width = GROUP_M * num_n
    first = (pid // width) * GROUP_M
    size = tl.minimum(NB - first, GROUP_M)
    return first + (pid % width) % size, (pid % width) // size


@triton.jit
def _mx_load(a_ptrs, c_ptrs, s_ptrs, rows_ok, n_ok, k_left, offs_k, offs_kb, offs_ks,
             EVEN_N: tl.constexpr, MASK_K: tl.constexpr):
    """One K step's A rows, codes and scales; only the tail step (MASK_K) checks k."""
    a_mask = rows_ok[:, None]
    c_mask = n_ok[:, None]
    s_mask = n_ok[:, None]
    if MASK_K:
        a_mask = a_mask & (offs_k < k_left)[None, :]
        c_mask = c_mask & (offs_kb < k_left // 2)[None, :]
        s_mask = s_mask & (offs_ks < k_left // 32)[None, :]
    xk = tl.load(a_ptrs, mask=a_mask, other=0.0)
    if EVEN_N and not MASK_K:
        wp = tl.load(c_ptrs)
        ws = tl.load(s_ptrs)
    else:
        wp = tl.load(c_ptrs, mask=c_mask, other=0)
        ws = tl.load(s_ptrs, mask=s_mask, other=0)
    return xk, wp, ws


@triton.jit
def _mx_gemm_loop(a_ptrs, rows_ok, stride_a_k, codes_ptr, scales_ptr, e64, offs_n, N, K, k_end,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  EVEN_N: tl.constexpr, FOLD: tl.constexpr, UPCAST: tl.constexpr,
                  STAGES: tl.constexpr, INTERPRET: tl.constexpr):
    """acc [BM, BN] = A rows @ W[e][offs_n].T over k < k_end (k_end = K, or 0 to skip).

    Whole BK steps run without K masks; a last partial step (K % BK) runs masked."""
    offs_k = tl.arange(0, BK)
    offs_kb = tl.arange(0, BK // 2)
    offs_ks = tl.arange(0, BK // 32)
    n_ok = offs_n < N
    c_ptrs = codes_ptr + e64 * N * (K // 2) + offs_n[:, None] * (K // 2) + offs_kb[None, :]
    s_ptrs = scales_ptr + e64 * N * (K // 32) + offs_n[:, None] * (K // 32) + offs_ks[None, :]
    a_ptrs = a_ptrs + offs_k[None, :] * stride_a_k
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    k_main = (k_end // BK) * BK
    for k0 in tl.range(0, k_main, BK, num_stages=STAGES):
        xk, wp, ws = _mx_load(a_ptrs, c_ptrs, s_ptrs, rows_ok, n_ok, BK, offs_k, offs_kb, offs_ks,
                              EVEN_N, False)
        acc = _mx_dot(acc, as_bf16(xk, INTERPRET), wp, ws, FOLD, UPCAST, INTERPRET)
        a_ptrs += BK * stride_a_k
        c_ptrs += BK // 2
        s_ptrs += BK // 32
    if k_main < k_end:
        xk, wp, ws = _mx_load(a_ptrs, c_ptrs, s_ptrs, rows_ok, n_ok, k_end - k_main, offs_k, offs_kb,
                              offs_ks, EVEN_N, True)
        acc = _mx_dot(acc, as_bf16(xk, INTERPRET), wp, ws, FOLD, UPCAST, INTERPRET)
    return acc


@triton.jit
def _w1_kernel(x_ptr, codes_ptr, scales_ptr, bias_ptr, a_ptr,
               sorted_pair_ptr, block_expert_ptr, block_start_ptr, block_rows_ptr,
               logits_ptr, ids_ptr, wts_ptr,
               H, N2, E, NB, stride_x, alpha, limit,
               K: tl.constexpr, K_PAD: tl.constexpr, E_PAD: tl.constexpr, DECODE: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
               EVEN_N: tl.constexpr, FOLD: tl.constexpr, UPCAST: tl.constexpr,
               STAGES: tl.constexpr, INTERPRET: tl.constexpr):
    pid_b, pid_n = _block_coords(NB, N2, BN, GROUP_M, DECODE)
    offs_m = tl.arange(0, BM)
    if DECODE:  # row block = one (token, slot) pair; route it here from the router logits
        t = pid_b // K
        j = pid_b % K
        e, w = route_slot(logits_ptr, t, j, E, K, K_PAD, E_PAD)
        tl.store(ids_ptr + pid_b, e, mask=pid_n == 0)
        tl.store(wts_ptr + pid_b, w, mask=pid_n == 0)
        rows_ok = offs_m < 1
        tok = t + offs_m * 0
        out_row = pid_b + offs_m * 0
        k_end = H
    else:
        e = tl.load(block_expert_ptr + pid_b)
        start = tl.load(block_start_ptr + pid_b)
        rows_ok = offs_m < tl.load(block_rows_ptr + pid_b)
        pair = tl.load(sorted_pair_ptr + start + offs_m, mask=rows_ok, other=0)
        tok = pair // K
        out_row = start + offs_m
        k_end = tl.where(e >= 0, H, 0)  # unused blocks of the worst-case grid do no work
        e = tl.maximum(e, 0)
    e64 = e.to(tl.int64)
    offs_n = pid_n * BN + tl.arange(0, BN)
    x_ptrs = x_ptr + tok.to(tl.int64)[:, None] * stride_x
    acc = _mx_gemm_loop(x_ptrs, rows_ok, 1, codes_ptr, scales_ptr, e64, offs_n, N2, H, k_end,
                        BM, BN, BK, EVEN_N, FOLD, UPCAST, STAGES, INTERPRET)
    bias = tl.load(bias_ptr + e64 * N2 + offs_n, mask=offs_n < N2, other=0.0).to(tl.float32)
    gate, lin = tl.split(tl.reshape(acc + bias[None, :], (BM, BN // 2, 2)))
    act = swiglu(gate, lin, alpha, limit)
    I = N2 // 2
    offs_c = pid_n * (BN // 2) + tl.arange(0, BN // 2)
    tl.store(a_ptr + out_row.to(tl.int64)[:, None] * I + offs_c[None, :], round_to(act, tl.bfloat16, INTERPRET),
             mask=rows_ok[:, None] & (offs_c < I)[None, :])


@triton.jit
def _w2_kernel(a_ptr, codes_ptr, scales_ptr, bias_ptr, ids_ptr, wts_ptr, y_ptr,
               sorted_pair_ptr, block_expert_ptr, block_start_ptr, block_rows_ptr,
               I, H, NB, DECODE: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
               EVEN_N: tl.constexpr, FOLD: tl.constexpr, UPCAST: tl.constexpr,
               STAGES: tl.constexpr, INTERPRET: tl.constexpr):
    pid_b, pid_n = _block_coords(NB, H, BN, GROUP_M, DECODE)
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
    k_end = tl.where(e >= 0, I, 0)
    e64 = tl.maximum(e, 0).to(tl.int64)
    offs_n = pid_n * BN + tl.arange(0, BN)
    a_ptrs = a_ptr + (start + offs_m).to(tl.int64)[:, None] * I
    acc = _mx_gemm_loop(a_ptrs, rows_ok, 1, codes_ptr, scales_ptr, e64, offs_n, H, I, k_end,
                        BM, BN, BK, EVEN_N, FOLD, UPCAST, STAGES, INTERPRET)
    bias = tl.load(bias_ptr + e64 * H + offs_n, mask=offs_n < H, other=0.0).to(tl.float32)
    wt = tl.load(wts_ptr + pair, mask=rows_ok, other=0.0)
    y = (acc + bias[None, :]) * wt[:, None]
    tl.store(y_ptr + pair.to(tl.int64)[:, None] * H + offs_n[None, :], round_to(y, tl.bfloat16, INTERPRET),
             mask=rows_ok[:, None] & (offs_n < H)[None, :])


@triton.jit
def _combine_kernel(y_ptr, out_ptr, H, stride_out, K: tl.constexpr, BH: tl.constexpr,
                    INTERPRET: tl.constexpr):
    """out[t] = sum over the token's k rows of y, in slot order (deterministic)."""
    t = tl.program_id(0)
    offs = tl.program_id(1) * BH + tl.arange(0, BH)
    ok = offs < H
    total = tl.zeros((BH,), dtype=tl.float32)
    for j in tl.static_range(K):
        total += tl.load(y_ptr + (t * K + j).to(tl.int64) * H + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + t.to(tl.int64) * stride_out + offs, round_to(total, out_ptr.dtype.element_ty, INTERPRET), mask=ok)
