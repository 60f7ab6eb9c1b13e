"""Decode GEMV: an MXFP4 weight times a few activation rows on the CUDA cores (no tensor cores).

Reference twin: `mxfp4.ops.linear(..., backend="reference")`.

The tensor-core kernels pad one row of x to 16 and serialize the decode with register-A wgmma;
here a program owns BN weight rows x a K chunk, decodes the codes in registers, multiplies by
x in fp32 (one FMA per weight and row of x), sums each 32-element block and scales it. Fixed
tile shapes fix the summation order, so results are bit-for-bit reproducible; split-K partials
are combined by the last split in split order. Measured on an H100 (docs/kernels.md, "Decode
GEMV"): faster than the tensor-core kernel only at M = 1 on small weights (K = 2880), which is
where `mxfp4.linear` dispatches it (`linear.use_gemv`). (A GEMV for the MoE decode was
measured slower than the tensor-core decode and removed.)
"""

from __future__ import annotations

import triton
import triton.language as tl

from .pdl import release_dependents, wait_for_inputs
from .unpack import INTERPRET, e2m1_to_f32, e8m0_to_f32, unrotate_nibble


# Four HopperWeight bytes in $8 -> the low-nibble values of bytes 0..3 as fp32 in $0..$3 and
# the high-nibble values in $4..$7: the bf16x2 decode of unpack._HOPPER_FUSED_ASM (times 2^126,
# exact), then each bf16 half widened to fp32 in the same snippet (shift / mask), so Triton
# never unpacks and repacks bf16 pairs around the asm.
_HOPPER_F32_ASM = tl.constexpr("""
{
.reg .b32 a, t, u, k, z;
mov.b32 k, 0x7E807E80;
mov.b32 z, 0x80008000;
prmt.b32 a, $8, 0, 0x1404;
shr.b32 t, a, 2;
shl.b32 u, a, 4;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
fma.rn.bf16x2 t, t, k, z;
shl.b32 $0, t, 16;
and.b32 $1, t, 0xFFFF0000;
shr.b32 t, a, 7;
shl.b32 u, a, 3;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
fma.rn.bf16x2 t, t, k, z;
shl.b32 $4, t, 16;
and.b32 $5, t, 0xFFFF0000;
prmt.b32 a, $8, 0, 0x3424;
shr.b32 t, a, 2;
shl.b32 u, a, 4;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
fma.rn.bf16x2 t, t, k, z;
shl.b32 $2, t, 16;
and.b32 $3, t, 0xFFFF0000;
shr.b32 t, a, 7;
shl.b32 u, a, 3;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
fma.rn.bf16x2 t, t, k, z;
shl.b32 $6, t, 16;
and.b32 $7, t, 0xFFFF0000;
}
""")


@triton.jit
def unpack_hopper_words_f32(words):
    """int32 words of HopperWeight bytes -> eight fp32 tensors of words' shape: the low-nibble
    values of bytes 0..3 of each word, then the high-nibble values (unscaled)."""
    if INTERPRET:
        b0 = words & 255
        b1 = (words >> 8) & 255
        b2 = (words >> 16) & 255
        b3 = (words >> 24) & 255
        return (e2m1_to_f32(b0), e2m1_to_f32(b1), e2m1_to_f32(b2), e2m1_to_f32(b3),
                e2m1_to_f32(unrotate_nibble(b0 >> 4)), e2m1_to_f32(unrotate_nibble(b1 >> 4)),
                e2m1_to_f32(unrotate_nibble(b2 >> 4)), e2m1_to_f32(unrotate_nibble(b3 >> 4)))
    else:
        return tl.inline_asm_elementwise(
            _HOPPER_F32_ASM, "=r,=r,=r,=r,=r,=r,=r,=r,r", [words],
            dtype=(tl.float32,) * 8, is_pure=True, pack=1)


@triton.jit
def _runs(o0, o1, o2, o3):
    """[..., 2] tensors (byte i of word d) -> [..., 8] in element order 4d + i."""
    t = tl.join(tl.join(o0, o2), tl.join(o1, o3))  # [..., 2, 2, 2]: index (d, p, q), i = 2p + q
    return tl.reshape(t, (t.shape[0], t.shape[1], t.shape[2], t.shape[3], 8))


