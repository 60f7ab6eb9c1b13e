"""Decode GEMV on warp-level tensor cores: a HopperWeight times up to 16 rows of bf16 x.

Reference twin: `mxfp4.ops.linear(..., backend="reference")`.

Written lane by lane: every tensor here has one element per thread ([32 * num_warps], lane i
of warp w at index 32w + i), so each thread decodes exactly the weight bytes that its part
of an `mma.sync.m16n8k16` A fragment needs, loaded as 16-byte words straight from global
memory: no shared-memory staging, no layout conversions, no tile padded up to 64 rows.

A warp owns 16 weight rows (g and g + 8 for its lane group g = lane // 4). Per 128-element
step a lane reads 16 bytes of each of its two rows: HopperWeight byte j of a 64-group holds
elements j (low nibble) and 32 + j (high nibble), so a 4-byte word decodes (with its two
blocks' scales folded in) to the bf16 pairs of elements (j, j + 1) and (32 + j, 33 + j) and of
(j + 2, j + 3) and (34 + j, 35 + j): the A registers of two MMAs. An MMA sums over any 16
elements as long as each lane's x registers (B) hold the same elements as its A registers,
and x's pairs (j, j + 1) are contiguous, so x is read as 16-byte words too. x row m is the
MMA's column m (up to 8 per MMA; 9..16 rows take a second MMA per A fragment).

The warps of a program split its K range and are summed at the end; programs may also split
K, combined deterministically by the last to finish (as in kernels/linear.py).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .pdl import release_dependents, wait_for_inputs
from .unpack import INTERPRET, e2m1_to_f32, fused_decode_asm, fused_decode_ptx, unrotate_nibble

# One HopperWeight word (bytes b0..b3 of a row) and two scale factors (bf16x2 2^(s - 1),
# the fused decode's factor, for the low- and high-nibble blocks) -> bf16x2 pairs
# $0 = low codes of b0, b1; $1 = high codes of b0, b1; $2, $3 the same for b2, b3.
_WORD_ASM = fused_decode_asm(fused_decode_ptx("$4", "0x1404", "$0", "$1", "$5", "$6"),
                             fused_decode_ptx("$4", "0x3424", "$2", "$3", "$5", "$6"))

_MMA_ASM = tl.constexpr(
    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
    "{$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};")


@triton.jit
def _bf16_bits(v):
    """int32 bf16 bits of fp32 values that bf16 holds exactly."""
    return (v.to(tl.int32, bitcast=True) >> 16) & 0xFFFF


@triton.jit
def _pair(lo, hi):
    """bf16x2 register (int32) of two exact fp32 values: lo in bits 0-15, hi in 16-31."""
    return _bf16_bits(lo) | (_bf16_bits(hi) << 16)


@triton.jit
def _half(r, HIGH: tl.constexpr):
    """fp32 value of the low (or high) bf16 of a bf16x2 register."""
    if HIGH:
        return (r & -65536).to(tl.float32, bitcast=True)
    return (r << 16).to(tl.float32, bitcast=True)


@triton.jit
def decode_word(word, f_lo, f_hi):
    """int32 HopperWeight words -> four bf16x2 registers (see _WORD_ASM); f_lo / f_hi are
    bf16x2 factors 2^(s - 1) (scale bytes s <= 128)."""
    if INTERPRET:
        unit = 1.1754943508222875e-38  # 2^-126: the factor times this is the scale
        s_lo = _half(f_lo, False) * unit
        s_hi = _half(f_hi, False) * unit
        b0 = word & 255
        b1 = (word >> 8) & 255
        b2 = (word >> 16) & 255
        b3 = (word >> 24) & 255
        lo01 = _pair(e2m1_to_f32(b0) * s_lo, e2m1_to_f32(b1) * s_lo)
        hi01 = _pair(e2m1_to_f32(unrotate_nibble(b0 >> 4)) * s_hi,
                     e2m1_to_f32(unrotate_nibble(b1 >> 4)) * s_hi)
        lo23 = _pair(e2m1_to_f32(b2) * s_lo, e2m1_to_f32(b3) * s_lo)
        hi23 = _pair(e2m1_to_f32(unrotate_nibble(b2 >> 4)) * s_hi,
                     e2m1_to_f32(unrotate_nibble(b3 >> 4)) * s_hi)
    else:
        lo01, hi01, lo23, hi23 = tl.inline_asm_elementwise(
            _WORD_ASM, "=r,=r,=r,=r,r,r,r", [word, f_lo, f_hi],
            dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)
    return lo01, hi01, lo23, hi23


@triton.jit
def _slots(r0, r1, W: tl.constexpr):
    """[W, 8, 4, 4] (warp, lane group, lane in group, k slot) fp32 from two bf16x2 registers."""
    t = tl.join(tl.join(_half(r0, False), _half(r0, True)),
                tl.join(_half(r1, False), _half(r1, True)))
    return tl.reshape(t, (W, 8, 4, 4))


@triton.jit
def mma_16x8x16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
    """One warp-level bf16 MMA per warp, D = A @ B + C with fp32 accumulation, on lane tensors.

    Fragments as PTX's m16n8k16 (g = lane // 4, t = lane % 4): a0 / a2 hold row g at k slots
    (2t, 2t + 1) / (2t + 8, 2t + 9), a1 / a3 the same for row g + 8; b0 / b1 hold those k
    slots of column g; c0, c1 are row g, columns 2t, 2t + 1 and c2, c3 row g + 8."""
    if INTERPRET:  # the same sums with whole-warp tensors
        W: tl.constexpr = a0.shape[0] // 32
        top = _slots(a0, a2, W)  # rows g
        bot = _slots(a1, a3, W)  # rows g + 8
        b = _slots(b0, b1, W)  # columns g
        d_top = tl.sum(tl.sum(top[:, :, None, :, :] * b[:, None, :, :, :], axis=4), axis=3)
        d_bot = tl.sum(tl.sum(bot[:, :, None, :, :] * b[:, None, :, :, :], axis=4), axis=3)
        e0, e1 = tl.split(tl.reshape(d_top, (W, 8, 4, 2)))  # column 2t, 2t + 1
        e2, e3 = tl.split(tl.reshape(d_bot, (W, 8, 4, 2)))
        L: tl.constexpr = W * 32
        c0 = c0 + tl.reshape(e0, (L,))
        c1 = c1 + tl.reshape(e1, (L,))
        c2 = c2 + tl.reshape(e2, (L,))
        c3 = c3 + tl.reshape(e3, (L,))
    else:
        c0, c1, c2, c3 = tl.inline_asm_elementwise(
            _MMA_ASM, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)
    return c0, c1, c2, c3


@triton.jit
def _words(ptrs, mask):
    """Four int32 words per lane (ptrs [L, 4], contiguous) as a tuple of four lane tensors;
    mask None: an unmasked load that is streamed once (evicted first, so x stays in L1)."""
    if mask is None:
        v = tl.load(ptrs, eviction_policy="evict_first")
    else:
        v = tl.load(ptrs, mask=mask, other=0)
    a, b = tl.split(tl.reshape(v, (v.shape[0], 2, 2)))  # words (0, 2), (1, 3)
    w0, w2 = tl.split(a)
    w1, w3 = tl.split(b)
    return w0, w1, w2, w3


@triton.jit
def _factor(s):
    """bf16x2 factor 2^(s - 1) in both halves from E8M0 bytes s <= 128 (one multiply-add)."""
    return (s.to(tl.int32) + 126) * 0x00800080


@triton.jit
def _mma_word(wa, wb, fa_lo, fa_hi, fb_lo, fb_hi, xl0, xl1, xh0, xh1, c0, c1, c2, c3):
    """Two MMAs for word q of rows g (wa) and g + 8 (wb): the low nibbles of its four bytes
    against x pairs (xl0, xl1), the high nibbles against (xh0, xh1) (adjacent x words, so
    they sit in adjacent registers of one 16-byte load, as the MMA's B operand wants)."""
    a_lo01, a_hi01, a_lo23, a_hi23 = decode_word(wa, fa_lo, fa_hi)
    b_lo01, b_hi01, b_lo23, b_hi23 = decode_word(wb, fb_lo, fb_hi)
    c0, c1, c2, c3 = mma_16x8x16(a_lo01, b_lo01, a_lo23, b_lo23, xl0, xl1, c0, c1, c2, c3)
    return mma_16x8x16(a_hi01, b_hi01, a_hi23, b_hi23, xh0, xh1, c0, c1, c2, c3)


@triton.jit
def _group(sb, k_ok, KP, lane_t):
    """The lane's 64-group in step sb (lanes t = 0, 1 read the first, 2, 3 the second), its
    first byte in the group and whether the group is inside this program's K range."""
    grp = 2 * sb + lane_t // 2
    return grp, 16 * (lane_t % 2), k_ok & (grp < KP // 64)


@triton.jit
def _load_w(w32, s_ptr, row_a, sb, KP, NP, lane_t):
    """Step sb's weight words (rows g, g + 8: 16 bytes each) and scale bytes of one lane.

    Unmasked: a group past the weight's K (the second half of a last 128-step, or the
    prefetch after the last step) reads the last group again, finite values that meet zeros
    of x (_load_x) or are never used."""
    grp = tl.minimum(2 * sb + lane_t // 2, KP // 64 - 1)
    q = tl.arange(0, 4)[None, :]
    at = tl.multiple_of(row_a * (KP // 8) + grp * 8 + 4 * (lane_t % 2), 4)  # 16-byte aligned
    wrow = w32 + at.to(tl.int64)
    wa = _words(wrow[:, None] + q, None)
    wb = _words(wrow[:, None] + 8 * (KP // 8) + q, None)
    s_lo = s_ptr + (2 * grp) * NP + row_a
    return wa, wb, (tl.load(s_lo), tl.load(s_lo + NP), tl.load(s_lo + 8), tl.load(s_lo + NP + 8))


@triton.jit
def _load_x(x_row, x_ok, sb, k_ok, K, KP, lane_t):
    """Step sb's x words of one lane: elements 64 grp + j0 .. + 15 (the low nibbles' pairs)
    and 32 further (the high nibbles'); K is a multiple of 32, so each run of 16 lies wholly
    inside K or wholly past it."""
    grp, j0, ok = _group(sb, k_ok, KP, lane_t)
    q = tl.arange(0, 4)[None, :]
    kx = tl.multiple_of((grp * 64 + j0) // 2, 8)
    row = x_row + kx.to(tl.int64)
    ok_lo = (ok & x_ok & (grp * 64 + j0 < K))[:, None]
    ok_hi = (ok & x_ok & (grp * 64 + 32 + j0 < K))[:, None]
    return (_words(row[:, None] + q, ok_lo), _words(row[:, None] + 4 + q, ok_lo),
            _words(row[:, None] + 16 + q, ok_hi), _words(row[:, None] + 20 + q, ok_hi))


@triton.jit
def _load_step(w32, s_ptr, x_row0, x_ok0, x_row1, x_ok1, row_a, sb, sb_stop, K, KP, NP, lane_t,
               TWO_N: tl.constexpr):
    """Step sb's weights (_load_w) and x words of columns 0-7 and, when TWO_N, 8-15."""
    ws = _load_w(w32, s_ptr, row_a, sb, KP, NP, lane_t)
    xs = _load_x(x_row0, x_ok0, sb, sb < sb_stop, K, KP, lane_t)
    ys = xs
    if TWO_N:
        ys = _load_x(x_row1, x_ok1, sb, sb < sb_stop, K, KP, lane_t)
    return ws, xs, ys


@triton.jit
def _mma_step(ws, xs, c0, c1, c2, c3):
    """C (c0..c3) += the step's 16 rows x 128 elements (ws from _load_w) @ its x words."""
    wa, wb, sc = ws
    fa_lo = _factor(sc[0])
    fa_hi = _factor(sc[1])
    fb_lo = _factor(sc[2])
    fb_hi = _factor(sc[3])
    xl_a, xl_b, xh_a, xh_b = xs
    c0, c1, c2, c3 = _mma_word(wa[0], wb[0], fa_lo, fa_hi, fb_lo, fb_hi,
                               xl_a[0], xl_a[1], xh_a[0], xh_a[1], c0, c1, c2, c3)
    c0, c1, c2, c3 = _mma_word(wa[1], wb[1], fa_lo, fa_hi, fb_lo, fb_hi,
                               xl_a[2], xl_a[3], xh_a[2], xh_a[3], c0, c1, c2, c3)
    c0, c1, c2, c3 = _mma_word(wa[2], wb[2], fa_lo, fa_hi, fb_lo, fb_hi,
                               xl_b[0], xl_b[1], xh_b[0], xh_b[1], c0, c1, c2, c3)
    return _mma_word(wa[3], wb[3], fa_lo, fa_hi, fb_lo, fb_hi,
                     xl_b[2], xl_b[3], xh_b[2], xh_b[3], c0, c1, c2, c3)


@triton.jit
def k_loop(w_ptr, s_ptr, x_row0, x_ok0, x_row1, x_ok1, row_a, sb_start, sb_stop, K, KP, NP,
           L: tl.constexpr, K_WARPS: tl.constexpr, TWO_N: tl.constexpr):
    """The K loop of one program: lane tensors (c0..c3) = MMA columns 0-7 (x rows x_row0)
    and (d0..d3) = columns 8-15 (x_row1, when TWO_N) for the 16 rows from row_a's tile, over
    128-element steps sb_start .. sb_stop - 1 shared round-robin by the K_WARPS warps.
    x_row0 / x_row1: per-lane int32 pointers to the lane's x row; x_ok0 / x_ok1: whether it
    exists (rows past M read as zeros)."""
    lane = tl.arange(0, L)
    t = lane % 4
    k_warp = lane // 32
    w32 = w_ptr.to(tl.pointer_type(tl.int32))
    zero = tl.zeros([L], dtype=tl.float32)
    c0, c1, c2, c3 = zero, zero, zero, zero
    d0, d1, d2, d3 = zero, zero, zero, zero
    # software pipeline (Triton pipelines only loads that feed tl.dot): the warp's next step
    # is loaded while this one is decoded and multiplied. (Two steps ahead measured slower on
    # an H100: the 12 more registers cost more occupancy than the extra loads in flight won.)
    ws, xs, ys = _load_step(w32, s_ptr, x_row0, x_ok0, x_row1, x_ok1, row_a, sb_start + k_warp,
                            sb_stop, K, KP, NP, t, TWO_N)
    for s0 in range(sb_start, sb_stop, K_WARPS):
        ws_n, xs_n, ys_n = _load_step(w32, s_ptr, x_row0, x_ok0, x_row1, x_ok1, row_a,
                                      s0 + K_WARPS + k_warp, sb_stop, K, KP, NP, t, TWO_N)
        c0, c1, c2, c3 = _mma_step(ws, xs, c0, c1, c2, c3)
        if TWO_N:
            d0, d1, d2, d3 = _mma_step(ws, ys, d0, d1, d2, d3)
        ws, xs, ys = ws_n, xs_n, ys_n
    return c0, c1, c2, c3, d0, d1, d2, d3


@triton.jit
def column0_rows(c0, c2, K_WARPS: tl.constexpr):
    """MMA column 0 of one warp's 16 rows, summed over K_WARPS warps (L = 32 K_WARPS lanes):
    two [8] tensors, rows 0-7 (c0 of lanes t = 0) and rows 8-15 (c2)."""
    lane = tl.arange(0, 32)
    c0 = _warp_sum(c0, K_WARPS)
    c2 = _warp_sum(c2, K_WARPS)
    top = tl.sum(tl.reshape(tl.where(lane % 4 == 0, c0, 0.0), (8, 4)), axis=1)
    bot = tl.sum(tl.reshape(tl.where(lane % 4 == 0, c2, 0.0), (8, 4)), axis=1)
    return top, bot


@triton.jit(do_not_specialize=["M"])
def _mma_gemv_kernel(x_ptr, w_ptr, s_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr,
                     M, N, K, KP, NP, stride_xm, stride_om, k_chunk, ws_stride,
                     HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr, K_WARPS: tl.constexpr,
                     TWO_N: tl.constexpr):
    """y [M, N] = x [M, K] @ W.T (+ bias), x bf16 with M <= 16 (TWO_N: M > 8), W a
    HopperWeight with every scale byte <= 128. A program owns 16 rows and k_chunk
    elements of K (a multiple of 128), split over its K_WARPS warps."""
    L: tl.constexpr = 32 * K_WARPS
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    lane = tl.arange(0, L)
    g = (lane % 32) // 4
    row_a = pid_n * 16 + g  # < NP (padded rows)
    x32 = x_ptr.to(tl.pointer_type(tl.int32))
    x_row0 = x32 + g.to(tl.int64) * (stride_xm // 2)  # x row g is MMA column g
    x_row1 = x32 + (g + 8).to(tl.int64) * (stride_xm // 2)
    sb_start = pid_k * (k_chunk // 128)
    sb_stop = tl.minimum(sb_start + k_chunk // 128, (KP + 127) // 128)
    c0, c1, c2, c3, d0, d1, d2, d3 = k_loop(w_ptr, s_ptr, x_row0, g < M, x_row1, g + 8 < M,
                                            row_a, sb_start, sb_stop, K, KP, NP, L,
                                            K_WARPS, TWO_N)
    release_dependents()
    c0, c1, c2, c3 = _sum_warps(c0, c1, c2, c3, K_WARPS)
    if TWO_N:
        d0, d1, d2, d3 = _sum_warps(d0, d1, d2, d3, K_WARPS)
    li = tl.arange(0, 32)
    ra = pid_n * 16 + li // 4
    col = 2 * (li % 4)  # c0: (ra, col), c1: (ra, col + 1), c2 / c3: ra + 8; d.. 8 columns on
    if SPLIT_K == 1:
        _put4(out_ptr, bias_ptr, c0, c1, c2, c3, ra, col, M, N, stride_om, HAS_BIAS)
        if TWO_N:
            _put4(out_ptr, bias_ptr, d0, d1, d2, d3, ra, col + 8, M, N, stride_om, HAS_BIAS)
    else:
        # deterministic split-K: fp32 partials [split, M, N], the last program sums in order
        part = ws_ptr + pid_k * ws_stride
        _put4(part, bias_ptr, c0, c1, c2, c3, ra, col, M, N, N, False)
        if TWO_N:
            _put4(part, bias_ptr, d0, d1, d2, d3, ra, col + 8, M, N, N, False)
        tl.debug_barrier()
        arrived = tl.atomic_add(lock_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            _reduce4(ws_ptr, out_ptr, bias_ptr, ra, col, M, N, stride_om, ws_stride, HAS_BIAS,
                     SPLIT_K)
            if TWO_N:
                _reduce4(ws_ptr, out_ptr, bias_ptr, ra, col + 8, M, N, stride_om, ws_stride,
                         HAS_BIAS, SPLIT_K)
            tl.atomic_xchg(lock_ptr + pid_n, 0, sem="relaxed", scope="gpu")  # ready for next call


@triton.jit
def _sum_warps(c0, c1, c2, c3, K_WARPS: tl.constexpr):
    """Sum a fragment over the K warps (_warp_sum of each register)."""
    return (_warp_sum(c0, K_WARPS), _warp_sum(c1, K_WARPS), _warp_sum(c2, K_WARPS),
            _warp_sum(c3, K_WARPS))


@triton.jit
def _warp_sum(c, K_WARPS: tl.constexpr):
    """[32 K_WARPS] lane tensor summed over the K warps: lane 32 kw + i -> [kw, i]."""
    return tl.sum(tl.reshape(c, (K_WARPS, 32)), axis=0)


@triton.jit
def _put4(dst, bias_ptr, c0, c1, c2, c3, ra, col, M, N, stride, HAS_BIAS: tl.constexpr):
    """One C fragment: c0 / c1 at rows ra, columns col / col + 1; c2 / c3 at rows ra + 8."""
    _put(dst, bias_ptr, c0, ra, col, M, N, stride, HAS_BIAS)
    _put(dst, bias_ptr, c1, ra, col + 1, M, N, stride, HAS_BIAS)
    _put(dst, bias_ptr, c2, ra + 8, col, M, N, stride, HAS_BIAS)
    _put(dst, bias_ptr, c3, ra + 8, col + 1, M, N, stride, HAS_BIAS)


@triton.jit
def _put(dst, bias_ptr, v, rows, cols, M, N, stride, HAS_BIAS: tl.constexpr):
    """dst[col, row] = v (+ bias[row]) where col < M and row < N (cast to dst's type)."""
    ok = (cols < M) & (rows < N)
    if HAS_BIAS:
        v += tl.load(bias_ptr + rows, mask=ok, other=0.0).to(tl.float32)
    tl.store(dst + cols.to(tl.int64) * stride + rows, v.to(dst.dtype.element_ty), mask=ok)


@triton.jit
def _reduce4(ws_ptr, out_ptr, bias_ptr, ra, col, M, N, stride_om, ws_stride,
             HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr):
    """_reduce for the four (row, column) places of one C fragment (as _put4)."""
    for q in tl.static_range(4):
        _reduce(ws_ptr, out_ptr, bias_ptr, ra + 8 * (q // 2), col + q % 2, M, N, stride_om,
                ws_stride, HAS_BIAS, SPLIT_K)


@triton.jit
def _reduce(ws_ptr, out_ptr, bias_ptr, rows, cols, M, N, stride_om, ws_stride,
            HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr):
    """out[col, row] = the split partials summed in split order (+ bias)."""
    ok = (cols < M) & (rows < N)
    at = ws_ptr + cols.to(tl.int64) * N + rows
    v = tl.zeros(rows.shape, dtype=tl.float32)
    for i in tl.static_range(SPLIT_K):
        v += tl.load(at + i * ws_stride, mask=ok, other=0.0, cache_modifier=".cg")
    _put(out_ptr, bias_ptr, v, rows, cols, M, N, stride_om, HAS_BIAS)


# Where mxfp4.linear takes this kernel (linear.use_mma_gemv), from an H100 sweep
# (benchmarks/mma_gemv_sweep.py, docs/kernels.md "Tensor-core GEMV"): every bf16 product with
# up to 8 rows of x, and 9-16 rows on weights up to ~20 M elements (2880 x 5760: 11.3 vs
# 12.2 us; on 4096 x 14336 the second MMA per fragment makes it 24 vs 19 us).
MAX_M = 8
MAX_M_TWO_N = 16
MAX_WEIGHTS_TWO_N = 20_000_000


def mma_gemv_config(m: int, n: int, kp: int, sm_count: int) -> dict:
    """K warps per 16-row program and K split for an M <= 16 product, from the same sweep:
    one wave of ~4 K warps per program when there are >= 4 row tiles per SM (4096 -> 14336:
    14.6 us), else 8 K warps (2880 -> 5760: 7.4 vs 7.6 us), and K split while the warps fit
    ~32 per SM (16 with the second MMA's registers: 2880 -> 5760 at M = 16 11.3 us unsplit,
    15.5 split). Rows at least twice as long as there are rows: 16 K warps, which fill the
    GPU without a K split (eleventh session, 14336 -> 4096 at M = 1 / 4 / 8: 16.1 / 16.6 /
    17.9 us against 16.8 / 19.9 / 18.4 with two 16-row tiles of 4 warps and four splits)."""
    two_n = m > 8
    tiles = -(-n // 16)
    if kp >= 2 * n and not two_n:
        k_warps = 16
    elif tiles * (2 if two_n else 1) >= 4 * sm_count:
        k_warps = 4
    else:
        k_warps = 8
    steps = -(-kp // 128)
    budget = (16 if two_n else 32) * sm_count
    split = 1
    while tiles * k_warps * split * 2 <= budget and steps // (split * 2) >= 2 * k_warps:
        split *= 2
    return dict(MMA_GEMV=True, K_WARPS=k_warps, SPLIT_K=split, TWO_N=two_n,
                num_warps=k_warps, num_stages=1)