@triton.jit(do_not_specialize=["M"])
def _gemv_kernel(x_ptr, w_ptr, s_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr,
                 M, N, K, KP, NP, stride_xm, stride_om, k_chunk, ws_stride,
                 HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr, MASK_K: tl.constexpr,
                 BN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, LANES_K: tl.constexpr):
    """y [M, N] = x [M, K] @ W.T (+ bias) for a HopperWeight W; BM >= M (a power of two).

    A step covers BK = 64 G elements of BN rows, read as int32 words; the codes decode to
    unscaled fp32 values (unpack_hopper_words_f32), each 32-run is summed and multiplied by
    its fp32 scale (one multiply per block, so the scales need no per-element broadcast)."""
    G: tl.constexpr = BK // 64
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BN + tl.arange(0, BN)  # < NP: BN divides the 128-row padding
    rm = tl.arange(0, BM)
    # Words: word 2c + d of group g of a row holds bytes 8c + 4d + i, i.e. the elements
    # 64g + 8c + 4d + i (low nibbles) and 32 more (high nibbles). LANES_K: tiles
    # [G, 4, BM, BN, 2]; the row axis comes last among the strided axes, so Triton spreads a
    # warp's lanes over (g, c) and a load instruction reads 128 contiguous bytes of a row.
    # Otherwise [BM, BN, G, 4, 2]: a thread owns whole rows (no shuffles, strided loads).
    if LANES_K:
        g5 = tl.arange(0, G)[:, None, None, None, None]
        c5 = tl.arange(0, 4)[None, :, None, None, None]
        m5 = rm[None, None, :, None, None]
        n5 = rn[None, None, None, :, None]
        g3 = tl.arange(0, G)[:, None, None]
        n3 = rn[None, None, :]
        acc = tl.zeros([G, BM, BN], dtype=tl.float32)
    else:
        m5 = rm[:, None, None, None, None]
        n5 = rn[None, :, None, None, None]
        g5 = tl.arange(0, G)[None, None, :, None, None]
        c5 = tl.arange(0, 4)[None, None, None, :, None]
        g3 = tl.arange(0, G)[None, None, :]
        n3 = rn[None, :, None]
        acc = tl.zeros([BM, BN, G], dtype=tl.float32)
    d5 = tl.arange(0, 2)[None, None, None, None, :]
    e5 = tl.arange(0, 8)[None, None, None, None, :]
    w_ptrs = w_ptr.to(tl.pointer_type(tl.int32)) + n5.to(tl.int64) * (KP // 8) + g5 * 8 + c5 * 2 + d5
    s_ptrs = s_ptr + (2 * g3) * NP + n3  # scale of block 2g (2g + 1 is NP further)
    k_off = g5 * 64 + c5 * 8 + e5  # element of a low nibble within the tile
    # x pointers in the full tile shape: x's load then shares the weights' layout (repeats
    # across rows hit L1); with a [.., 1, ..] x load Triton 3.6 converted the decoded weight
    # tile to x's layout through shared memory every step
    x_ptrs = x_ptr + m5.to(tl.int64) * stride_xm + (k_off + 0 * n5)
    m_ok = (m5 + 0 * n5 + 0 * k_off) < M
    C_AXIS: tl.constexpr = 1 if LANES_K else 3  # the c axis once the e axis is summed
    G_AXIS: tl.constexpr = 0 if LANES_K else 2  # the g axis of acc
    k_start = pid_k * k_chunk
    k_stop = tl.minimum(k_start + k_chunk, KP)
    # the next step's words and scales are loaded before this step's math (one step of
    # register double-buffering: Triton does not pipeline loads that feed no dot)
    # per-group masks: a last step may cover fewer than G groups (K padded to 64, not to BK)
    w0 = n5 * 0 + g5 * 64 + c5 * 0 + d5 * 0
    s0 = n3 * 0 + g3 * 64
    packed = tl.load(w_ptrs + k_start // 8, mask=w0 + k_start < k_stop, other=0)
    s_lo = tl.load(s_ptrs + (k_start // 32) * NP, mask=s0 + k_start < k_stop, other=0)
    s_hi = tl.load(s_ptrs + (k_start // 32 + 1) * NP, mask=s0 + k_start < k_stop, other=0)
    for k0 in range(k_start, k_stop, BK):
        k1 = k0 + BK
        packed_n = tl.load(w_ptrs + k1 // 8, mask=w0 + k1 < k_stop, other=0)
        s_lo_n = tl.load(s_ptrs + (k1 // 32) * NP, mask=s0 + k1 < k_stop, other=0)
        s_hi_n = tl.load(s_ptrs + (k1 // 32 + 1) * NP, mask=s0 + k1 < k_stop, other=0)
        o0, o1, o2, o3, o4, o5, o6, o7 = unpack_hopper_words_f32(packed)
        w_lo = _runs(o0, o1, o2, o3)
        w_hi = _runs(o4, o5, o6, o7)
        if MASK_K:  # K is not a multiple of 64: x past K reads as zeros, element by element
            x_lo = tl.load(x_ptrs + k0, mask=m_ok & (k0 + k_off < K), other=0.0)
            x_hi = tl.load(x_ptrs + (k0 + 32), mask=m_ok & (k0 + 32 + k_off < K), other=0.0)
        else:  # whole 64-groups (a mask constant along the vector keeps the loads 16 bytes wide)
            g_ok = m_ok & (k0 + g5 * 64 + 0 * k_off < K)
            x_lo = tl.load(x_ptrs + k0, mask=g_ok, other=0.0)
            x_hi = tl.load(x_ptrs + (k0 + 32), mask=g_ok, other=0.0)
        p_lo = tl.sum(tl.sum(w_lo * x_lo.to(tl.float32), axis=4), axis=C_AXIS)
        p_hi = tl.sum(tl.sum(w_hi * x_hi.to(tl.float32), axis=4), axis=C_AXIS)
        acc += p_lo * e8m0_to_f32(s_lo) + p_hi * e8m0_to_f32(s_hi)
        packed, s_lo, s_hi = packed_n, s_lo_n, s_hi_n
    total = tl.sum(acc, axis=G_AXIS)  # [BM, BN]
    release_dependents()

    out_mask = (rm[:, None] < M) & (rn[None, :] < N)
    out_ptrs = out_ptr + rm[:, None].to(tl.int64) * stride_om + rn[None, :]
    rn_c = tl.minimum(rn, N - 1)
    if SPLIT_K == 1:
        if HAS_BIAS:
            total += tl.load(bias_ptr + rn_c).to(tl.float32)[None, :]
        tl.store(out_ptrs, total.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        # deterministic split-K, as in linear._linear_kernel: the last split sums in split order
        ws_tile = ws_ptr + rm[:, None].to(tl.int64) * N + rn[None, :]
        tl.store(ws_tile + pid_k * ws_stride, total, mask=out_mask)
        tl.debug_barrier()
        arrived = tl.atomic_add(lock_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            red = tl.zeros([BM, BN], dtype=tl.float32)
            for i in tl.static_range(SPLIT_K):
                red += tl.load(ws_tile + i * ws_stride, mask=out_mask, other=0.0, cache_modifier=".cg")
            if HAS_BIAS:
                red += tl.load(bias_ptr + rn_c).to(tl.float32)[None, :]
            tl.store(out_ptrs, red.to(out_ptr.dtype.element_ty), mask=out_mask)
            tl.atomic_xchg(lock_ptr + pid_n, 0, sem="relaxed", scope="gpu")


def gemv_config(m: int, n: int, kp: int, sm_count: int) -> dict:
    """Tiles for the GEMV: BN rows x BK elements per step (BK need not divide K: the last
    step is masked per 64-group), K split until >= 3 waves of programs.

    From the H100 sweep (docs/kernels.md, "Decode GEMV"): lanes along K, 64 rows, BK = 128,
    4 warps; K = 2880 runs best with 8-16 splits of 1-3 steps each."""
    bm = triton.next_power_of_2(max(m, 1))
    bk = 128 if kp >= 128 else 64
    bn = max(16, 64 // bm)
    split = 1
    tiles = -(-n // bn)
    steps = -(-kp // bk)
    while tiles * split < 3 * sm_count and steps // (split * 2) >= 1:
        split *= 2
    return dict(GEMV=True, BN=bn, BM=bm, BK=bk, SPLIT_K=split, LANES_K=True, num_warps=4,
                num_stages=1)
